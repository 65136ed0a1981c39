"""Stand-ins for the bridge's edges in node and flow tests: a publisher that records, a canned reader."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

# A valid reading with one confident and one weak plate.
READING: dict[str, Any] = {
    "processing_time": 12.5,
    "filename": "drive.jpg",
    "version": 1,
    "results": [
        {
            "box": {"xmin": 1, "ymin": 2, "xmax": 30, "ymax": 12},
            "plate": "ab12cde",
            "score": 0.91,
            "dscore": 0.8,
            "region": {"code": "gb", "score": 0.9},
            "vehicle": {"type": "Car", "score": 0.7},
        },
        {"box": {"xmin": 40, "ymin": 2, "xmax": 60, "ymax": 12}, "plate": "x1", "score": 0.3, "dscore": 0.5},
    ],
}


class RecordingPublisher:
    """Keeps every publish as the broker would receive it; `sent` gives the decoded events."""

    def __init__(self) -> None:
        self.raw: list[tuple[str, bytes, int, bool]] = []

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int,
        retain: bool,
        properties: Mapping[str, Any] | None = None,
    ) -> None:
        self.raw.append((topic, payload, qos, retain))

    @property
    def sent(self) -> list[tuple[str, dict[str, Any], int, bool]]:
        return [(topic, json.loads(payload), qos, retain) for topic, payload, qos, retain in self.raw]


class CannedReader:
    """A reader that answers every image with (a copy of) one response and records its calls: the
    flow's own logic is what these tests are about."""

    upload_base64 = False

    def __init__(self, response: dict[str, Any] | None = None) -> None:
        self.response = READING if response is None else response
        self.calls: list[dict[str, Any]] = []

    def read(self, image: bytes | str, **params: Any) -> dict[str, Any]:
        self.calls.append({"image": image, **params})
        return copy.deepcopy(self.response)
