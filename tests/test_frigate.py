"""The Frigate source over real wires: frigate/events on a real broker, Frigate's HTTP API emulated."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bridge.config import load_config
from bridge.core import schemas
from bridge.core.errors import ConfigError
from bridge.extensions.frigate import FrigateExtension, FrigateObject, sub_label_for
from tests.conftest import BrokerAddress, Collector, start_bridge
from tests.emulator import ReaderEmulator
from tests.frigate_emulator import FrigateEmulator, event_message
from tests.images import jpeg

SOURCE_ROUTE = {"topic": "frigate/+/+/event_snapshot"}


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll `condition` (state another thread changes) until it holds; fail after `timeout` s."""
    give_up = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > give_up:
            pytest.fail(f"waited {timeout:g} s for {what}")
        time.sleep(0.01)


@pytest.fixture
def frigate() -> Iterator[FrigateEmulator]:
    with FrigateEmulator() as running:
        yield running


def test_a_tracked_car_is_read_once_then_only_for_a_better_snapshot(
    broker: BrokerAddress, emulator: ReaderEmulator, frigate: FrigateEmulator, collector_factory: Any
) -> None:
    frigate.add_event("1700000000.0-abc123", "driveway", "car", jpeg())
    frigate.add_event("1700000100.0-def456", "street", "car", jpeg(text="XY99ZZZ"))
    bridge = start_bridge(
        broker,
        emulator,
        routes=[SOURCE_ROUTE],
        frigate={"enabled": True, "url": frigate.url, "sub_label": True, "max_reads_per_event": 2},
    )
    try:
        collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
        car = "1700000000.0-abc123"
        for message in (
            event_message("new", car, top_score=0.7, snapshot_time=1_700_000_001.0),  # read
            event_message("update", car, top_score=0.7, snapshot_time=1_700_000_001.0),  # same snapshot
            event_message("update", car, top_score=0.9, snapshot_time=1_700_000_002.0),  # better: read
            event_message("update", car, top_score=0.95, snapshot_time=1_700_000_003.0),  # over the limit
            event_message("end", car, top_score=0.95, snapshot_time=1_700_000_003.0),
            event_message("new", "person-1", label="person"),  # not a vehicle
            event_message("new", "no-snap", has_snapshot=False),  # nothing to fetch yet
        ):
            collector.publish("frigate/events", message)
        # A last event on another camera: once it is read, every message before it was handled.
        collector.publish("frigate/events", event_message("new", "1700000100.0-def456", camera="street"))
        [street] = collector.wait_for("plate-bridge/street/result")
        events = collector.wait_for("plate-bridge/driveway/result", 2)

        assert street["frigate"] == {"event_id": "1700000100.0-def456", "camera": "street", "label": "car"}
        assert {event["timestamp"] for event in events} == {
            "2023-11-14T22:13:21.000Z",
            "2023-11-14T22:13:22.000Z",
        }
        for event in events:
            assert event["frigate"] == {"event_id": car, "camera": "driveway", "label": "car"}
            assert event["camera_id"] == "driveway"
            schemas.validate("plate-event", event)
        requests = frigate.snapshot_requests(car)
        assert len(requests) == 2
        assert requests[0].query == {"bbox": ["0"], "timestamp": ["0"], "crop": ["1"], "quality": ["95"]}
        assert frigate.snapshot_requests("person-1") == frigate.snapshot_requests("no-snap") == []
        assert len(collector.on("plate-bridge/driveway/result")) == 2

        # The plate goes back to Frigate as the event's sub label, with the reading's score.
        sub_label, score = frigate.wait_for_sub_label(car)
        best = max(events[0]["results"], key=lambda r: r["score"])
        assert sub_label == best["plate"].upper()
        assert score == pytest.approx(best["score"], abs=0.001)
    finally:
        bridge.stop(deadline=5)


def test_a_snapshot_frigate_cannot_give_yet_is_tried_again_on_the_next_update(
    broker: BrokerAddress, emulator: ReaderEmulator, frigate: FrigateEmulator, collector_factory: Any
) -> None:
    bridge = start_bridge(
        broker,
        emulator,
        routes=[SOURCE_ROUTE],
        frigate={"enabled": True, "url": frigate.url, "cameras": ["gate"], "zones": ["entrance"]},
    )
    try:
        collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
        collector.publish("frigate/events", event_message("new", "late", camera="gate", zones=("entrance",)))
        frigate.wait_for_snapshot_requests("late", 1)  # answered 404: Frigate does not know it yet
        # ... and the bridge has taken the 404 in (until then, updates find the fetch under way).
        extension = next(ext for ext in bridge.extensions if isinstance(ext, FrigateExtension))
        wait_until(lambda: extension.reads_of("late") == 0, "the failed fetch to be counted back")
        frigate.add_event("late", "gate", "car", jpeg())
        # Elsewhere on the camera or on another camera: not followed.
        collector.publish("frigate/events", event_message("update", "late", camera="gate", zones=("street",)))
        collector.publish("frigate/events", event_message("new", "other", camera="yard", zones=("entrance",)))
        collector.publish(
            "frigate/events", event_message("update", "late", camera="gate", zones=("entrance",))
        )
        [event] = collector.wait_for("plate-bridge/gate/result")
        assert event["frigate"]["event_id"] == "late"
        assert len(frigate.snapshot_requests("late")) == 2
        assert frigate.snapshot_requests("other") == []
    finally:
        bridge.stop(deadline=5)


def test_a_snapshot_dropped_from_a_full_queue_leaves_the_events_read_budget(
    broker: BrokerAddress,
    emulator: ReaderEmulator,
    frigate: FrigateEmulator,
    collector_factory: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for event_id, camera in (("held", "gate"), ("queued", "yard"), ("dropped", "drive")):
        frigate.add_event(event_id, camera, "car", jpeg())
    bridge = start_bridge(
        broker,
        emulator,
        routes=[SOURCE_ROUTE],
        frigate={"enabled": True, "url": frigate.url, "queue_size": 1, "max_reads_per_event": 1},
    )
    try:
        collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
        frigate.release.clear()  # the first fetch waits in Frigate: the one queue place fills
        collector.publish("frigate/events", event_message("new", "held", camera="gate"))
        frigate.wait_for_snapshot_requests("held", 1)
        collector.publish("frigate/events", event_message("new", "queued", camera="yard"))
        collector.publish("frigate/events", event_message("new", "dropped", camera="drive"))
        wait_until(lambda: "dropping the snapshot of event dropped" in caplog.text, "the drop")
        frigate.release.set()
        collector.wait_for("plate-bridge/yard/result")
        # Never fetched, so not counted: its next update reads it (max_reads_per_event is 1).
        collector.publish("frigate/events", event_message("update", "dropped", camera="drive"))
        [event] = collector.wait_for("plate-bridge/drive/result")
        assert event["frigate"]["event_id"] == "dropped"
    finally:
        frigate.release.set()
        bridge.stop(deadline=5)


def test_a_snapshot_as_large_as_max_payload_bytes_is_read(
    broker: BrokerAddress, emulator: ReaderEmulator, frigate: FrigateEmulator, collector_factory: Any
) -> None:
    snapshot = jpeg()
    frigate.add_event("big", "driveway", "car", snapshot)
    # Room for the snapshot itself, not for it as base64 in JSON (a third larger).
    bridge = start_bridge(
        broker,
        emulator,
        routes=[SOURCE_ROUTE],
        frigate={"enabled": True, "url": frigate.url},
        max_payload_bytes=len(snapshot) + 64,
        max_queued_bytes=len(snapshot) * 4,
    )
    try:
        collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
        collector.publish("frigate/events", event_message("new", "big", snapshot_time=1_700_000_001.0))
        [event] = collector.wait_for("plate-bridge/driveway/result")
        assert event["camera_id"] == "driveway"
        assert event["timestamp"] == "2023-11-14T22:13:21.000Z"
        assert collector.on("plate-bridge/driveway/error") == []
    finally:
        bridge.stop(deadline=5)


def test_frigates_retained_snapshot_topics_work_as_a_plain_route(
    broker: BrokerAddress, emulator: ReaderEmulator, collector_factory: Any
) -> None:
    # Frigate publishes each object's best snapshot as a retained JPEG on frigate/<camera>/<label>/snapshot.
    publisher: Collector = collector_factory(broker.host, broker.port, ["unused/#"])
    publisher.publish("frigate/garage/car/snapshot", jpeg(), retain=True)
    # Listening before the bridge starts: it reads the retained frame as soon as it subscribes.
    collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/+/result"])
    bridge = start_bridge(broker, emulator, routes=[{"topic": "frigate/+/car/snapshot"}])
    try:
        [event] = collector.wait_for("plate-bridge/garage/result")
        assert event["topic"] == "frigate/garage/car/snapshot" and event["results"]
        assert "frigate" not in event
    finally:
        bridge.stop(deadline=5)


def test_the_frigate_topic_needs_a_route() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(reader={"url": "http://127.0.0.1:1/alpr"}, frigate={"enabled": True})
    assert any("frigate/+/+/event_snapshot" in problem for problem in caught.value.problems)


def test_sub_label_prefers_the_watch_list_label() -> None:
    event = {
        "results": [{"plate": "ab12cde", "score": 0.9}, {"plate": "xy99zzz", "score": 0.5}],
        "watched": [{"list": "family", "entry": "AB12CDE", "label": "Anna's car"}],
    }
    assert sub_label_for(event) == ("Anna's car", 0.9)
    assert sub_label_for({**event, "watched": []}) == ("AB12CDE", 0.9)
    assert sub_label_for({"results": []}) is None


def test_event_messages_of_older_frigates_and_bad_ones() -> None:
    _, obj = FrigateObject.parse(
        b'{"type": "new", "after": {"id": "e", "camera": "c", "label": "car", "top_score": 0.8,'
        b' "snapshot_time": 12.5, "has_snapshot": true, "current_zones": ["z"], "entered_zones": []}}'
    )
    assert (obj.snapshot, obj.frame_time, obj.zones, obj.top_score) == (12.5, 12.5, frozenset({"z"}), 0.8)
    for bad, reason in ((b"{", "not JSON"), (b"[]", "no 'after'"), (b'{"after": {"id": 1}}', "id, camera")):
        with pytest.raises(ValueError, match=reason):
            FrigateObject.parse(bad)
