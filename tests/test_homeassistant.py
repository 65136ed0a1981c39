"""Home Assistant MQTT discovery over a real broker: what Home Assistant needs to build entities.

What a real Home Assistant makes of it is checked in test_homeassistant_real.py.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.config import load_config
from bridge.core.messages import Message
from bridge.extensions import ExtensionContext, PublishedEvent
from bridge.extensions.homeassistant import HomeAssistantExtension, camera_key
from bridge.extensions.homeassistant.state import camera_state, cleared_state
from bridge.service import Bridge
from tests.canned import RecordingPublisher
from tests.conftest import BrokerAddress, Collector
from tests.emulator import ReaderEmulator
from tests.images import jpeg

PREFIX = "homeassistant"
NODE = "plate-bridge"
READER_SENSOR = f"{PREFIX}/sensor/{NODE}/reader/config"
CONNECTION = f"{PREFIX}/binary_sensor/{NODE}/connection/config"


def config_topic(component: str, camera: str, suffix: str) -> str:
    return f"{PREFIX}/{component}/{NODE}/{camera_key(camera)}_{suffix}/config"


def raw(collector: Collector, topic: str) -> list[tuple[bytes, bool]]:
    with collector._changed:
        return [(payload, retained) for name, payload, retained in collector.messages if name == topic]


def wait_raw(collector: Collector, topic: str, count: int = 1, timeout: float = 15.0) -> list[bytes]:
    with collector._changed:
        collector._changed.wait_for(lambda: len(raw_unlocked(collector, topic)) >= count, timeout)
    found = [payload for payload, _ in raw(collector, topic)]
    assert len(found) >= count, f"{len(found)} message(s) on {topic}, wanted {count}"
    return found


def raw_unlocked(collector: Collector, topic: str) -> list[bytes]:
    return [payload for name, payload, _ in collector.messages if name == topic]


def documents(collector: Collector, suffix: str) -> list[Any]:
    """Documents on plate-bridge/<suffix>, read with the collector's lock held."""
    return [
        json.loads(payload) for name, payload, _ in collector.messages if name == f"plate-bridge/{suffix}"
    ]


def bridge_config(broker: BrokerAddress, emulator: ReaderEmulator, **homeassistant: Any) -> Any:
    return load_config(
        mqtt={"host": broker.host, "port": broker.port, "health_interval": 0},
        reader={"url": emulator.url, "max_calls_per_second": None},
        homeassistant={"enabled": True, **homeassistant},
        watchlists={"family": {"plates": [{"plate": "NHK552", "label": "Anna's car"}]}},
    )


def started(config: Any) -> Bridge:
    bridge = Bridge(config)
    bridge.start()
    assert bridge.mqtt is not None and bridge.mqtt.wait_connected(10)
    return bridge


# --- naming ---------------------------------------------------------------------------------------


def test_camera_keys_never_map_two_cameras_to_one_id() -> None:
    names = ["front-door", "front_door", "Front door", "FRONT_DOOR", "front door!", "drive", "Drive"]
    keys = [camera_key(name) for name in names]
    assert len(set(keys)) == len(names)
    assert camera_key("drive") == "drive"  # a plain id stays as it is (and keeps earlier unique ids)
    assert camera_key("front-door") == camera_key("front-door")  # depends on the id alone
    assert all(key.replace("_", "").isalnum() and key == key.lower() for key in keys)


# --- which reader -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reader", "icon", "model"),
    [
        (
            {"url": "https://api.platerecognizer.com/v1/plate-reader/", "token": "t"},
            "mdi:cloud-check",
            "MQTT bridge to Plate Recognizer Snapshot Cloud",
        ),
        (
            {"url": "http://127.0.0.1:8080/v1/plate-reader/"},
            "mdi:server",
            "MQTT bridge to Plate Recognizer Snapshot SDK",
        ),
        ({"url": "local"}, "mdi:chip", "MQTT bridge with the offline plate reader"),
    ],
)
def test_the_bridge_device_and_reader_sensor_say_which_reader_it_is(
    reader: dict[str, str], icon: str, model: str
) -> None:
    """Seen on Home Assistant 2024.3.3: with reader.url local, the reader sensor wore a cloud icon and
    the device said "MQTT bridge to Plate Recognizer"."""
    config = load_config(reader=reader, homeassistant={"enabled": True})
    publisher = RecordingPublisher()
    extension = HomeAssistantExtension(ExtensionContext(config=config, publisher=publisher, health=dict))
    extension.on_connected()
    documents = {
        topic: json.loads(payload) for topic, payload, _, _ in publisher.raw if topic.endswith("/config")
    }
    assert documents[READER_SENSOR]["icon"] == icon
    models = {document["device"]["model"] for topic, document in documents.items() if "/gate" not in topic}
    assert models == {model}
    # The device's name (and so the entity ids) stays the same whichever reader it is.
    assert documents[READER_SENSOR]["device"]["name"] == "Plate bridge"


# --- the flat state, on hand-built events -------------------------------------------------------------

WATCHED = [
    {
        "list": "family",
        "entry": "NHK552",
        "label": "Anna's car",
        "distance": 0.5,
        "plate": "nhk552",
        "candidate": "nhk552",
        "matched": "nhk552",
    },
    {"list": "visitors", "entry": "NHK55", "label": None, "distance": 1.0, "plate": "nhk552"},
]
BOX = {"xmin": 10, "ymin": 10, "xmax": 40, "ymax": 24}
RESULT = {
    "plate": "nhk552",
    "score": 0.9,
    "region": {"code": "gb", "score": 0.8},
    "vehicle": {"type": "Sedan", "score": 0.7},
    "candidates": [{"plate": "nhk552", "score": 0.9}, {"plate": "nhk55z", "score": 0.6}],
}


def hand_built(
    camera: str, results: list[dict[str, Any]], watched: list[dict[str, Any]] | None
) -> PublishedEvent:
    event: dict[str, Any] = {
        "results": results,
        "camera_id": camera,
        "topic": f"cameras/{camera}/image",
        "timestamp": "2024-03-20T21:30:00Z",
        "received_at": "2024-03-20T21:30:00Z",
    }
    if watched is not None:
        event["watched"] = watched
    msg = Message(
        topic=f"cameras/{camera}/image",
        payload=b"",
        received_at=datetime.now(UTC),
        camera_id=camera,
        image=jpeg(),
    )
    return PublishedEvent("plate", f"plate-bridge/{camera}/result", event, msg)


def test_the_state_is_flat_and_complete_with_or_without_a_match() -> None:
    matched = camera_state("gate", hand_built("gate", [RESULT], WATCHED).event)
    assert matched is not None
    assert matched.keys() == cleared_state("gate").keys()
    assert matched["plate"] == "NHK552" and matched["region"] == "gb" and matched["vehicle"] == "Sedan"
    assert matched["candidates"] == ["NHK552", "NHK55Z"]
    assert (matched["watched"], matched["list"], matched["label"]) == (True, "family", "Anna's car")
    assert matched["lists"] == ["family", "visitors"]

    plain = camera_state("gate", hand_built("gate", [{"plate": "xyz9"}], None).event)
    assert plain is not None and plain.keys() == matched.keys()
    assert (plain["watched"], plain["list"], plain["label"], plain["region"]) == (False, None, None, None)
    # No plate: nothing to say, the last plate stays until autoclear.
    assert camera_state("gate", hand_built("gate", [], None).event) is None


def test_a_watched_plate_fires_one_event_per_list_with_its_label() -> None:
    config = load_config(
        reader={"url": "http://127.0.0.1:9/v1/plate-reader/"},
        homeassistant={"enabled": True, "cameras": ["gate"], "snapshot": False},
        watchlists={"family": {"plates": ["NHK552"]}, "visitors": {"plates": ["NHK55"]}},
    )
    publisher = RecordingPublisher()
    extension = HomeAssistantExtension(ExtensionContext(config=config, publisher=publisher, health=dict))
    extension.on_event(hand_built("gate", [RESULT], WATCHED))
    events = [
        json.loads(payload) for topic, payload, _, _ in publisher.raw if topic == "plate-bridge/gate/event"
    ]
    assert [event["trigger"] for event in events] == [
        "plate_detected",
        "watched_plate_detected_family",
        "watched_plate_detected_visitors",
    ]
    assert events[1]["label"] == "Anna's car" and events[1]["list"] == "family"
    # Plates as written on the plate, like the snapshot's caption and the watch list's entry.
    assert [(event["plate"], event.get("candidate")) for event in events] == [
        ("NHK552", None),
        ("NHK552", "NHK552"),
        ("NHK552", None),
    ]
    assert all(event["event_type"] in ("plate_detected", "watched_plate_detected") for event in events)
    assert not any(retain for topic, _, _, retain in publisher.raw if topic.endswith("/event"))
    [state] = [
        json.loads(payload) for topic, payload, _, _ in publisher.raw if topic == "plate-bridge/gate/state"
    ]
    assert state["label"] == "Anna's car"
    # An unknown camera (not announced) gets nothing.
    publisher.raw.clear()
    extension.on_event(hand_built("elsewhere", [RESULT], WATCHED))
    assert publisher.raw == []


# --- over a real broker ---------------------------------------------------------------------------


def test_known_cameras_are_announced_at_start_up_with_a_retained_state(
    broker: BrokerAddress, emulator: ReaderEmulator, collector_factory: Any
) -> None:
    config = bridge_config(broker, emulator, cameras=["gate"], autoclear=1.0, stats_interval=0.2)
    collector: Collector = collector_factory(broker.host, broker.port, [f"{PREFIX}/#", "plate-bridge/#"])
    bridge = started(config)
    try:
        # Announced before any frame: the first plate cannot be lost to a late subscription.
        [plate] = collector.wait_for(config_topic("sensor", "gate", "plate"))
        [connection] = collector.wait_for(CONNECTION)
        [reader] = collector.wait_for(READER_SENSOR)
        [watch] = collector.wait_for(config_topic("binary_sensor", "gate", "watched_family"))
        [snapshot] = collector.wait_for(config_topic("image", "gate", "snapshot"))
        [trigger] = collector.wait_for(f"{PREFIX}/device_automation/{NODE}/gate_watched_family/config")
        [cleared] = collector.wait_for("plate-bridge/gate/state")
        assert cleared == cleared_state("gate")

        assert plate["state_topic"] == plate["json_attributes_topic"] == "plate-bridge/gate/state"
        assert plate["unique_id"] == "plate_bridge_plate-bridge_gate_plate"
        assert (plate["object_id"], plate["default_entity_id"]) == ("gate_plate", "sensor.gate_plate")
        assert reader["object_id"] == "plate_bridge_reader"  # not plate_bridge_plate_bridge_reader
        assert plate["device"]["via_device"] == reader["device"]["identifiers"][0]
        assert "results" not in plate["value_template"]  # no template over the reader's answer
        assert connection["device_class"] == "connectivity" and "availability_topic" not in connection
        assert watch["state_topic"] == "plate-bridge/gate/state" and '"family"' in watch["value_template"]
        assert snapshot["image_topic"] == "plate-bridge/gate/snapshot"
        assert (trigger["type"], trigger["subtype"], trigger["payload"]) == (
            "watched_plate_detected",
            "family",
            "watched_plate_detected_family",
        )
        for topic, payload, _ in list(collector.messages):
            if topic.startswith(f"{PREFIX}/") and topic.endswith("/config"):
                document = json.loads(payload)
                assert document["origin"]["name"] == "plate-bridge", topic
                if "automation_type" not in document:
                    assert document["unique_id"].startswith("plate_bridge_"), topic
                    assert "availability_topic" in document or topic == CONNECTION, topic
        # Retained: a Home Assistant that connects later finds every entity.
        late_ha: Collector = collector_factory(broker.host, broker.port, [f"{PREFIX}/#"])
        assert late_ha.wait_for(config_topic("sensor", "gate", "plate"))[0] == plate
        assert all(retained for _, _, retained in late_ha.messages)
        [stats] = collector.wait_for("plate-bridge/bridge/stats")
        assert stats["processed"] == 0

        frame = jpeg(text="NHK552")
        emulator.set_response(frame, {"results": [{**RESULT, "box": BOX}]})
        collector.publish("cameras/gate/image", frame)
        state = collector.wait_for("plate-bridge/gate/state", 2)[1]
        [result] = collector.wait_for("plate-bridge/gate/result")
        assert state["plate"] == "NHK552" and state["camera"] == "gate" and state["score"] == 0.9
        # The global watch list puts a watchlist node in the route: NHK552 is Anna's car.
        assert [(match["list"], match["entry"]) for match in result["watched"]] == [("family", "NHK552")]
        assert (state["watched"], state["list"], state["label"]) == (True, "family", "Anna's car")
        [snapshot_bytes] = wait_raw(collector, "plate-bridge/gate/snapshot")
        assert snapshot_bytes.startswith(b"\xff\xd8\xff")
        # NHK552 is on the family list: a plate_detected event, then a watched_plate_detected one.
        events = collector.wait_for("plate-bridge/gate/event", 2)
        assert [event["event_type"] for event in events] == ["plate_detected", "watched_plate_detected"]
        assert all(event["plate"] == "NHK552" for event in events) and events[1]["list"] == "family"
        assert state["watched"] is True
        # Counters follow, retained.
        counted = collector.wait_for("plate-bridge/bridge/stats", 2)[-1]
        assert counted["processed"] == 1

        # The state survives a Home Assistant that subscribes later (retained) ...
        late: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/gate/state"])
        assert late.wait_for("plate-bridge/gate/state")[0]["plate"] == "NHK552"
        # ... and autoclear empties it, so the same plate can trigger again.
        assert collector.wait_for("plate-bridge/gate/state", 3)[2] == cleared_state("gate")

        # Everything is announced again when Home Assistant comes back online.
        collector.publish(f"{PREFIX}/status", b"online")
        assert len(collector.wait_for(config_topic("sensor", "gate", "plate"), 2)) == 2
        assert len(collector.wait_for(READER_SENSOR, 2)) == 2
    finally:
        bridge.stop(deadline=5)


def test_a_camera_removed_from_the_configuration_loses_its_entities(
    broker: BrokerAddress, emulator: ReaderEmulator, collector_factory: Any
) -> None:
    collector: Collector = collector_factory(broker.host, broker.port, [f"{PREFIX}/#", "plate-bridge/#"])
    first = started(bridge_config(broker, emulator, cameras=["gate", "drive"]))
    try:
        collector.wait_for(config_topic("sensor", "drive", "plate"))
        [record] = collector.wait_for("plate-bridge/bridge/ha_cameras")
        assert record["cameras"] == {"gate": "config", "drive": "config"}
        assert config_topic("sensor", "drive", "plate") in record["discovery"]
    finally:
        first.stop(deadline=5)

    second = started(bridge_config(broker, emulator, cameras=["gate"]))
    try:
        drive = config_topic("sensor", "drive", "plate")
        payloads = wait_raw(collector, drive, 2)
        assert payloads[-1] == b""  # an empty retained config removes the entity
        assert wait_raw(collector, config_topic("image", "drive", "snapshot"), 2)[-1] == b""
        assert wait_raw(collector, "plate-bridge/drive/state", 2)[-1] == b""
        # The retained state goes a few seconds after the entities (HA must unsubscribe first).
        record = collector.wait_for("plate-bridge/bridge/ha_cameras", 3)[-1]
        assert record["cameras"] == {"gate": "config"} and record["forget"] == []
        assert drive not in record["discovery"]
        # The camera still configured was not removed.
        assert all(payload for payload in wait_raw(collector, config_topic("sensor", "gate", "plate"), 2))
    finally:
        second.stop(deadline=5)


def test_cameras_seen_on_the_wire_are_announced_up_to_the_cap(
    broker: BrokerAddress, emulator: ReaderEmulator, collector_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    collector: Collector = collector_factory(broker.host, broker.port, [f"{PREFIX}/#", "plate-bridge/#"])
    bridge = started(bridge_config(broker, emulator, max_cameras=1))
    try:
        with caplog.at_level(logging.WARNING, logger="bridge.extensions.homeassistant.extension"):
            emulator.set_response(jpeg(), {"results": [{**RESULT, "box": BOX}]})
            collector.publish("cameras/first/image", jpeg())
            collector.wait_for("plate-bridge/first/result")
            collector.publish("cameras/second/image", jpeg())
            collector.wait_for("plate-bridge/second/result")
            collector.publish("cameras/third/image", jpeg())
            collector.wait_for("plate-bridge/third/result")
        assert collector.wait_for(config_topic("sensor", "first", "plate"))
        assert collector.wait_for("plate-bridge/first/state", 2)[-1]["plate"] == "NHK552"
        assert not raw(collector, config_topic("sensor", "second", "plate"))
        assert not raw(collector, "plate-bridge/second/state")
        capped = [record for record in caplog.records if "max_cameras" in record.getMessage()]
        assert len(capped) == 1  # one line, not one per frame
    finally:
        bridge.stop(deadline=5)


def test_no_camera_is_announced_from_the_wire_without_auto_add(
    broker: BrokerAddress, emulator: ReaderEmulator, collector_factory: Any
) -> None:
    collector: Collector = collector_factory(broker.host, broker.port, [f"{PREFIX}/#", "plate-bridge/#"])
    bridge = started(bridge_config(broker, emulator, auto_add=False, cameras=["gate"]))
    try:
        collector.wait_for(config_topic("sensor", "gate", "plate"))
        collector.publish("cameras/stranger/image", jpeg())
        collector.wait_for("plate-bridge/stranger/result")
        assert not raw(collector, config_topic("sensor", "stranger", "plate"))
        assert not raw(collector, "plate-bridge/stranger/state")
    finally:
        bridge.stop(deadline=5)


def test_usage_and_bridge_info_are_published_retained(
    broker: BrokerAddress, emulator: ReaderEmulator, collector_factory: Any
) -> None:
    config = load_config(
        mqtt={"host": broker.host, "port": broker.port, "health_interval": 0},
        reader={"url": emulator.url, "max_calls_per_second": None, "token": "s3cret-token-value"},
        homeassistant={"enabled": True},
    )
    bridge = started(config)
    try:
        collector: Collector = collector_factory(
            broker.host, broker.port, ["plate-bridge/bridge/#", f"{PREFIX}/#"]
        )
        [usage] = collector.wait_for("plate-bridge/bridge/usage")
        # The emulated SDK's /info/ says total_calls 0 before any call: no plan total, so none left
        # to show either (not 0 left).
        assert usage == {"calls": 0, "total": None, "left": None, "resets_on": None, "source": "info"}
        assert collector.wait_for(f"{PREFIX}/sensor/{NODE}/calls_left/config")
        assert emulator.calls == 0  # asking for usage never costs a recognition

        info = collector.wait_for("plate-bridge/bridge/info")[-1]
        assert info["version"] and info["reader"]["kind"] == "sdk"
        assert info["routes"][0]["topic"] == "cameras/+/image"
        assert info["config"]["homeassistant"]["enabled"] is True
        # The SDK's version arrives from its /info/ in the background, then the document goes out again.
        with collector._changed:
            collector._changed.wait_for(
                lambda: any(info["reader"]["sdk_version"] for info in documents(collector, "bridge/info")), 15
            )
        assert documents(collector, "bridge/info")[-1]["reader"]["sdk_version"]
        assert all(b"s3cret" not in payload for _, payload, _ in collector.messages)
    finally:
        bridge.stop(deadline=5)


def test_frames_received_counts_frames_only_not_ha_status_or_the_bridges_own_records(
    broker: BrokerAddress, emulator: ReaderEmulator, collector_factory: Any
) -> None:
    """Seen on Home Assistant 2024.3.3: 13 frames "received" for 6 published, and 1 before any frame.
    Home Assistant's birth message and the bridge's own retained records are not frames."""
    collector: Collector = collector_factory(broker.host, broker.port, [f"{PREFIX}/#", "plate-bridge/#"])
    # What a broker holds when Home Assistant and an earlier run of the bridge were there first.
    collector.publish(f"{PREFIX}/status", b"online", retain=True)
    collector.publish("plate-bridge/bridge/ha_cameras", b'{"cameras": {"gate": "config"}}', retain=True)
    collector.publish("plate-bridge/gate/state", json.dumps(cleared_state("gate")).encode(), retain=True)
    # A route on everything also sees the bridge's own topics (ignored, not frames).
    config = load_config(
        mqtt={"host": broker.host, "port": broker.port, "health_interval": 0},
        reader={"url": emulator.url, "max_calls_per_second": None},
        homeassistant={"enabled": True, "cameras": ["gate"], "stats_interval": 0.1},
        routes=[{"topic": "#", "camera_id": "gate"}],
        queued_frames_per_camera=10,  # no frame pushed out by a newer one on a loaded machine
    )
    bridge = started(config)
    try:
        # Home Assistant comes online again: the bridge announces again (the positive signal that the
        # birth message was handled) ...
        collector.wait_for(config_topic("sensor", "gate", "plate"))
        collector.publish(f"{PREFIX}/status", b"online")
        collector.wait_for(config_topic("sensor", "gate", "plate"), 3)
        # ... and still no frame has been received.
        assert bridge.health()["received"] == 0
        with collector._changed:
            collector._changed.wait_for(lambda: documents(collector, "bridge/stats"), 15)
        # (Sent again, unchanged, after each announcement.)
        assert {stats["received"] for stats in collector.on("plate-bridge/bridge/stats")} == {0}

        frames = 3
        for number in range(frames):
            collector.publish("cameras/gate/image", jpeg(text=f"AB{number}"))
        collector.wait_for("plate-bridge/gate/result", frames)
        with collector._changed:
            collector._changed.wait_for(
                lambda: documents(collector, "bridge/stats")[-1]["processed"] == frames, 15
            )
        last = collector.on("plate-bridge/bridge/stats")[-1]
        assert (last["received"], last["processed"]) == (frames, frames)
        assert bridge.health()["received"] == frames
    finally:
        bridge.stop(deadline=5)
