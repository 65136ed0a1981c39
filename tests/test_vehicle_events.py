"""A consensus route's vehicle counts once: Home Assistant, webhooks and metrics act on its vehicle
event, not on the per-frame plate events of the same car (a real broker, the emulator over HTTP, a
webhook target and /metrics on 127.0.0.1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.config import RouteConfig, load_config
from bridge.core import schemas
from bridge.core.messages import Message
from bridge.extensions import PublishedEvent
from bridge.extensions.metrics import MetricsExtension
from bridge.nodes import ConsensusNode, NodeContext
from bridge.service import Bridge
from tests.canned import RecordingPublisher
from tests.conftest import BrokerAddress, Collector, free_port
from tests.emulator import ReaderEmulator
from tests.images import jpeg
from tests.test_webhooks import Target

ROUTE = "cameras/+/image"
RESULT = {
    "box": {"xmin": 10, "ymin": 10, "xmax": 40, "ymax": 24},
    "plate": "nhk552",
    "score": 0.9,
    "region": {"code": "gb", "score": 0.8},
    "vehicle": {"type": "Sedan", "score": 0.7},
    "candidates": [{"plate": "nhk552", "score": 0.9}],
}


def test_one_car_over_several_frames_fires_home_assistant_webhooks_and_metrics_once(
    broker: BrokerAddress, emulator: ReaderEmulator, collector_factory: Any
) -> None:
    frames = 4
    target = Target([])
    config = load_config(
        mqtt={"host": broker.host, "port": broker.port, "health_interval": 0},
        reader={"url": emulator.url, "max_calls_per_second": None, "concurrency": 1},
        homeassistant={"enabled": True, "cameras": ["gate"], "snapshot": False},
        webhooks={"targets": [{"url": target.url, "events": ["plate", "error"]}]},
        metrics={"enabled": True, "port": free_port()},
        # A generous gap: a slow machine must not split the car in two.
        routes=[{"topic": ROUTE, "nodes": [{"type": "consensus", "gap": 2.0, "per_frame": True}]}],
        # Every frame waits its turn: a loaded machine must not push one out (that is not tested here).
        queued_frames_per_camera=frames,
    )
    collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
    bridge = Bridge(config)
    bridge.start()
    try:
        assert bridge.mqtt is not None and bridge.mqtt.wait_connected(10)
        [metrics] = [extension for extension in bridge.extensions if isinstance(extension, MetricsExtension)]
        collector.wait_for("plate-bridge/gate/state")  # announced and cleared: Home Assistant is ready
        for number in range(frames):
            image = jpeg(text=f"NHK552 {number}")
            emulator.set_response(image, {"results": [RESULT]})
            collector.publish("cameras/gate/image", image)
        # Every frame still gets its plate event on the result topic (per_frame) ...
        assert len(collector.wait_for("plate-bridge/gate/result", frames)) == frames
        # ... and the car one vehicle event when it has left.
        [vehicle] = collector.wait_for("plate-bridge/gate/vehicle")
        assert vehicle["frames"] == frames
        [(_, posted)] = target.wait_for(1)
        assert posted == vehicle
    finally:
        bridge.stop(deadline=5)
    # The bridge's last message is its retained offline state: everything it published came before.
    with collector._changed:
        collector._changed.wait_for(
            lambda: any(
                state.get("state") == "offline" for state in collector.on("plate-bridge/bridge/state")
            ),
            15,
        )
    assert any(state.get("state") == "offline" for state in collector.on("plate-bridge/bridge/state"))
    target.close()

    ha_events = collector.on("plate-bridge/gate/event")
    assert [(event["trigger"], event["plate"]) for event in ha_events] == [("plate_detected", "NHK552")]
    plates = [state["plate"] for state in collector.on("plate-bridge/gate/state")]
    assert plates[1:] == ["NHK552"]  # the cleared state at start-up, then the vehicle once
    assert len(target.received) == 1
    sample = metrics.registry.get_sample_value
    assert sample("plate_bridge_events_total", {"route": ROUTE, "kind": "vehicle"}) == 1
    assert sample("plate_bridge_events_total", {"route": ROUTE, "kind": "plate"}) == frames


def test_the_vehicle_event_keeps_the_watch_list_matches_of_its_voted_plate() -> None:
    """Home Assistant's watched_plate_detected and the webhooks follow the vehicle event on a consensus
    route, so the matches the watchlist node found on its frames must be in it."""
    told: list[PublishedEvent] = []
    publisher = RecordingPublisher()
    route = RouteConfig(topic=ROUTE, nodes=[{"type": "consensus", "gap": 2.0}])
    node = ConsensusNode.from_settings(
        {"gap": 2.0},
        NodeContext(route=route, base_topic="plate-bridge", publisher=publisher, on_event=told.append),
    )
    family = {"list": "family", "entry": "NHK552", "label": "Anna's car", "plate": "nhk552"}
    start = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    readings = [("nhk552", 1.0), ("nhk55z", None), ("nhk552", 0.0)]  # the middle frame misread
    for index, (plate, distance) in enumerate(readings):
        matched = (
            ()
            if distance is None
            else ({**family, "plate": plate, "candidate": plate, "matched": "plate", "distance": distance},)
        )
        node.process(
            Message(
                topic="cameras/gate/image",
                payload=b"",
                received_at=start + timedelta(seconds=index / 2),
                camera_id="gate",
                result={
                    "results": [{**RESULT, "plate": plate, "candidates": [{"plate": plate, "score": 0.9}]}]
                },
                watched=matched,
            )
        )
    node.stop()  # the car goes out
    [published] = told
    assert (published.kind, published.per_vehicle) == ("vehicle", True)
    event = published.event
    schemas.validate("plate-event", event)
    assert [(match["list"], match["entry"], match["distance"]) for match in event["watched"]] == [
        ("family", "NHK552", 0.0)
    ]
    # Without a watchlist node before it, no `watched` key: no list was asked.
    told.clear()
    node = ConsensusNode.from_settings(
        {}, NodeContext(route=route, base_topic="plate-bridge", publisher=publisher, on_event=told.append)
    )
    node.process(
        Message(
            topic="cameras/gate/image",
            payload=b"",
            received_at=start,
            camera_id="gate",
            result={"results": [RESULT]},
        )
    )
    node.stop()
    assert "watched" not in told[0].event
