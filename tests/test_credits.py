"""Spending the fewest reader calls for the same plates: the repeat cache, similar frames, plate dedupe,
multi-frame consensus, and the scenarios of benchmarks/credits.py counted in calls (never timed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.config import RouteConfig
from bridge.messages import Message
from bridge.nodes import NodeContext, RecognizeNode
from tests.canned import READING, CannedReader, RecordingPublisher
from tests.images import jpeg, noisy_jpeg

RECEIVED = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def context(route: RouteConfig, reader: Any = None) -> NodeContext:
    return NodeContext(route=route, base_topic="plate-bridge", publisher=RecordingPublisher(), reader=reader)


def frame(image: bytes, camera: str = "drive", at: float = 0.0, **fields: Any) -> Message:
    return Message(
        topic=f"cameras/{camera}/image",
        payload=image,
        received_at=RECEIVED + timedelta(seconds=at),
        camera_id=camera,
        image=image,
        image_format="jpeg",
        **fields,
    )


def recognize(reader: CannedReader, **route: Any) -> RecognizeNode:
    config = RouteConfig(topic="cameras/+/image", **route)
    return RecognizeNode.from_settings({}, context(config, reader))


# --- the repeat cache: bounded by camera, by age, and keeps no image ----------------------------------


def test_a_thousand_cameras_keep_the_cache_at_its_cap_and_no_image_in_it() -> None:
    reader = CannedReader(READING)
    node = recognize(reader, reuse={"cameras": 64})
    image = noisy_jpeg(320, 240)  # ~90 kB: the cache must not grow by it per camera
    for number in range(1000):
        node.process(frame(image, camera=f"cam-{number}"))
    assert len(reader.calls) == 1000
    assert len(node.cache) == 64
    # What is kept per camera is a digest, a ~1.7 kB signature and the answer, not the frame.
    assert node.cache.nbytes <= 64 * 4 * 1024
    assert node.cache.nbytes / 64 < len(image) / 20
    stats = node.stats()
    assert (stats["frames"], stats["calls"], stats["calls_saved"], stats["cache_cameras"]) == (
        1000,
        1000,
        0,
        64,
    )


def test_the_least_recently_seen_camera_is_forgotten_first() -> None:
    reader = CannedReader(READING)
    node = recognize(reader, reuse={"cameras": 2})
    image = jpeg()
    for camera in ("a", "b", "a", "c", "a", "b"):
        node.process(frame(image, camera=camera))
    # a: read, b: read, a: reused, c: read (b forgotten), a: reused, b: read again.
    assert [call["camera_id"] for call in reader.calls] == ["a", "b", "c", "b"]
    assert node.stats()["saved_identical"] == 2


def test_a_reading_expires_after_the_window_on_either_clock() -> None:
    reader = CannedReader(READING)
    node = recognize(reader, repeat_window=30)
    now = [1000.0]
    node.clock = lambda: now[0]
    image = jpeg()
    assert not node.process(frame(image, at=0)).metadata.get("cached")
    assert node.process(frame(image, at=29)).metadata["cached_reason"] == "identical"
    assert not node.process(frame(image, at=31)).metadata.get("cached")  # the camera's clock: too old
    now[0] += 31  # the bridge's clock: a camera whose clock is stuck cannot keep a reading forever
    assert not node.process(frame(image, at=31)).metadata.get("cached")
    assert len(reader.calls) == 3


def test_repeat_window_0_reads_every_frame() -> None:
    reader = CannedReader(READING)
    node = recognize(reader, repeat_window=0)
    for _ in range(3):
        node.process(frame(jpeg()))
    assert len(reader.calls) == 3
    assert len(node.cache) == 0
