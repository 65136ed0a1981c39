"""Watch lists and ignore rules: the nodes on hand-built messages, then one event across a real broker."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.config import RouteConfig
from bridge.errors import ConfigError
from bridge.messages import Message
from bridge.nodes import FilterNode, NodeContext
from tests.canned import RecordingPublisher

RECEIVED = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def context() -> NodeContext:
    return NodeContext(
        route=RouteConfig(topic="cameras/+/image"), base_topic="plate-bridge", publisher=RecordingPublisher()
    )


def result(plate: str, *candidates: str, score: float = 0.9) -> dict[str, Any]:
    return {
        "box": {"xmin": 10, "ymin": 10, "xmax": 50, "ymax": 25},
        "plate": plate,
        "score": score,
        "candidates": [{"plate": plate, "score": score}] + [{"plate": c, "score": 0.5} for c in candidates],
    }


def message(*results: dict[str, Any]) -> Message:
    return Message(
        topic="cameras/drive/image",
        payload=b"",
        received_at=RECEIVED,
        camera_id="drive",
        route="drive",
        result={"processing_time": 10.0, "results": list(results)},
    )


# --- ignore rules (the filter node) -----------------------------------------------------------------


def kept(settings: dict[str, Any], *plates: str) -> list[str] | None:
    out = FilterNode.from_settings({"drop_empty": False, **settings}, context()).process(
        message(*(result(plate) for plate in plates))
    )
    return None if out is None else [r["plate"] for r in out.result["results"]]


def test_ignore_patterns_drop_overlay_text_and_timestamps() -> None:
    settings = {"ignore_patterns": ["CAM\\d+", "(19|20)\\d\\d", "\\d{1,2}:?\\d{2}"]}
    plates = ("cam01", "CAM-12", "2024", "12:30", "1230", "ab12cde", "ab2024", "camera1")
    # Full matches only: a plate that contains 2024 stays.
    assert kept(settings, *plates) == ["ab12cde", "ab2024", "camera1"]


def test_min_length_counts_characters_without_separators() -> None:
    assert kept({"min_length": 5}, "ab-12", "a b c d", "ab12c", "x1") == ["ab12c"]


def test_min_score_drops_weak_readings() -> None:
    out = FilterNode.from_settings({"min_score": 0.8}, context()).process(
        message(result("ab12cde", score=0.9), result("xy987", score=0.4))
    )
    assert out is not None and [r["plate"] for r in out.result["results"]] == ["ab12cde"]


def test_a_frame_with_only_ignored_plates_is_dropped() -> None:
    node = FilterNode.from_settings({"ignore_patterns": ["CAM\\d+"]}, context())
    assert node.process(message(result("cam01"))) is None


def test_ignore_rules_are_checked() -> None:
    with pytest.raises(ConfigError, match="not a regular expression"):
        FilterNode.from_settings({"ignore_patterns": ["("]}, context())
    with pytest.raises(ConfigError, match=r"nodes\.filter\.min_length"):
        FilterNode.from_settings({"min_length": -1}, context())
