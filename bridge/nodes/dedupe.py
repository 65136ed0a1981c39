"""Dedupe node: a plate in view is reported once, not once per frame, until it has left and come back."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from bridge.core.messages import Message
from bridge.core.plates import normalize_plate, same_plate
from bridge.nodes.base import Node, NodeSettings


class DedupeSettings(NodeSettings):
    min_interval: float = Field(
        60.0,
        gt=0,
        description="Seconds (frame time) a plate must go unseen on the camera before it is reported again.",
    )
    tolerance: float = Field(
        1.0,
        ge=0,
        description="Largest edit distance still the same plate (bridge.core.plates: O/0, I/1 count half).",
    )
    cameras: int = Field(
        256, ge=1, description="Cameras remembered; the least recently seen is forgotten first."
    )
    plates_per_camera: int = Field(
        32, ge=1, description="Plates remembered per camera; the least recently seen is forgotten first."
    )


@dataclass
class _Seen:
    reported: str
    last_text: str
    last_seen: float


class DedupeNode(Node):
    """Drops each plate result seen on the same camera less than `min_interval` ago (the same plate within
    `tolerance`, so one misread is the same car), and the message when no plate is left. Every sighting
    counts, reported or not, cached frames included: a car parked for an hour is reported once, and
    again only once it has been out of view for `min_interval` and comes back. Frames without plates pass
    unchanged (a `filter` node drops those)."""

    type = "dedupe"
    Settings = DedupeSettings
    settings: DedupeSettings

    def __init__(self, settings: NodeSettings, context: Any) -> None:
        super().__init__(settings, context)
        self._lock = threading.Lock()
        self._cameras: OrderedDict[Hashable, list[_Seen]] = OrderedDict()
        self._passed = 0
        self._suppressed = 0

    def stats(self) -> dict[str, int]:
        """Plate results passed on and dropped as repeats, and the cameras remembered."""
        with self._lock:
            return {
                "plates_reported": self._passed,
                "plates_suppressed": self._suppressed,
                "dedupe_cameras": len(self._cameras),
            }

    def process(self, msg: Message) -> Message | None:
        result = dict(msg.result or {})
        results = result.get("results")
        if not isinstance(results, list) or not results:
            return msg
        now = (msg.timestamp or msg.received_at).timestamp()
        with self._lock:
            seen = self._seen_on(msg.camera_id, now)
            kept = [item for item in results if self._is_new(seen, item, now)]
            del seen[: max(0, len(seen) - self.settings.plates_per_camera)]
            self._passed += len(kept)
            self._suppressed += len(results) - len(kept)
        if not kept:
            return None
        if len(kept) == len(results):
            return msg
        return msg.replace(result={**result, "results": kept})

    def _seen_on(self, camera: Hashable, now: float) -> list[_Seen]:
        """The camera's plates still in mind (seen less than min_interval ago), least recently seen first."""
        seen = self._cameras.pop(camera, None)
        if seen is None:
            seen = []
        seen[:] = [entry for entry in seen if now - entry.last_seen < self.settings.min_interval]
        self._cameras[camera] = seen
        while len(self._cameras) > self.settings.cameras:
            self._cameras.popitem(last=False)
        return seen

    def _is_new(self, seen: list[_Seen], item: Any, now: float) -> bool:
        text = normalize_plate(str(item.get("plate", ""))) if isinstance(item, dict) else ""
        if not text:
            return True
        tolerance = self.settings.tolerance
        for index, entry in enumerate(seen):
            if same_plate(text, entry.reported, tolerance) or same_plate(text, entry.last_text, tolerance):
                entry.last_text, entry.last_seen = text, max(entry.last_seen, now)
                seen.append(seen.pop(index))  # most recently seen last
                return False
        seen.append(_Seen(text, text, now))
        return True
