"""The bridge end to end: a real broker (amqtt, mosquitto), the reader emulator over HTTP."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bridge.config import load_config
from bridge.core import schemas
from bridge.service import Bridge
from tests.conftest import EXAMPLES, BrokerAddress, Collector, Mosquitto, start_bridge
from tests.emulator import ReaderEmulator
from tests.images import jpeg, noisy_jpeg, png

FRAME = jpeg(text="AB12CDE")


def bridge_config(broker: BrokerAddress, emulator: ReaderEmulator, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": f"bridge-{os.getpid()}"},
        "reader": {"url": emulator.url, "max_calls_per_second": None, "concurrency": 2},
        "routes": [{"topic": "cameras/+/image", "regions": ["gb"]}],
        # Tests publish bursts on one camera; latest-frame-wins has its own test.
        "queued_frames_per_camera": 100,
    }
    config.update(overrides)
    # These tests count reader calls for frames they send again and again; the repeat cache that
    # would answer those from memory has its own test.
    for route in config["routes"]:
        route.setdefault("repeat_window", 0)
    return config


@pytest.fixture
def running_bridge() -> Iterator[Any]:
    started: list[Bridge] = []

    def start(config: dict[str, Any]) -> Bridge:
        bridge = Bridge(load_config(**config))
        bridge.start()
        assert bridge.mqtt is not None and bridge.mqtt.wait_connected(10)
        started.append(bridge)
        return bridge

    yield start
    for bridge in started:
        bridge.stop(deadline=5)


PAYLOADS = {
    "base64": base64.b64encode,
    "data-uri": lambda image: b"data:image/jpeg;base64," + base64.b64encode(image),
    "envelope": lambda image: json.dumps({"image": base64.b64encode(image).decode()}).encode(),
    "raw": lambda image: image,
}


def test_every_payload_format_becomes_a_plate_event_and_garbage_an_error_event(
    broker: BrokerAddress, emulator: ReaderEmulator, running_bridge: Any, collector_factory: Any
) -> None:
    running_bridge(bridge_config(broker, emulator))
    collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
    for encode in PAYLOADS.values():
        collector.publish("cameras/drive/image", encode(FRAME))
        garbage = encode(b"this is not an image at all")
        collector.publish("cameras/drive/image", garbage)
    results = collector.wait_for("plate-bridge/drive/result", len(PAYLOADS))
    errors = collector.wait_for("plate-bridge/drive/error", len(PAYLOADS))
    for event in results:
        schemas.validate("plate-event", event)
        assert event["camera_id"] == "drive" and event["topic"] == "cameras/drive/image"
        assert event["results"], "the emulator answers a plate for every image"
    for event in errors:
        schemas.validate("error-event", event)
        assert event["code"] in {"payload_not_image", "envelope_invalid"}
        assert "this is not an image" not in json.dumps(event)
    assert len(emulator.requests) == len(PAYLOADS)
    assert all(request.upload == FRAME for request in emulator.requests)
    assert all(request.fields["regions"] == ["gb"] for request in emulator.requests)


def test_stop_closes_the_readers_connections(
    broker: BrokerAddress, emulator: ReaderEmulator, collector_factory: Any
) -> None:
    bridge = start_bridge(broker, emulator)
    collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
    collector.publish("cameras/drive/image", jpeg())
    collector.wait_for("plate-bridge/drive/result")
    assert emulator.open_connections() == 1  # kept alive for the next frame
    bridge.stop(deadline=5)
    assert emulator.open_connections(wait=5) == 0


def test_routes_send_their_own_regions_and_camera_ids(
    broker: BrokerAddress, emulator: ReaderEmulator, running_bridge: Any, collector_factory: Any
) -> None:
    routes = [
        {"topic": "gate/+/snapshot", "regions": ["fr", "de"]},
        {
            "topic": "lot/entrance",
            "camera_id": "entrance-cam",
            "regions": ["us-ca"],
            "mmc": True,
            "config": {"mode": "fast"},
        },
        {"topic": "frigate/#", "regions": ["br"], "result_topic": "alpr/{route}/{camera_id}"},
    ]
    running_bridge(bridge_config(broker, emulator, routes=routes))
    collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#", "alpr/#"])
    collector.publish("gate/north/snapshot", FRAME)
    collector.wait_for("plate-bridge/north/result")
    collector.publish("lot/entrance", base64.b64encode(png()))
    collector.wait_for("plate-bridge/entrance-cam/result")
    collector.publish("frigate/garage/snapshot", FRAME)
    [event] = collector.wait_for("alpr/frigate__/garage")
    assert event["route"] == "frigate/#"
    by_camera = {request.fields["camera_id"][0]: request for request in emulator.requests}
    assert by_camera["north"].fields["regions"] == ["fr", "de"]
    assert by_camera["entrance-cam"].fields["regions"] == ["us-ca"]
    assert by_camera["entrance-cam"].fields["mmc"] == ["true"]
    assert json.loads(by_camera["entrance-cam"].fields["config"][0]) == {"mode": "fast"}
    assert by_camera["garage"].fields["regions"] == ["br"]


def test_envelope_overrides_reach_the_reader(
    broker: BrokerAddress, emulator: ReaderEmulator, running_bridge: Any, collector_factory: Any
) -> None:
    running_bridge(bridge_config(broker, emulator))
    collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
    envelope = {
        "image": base64.b64encode(FRAME).decode(),
        "camera_id": "porch",
        "timestamp": "2026-11-25T10:00:00Z",
        "regions": ["it"],
    }
    collector.publish("cameras/drive/image", json.dumps(envelope).encode())
    [event] = collector.wait_for("plate-bridge/porch/result")
    assert event["timestamp"] == "2026-11-25T10:00:00.000Z"
    [request] = emulator.requests
    assert request.fields["regions"] == ["it"]
    assert request.fields["timestamp"] == ["2026-11-25T10:00:00.000000Z"]


def test_a_403_pauses_the_reader_and_says_so_on_the_state_topic(
    broker: BrokerAddress, emulator: ReaderEmulator, running_bridge: Any, collector_factory: Any
) -> None:
    # One worker, so the second frame comes after the 403 (with two, both calls would be in flight).
    reader = {"url": emulator.url, "max_calls_per_second": None, "forbidden_cooldown": 60, "concurrency": 1}
    running_bridge(bridge_config(broker, emulator, reader=reader))
    collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
    emulator.fail_next(403)
    collector.publish("cameras/drive/image", FRAME)
    collector.publish("cameras/gate/image", FRAME)
    first, second = sorted(
        collector.wait_for("plate-bridge/drive/error") + collector.wait_for("plate-bridge/gate/error"),
        key=lambda event: event["camera_id"] != "drive",
    )
    for event in (first, second):
        schemas.validate("error-event", event)
        assert event["code"] == "reader_forbidden" and event["status_code"] == 403
    assert "reader paused" in second["message"]
    assert len(emulator.requests) == 1, "no call is spent while the token is known to be refused"
    state = collector.wait_for("plate-bridge/bridge/state", 2)[-1]
    assert state["state"] == "online" and state["reader"] == "forbidden"
    assert "Invalid token." in state["reason"]


def test_unavailability_is_retried_and_the_frame_still_read(
    broker: BrokerAddress, emulator: ReaderEmulator, running_bridge: Any, collector_factory: Any
) -> None:
    reader = {"url": emulator.url, "max_calls_per_second": None, "retries": 3, "backoff_initial": 0.05}
    running_bridge(bridge_config(broker, emulator, reader=reader))
    collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
    emulator.fail_next(500)
    emulator.drop_next()
    collector.publish("cameras/drive/image", FRAME)
    [event] = collector.wait_for("plate-bridge/drive/result")
    schemas.validate("plate-event", event)
    assert [request.status for request in emulator.requests] == [500, None, 200]
    emulator.fail_next(503, times=4)
    collector.publish("cameras/drive/image", FRAME)
    [error] = collector.wait_for("plate-bridge/drive/error")
    assert error["code"] == "reader_unavailable" and error["status_code"] == 503
    assert len(emulator.requests) == 3 + 4, "one call and three retries, then an error event"


def test_upload_base64_forwards_the_frame_text_as_it_arrived(
    broker: BrokerAddress, emulator: ReaderEmulator, running_bridge: Any, collector_factory: Any
) -> None:
    reader = {"url": emulator.url, "max_calls_per_second": None, "upload": "base64"}
    running_bridge(bridge_config(broker, emulator, reader=reader))
    collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
    collector.publish("cameras/drive/image", base64.b64encode(FRAME))
    collector.publish("cameras/gate/image", FRAME)  # raw bytes: encoded once for the upload
    collector.wait_for("plate-bridge/drive/result")
    collector.wait_for("plate-bridge/gate/result")
    assert [request.upload_kind for request in emulator.requests] == ["base64", "base64"]
    assert all(request.upload == FRAME for request in emulator.requests)


def test_an_identical_frame_reuses_the_reading_without_a_call(
    broker: BrokerAddress, emulator: ReaderEmulator, running_bridge: Any, collector_factory: Any
) -> None:
    routes = [{"topic": "cameras/+/image", "regions": ["gb"], "repeat_window": 30}]
    running_bridge(
        bridge_config(
            broker,
            emulator,
            routes=routes,
            reader={"url": emulator.url, "concurrency": 1, "max_calls_per_second": None},
        )
    )
    collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
    other = jpeg(text="XY99ZZZ")
    for payload in (FRAME, FRAME, base64.b64encode(FRAME), other, FRAME):
        collector.publish("cameras/drive/image", payload)
    collector.publish("cameras/gate/image", FRAME)  # another camera: its own reading
    events = collector.wait_for("plate-bridge/drive/result", 5)
    collector.wait_for("plate-bridge/gate/result")
    for event in events:
        schemas.validate("plate-event", event)
    # The last frame is the first one again: it reuses that reading (the camera's recent readings are
    # kept, not only its last one).
    assert [event.get("cached", False) for event in events] == [False, True, True, False, True]
    assert [event.get("cached_reason") for event in events] == [
        None,
        "identical",
        "identical",
        None,
        "identical",
    ]
    assert events[1]["results"] == events[0]["results"]
    # Cameras are served round-robin, so the gate's call may come anywhere among the drive's.
    by_camera: dict[str, list[bytes | None]] = {}
    for request in emulator.requests:
        by_camera.setdefault(request.fields["camera_id"][0], []).append(request.upload)
    assert by_camera == {"drive": [FRAME, other], "gate": [FRAME]}


def test_a_413_is_downscaled_once_and_the_event_reports_the_scale(
    broker: BrokerAddress, running_bridge: Any, collector_factory: Any
) -> None:
    big = noisy_jpeg()
    with ReaderEmulator(max_upload_bytes=len(big) // 3) as emulator:
        running_bridge(bridge_config(broker, emulator))
        collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
        collector.publish("cameras/drive/image", big)
        [event] = collector.wait_for("plate-bridge/drive/result")
        first, second = emulator.requests
    schemas.validate("plate-event", event)
    assert first.status == 413 and second.status == 200
    assert len(second.upload) <= len(big) // 3
    assert 0 < event["scale"] < 1
    with Image.open(io.BytesIO(second.upload)) as smaller:
        assert smaller.format == "JPEG"
        assert smaller.width / smaller.height == pytest.approx(1600 / 1200, rel=0.01)
        assert smaller.width == pytest.approx(1600 * event["scale"], abs=1)


def test_a_custom_node_from_the_config(
    broker: BrokerAddress,
    emulator: ReaderEmulator,
    running_bridge: Any,
    collector_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES / "watchlist"))
    routes = [
        {
            "topic": "cameras/+/image",
            "nodes": [
                # The emulator answers with a captured payload (nhk552) or, without ../shared, its
                # built-in one (ab12cde): either is watched.
                {"type": "plate_bridge_watchlist:WatchlistAlertNode", "plates": ["NHK 552", "AB12CDE"]},
                {"type": "filter", "min_score": 0.99},
            ],
        }
    ]
    # One worker: the camera's frames go through the flow one after the other, in order.
    reader = {"url": emulator.url, "max_calls_per_second": None, "concurrency": 1}
    running_bridge(bridge_config(broker, emulator, routes=routes, reader=reader))
    collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
    collector.publish("cameras/drive/image", FRAME)
    collector.publish("cameras/drive/image", b"the marker: not an image")
    [alert] = collector.wait_for("plate-bridge/drive/watchlist")
    assert alert["plate"] in ("nhk552", "ab12cde")
    assert alert == {"plate": alert["plate"], "camera_id": "drive", "topic": "cameras/drive/image"}
    # The marker's error event comes after everything the first frame produced, so by now a result
    # event for it would be here: the filter dropped the
    # reading (score 0.896 or 0.905).
    [marker] = collector.wait_for("plate-bridge/drive/error")
    assert marker["code"] == "payload_not_image"
    events = [topic for topic, _, _ in collector.messages if topic.startswith("plate-bridge/drive/")]
    assert events == ["plate-bridge/drive/watchlist", "plate-bridge/drive/error"]


def test_a_plugin_from_the_entry_point_group(
    broker: BrokerAddress,
    emulator: ReaderEmulator,
    running_bridge: Any,
    collector_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # What `pip install ./examples/watchlist` leaves behind, made by hand: metadata with its entry point.
    dist = tmp_path / "plate_bridge_watchlist-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: plate-bridge-watchlist\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(
        "[plate_bridge.nodes]\nwatchlist_alert = plate_bridge_watchlist:WatchlistAlertNode\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(EXAMPLES / "watchlist"))
    plates = ["nhk552", "ab12cde"]  # the captured answer, or the emulator's built-in one without ../shared
    routes = [{"topic": "cameras/+/image", "nodes": [{"type": "watchlist_alert", "plates": plates}]}]
    running_bridge(bridge_config(broker, emulator, routes=routes))
    collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
    collector.publish("cameras/drive/image", FRAME)
    collector.wait_for("plate-bridge/drive/watchlist")
    collector.wait_for("plate-bridge/drive/result")


def test_only_routed_topics_are_read(
    broker: BrokerAddress, emulator: ReaderEmulator, running_bridge: Any, collector_factory: Any
) -> None:
    collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
    # A retained frame on another topic: amqtt delivers retained messages to clients that never
    # subscribed to them; the bridge must ignore it.
    collector.publish("elsewhere/cam/image", FRAME, retain=True)
    bridge = running_bridge(bridge_config(broker, emulator))
    collector.publish("cameras/drive/image", FRAME)
    collector.wait_for("plate-bridge/drive/result")
    # The worker counts the frame after publishing its event: wait for it to finish, not for time.
    assert bridge.wait_idle(10)
    assert len(emulator.requests) == 1
    assert bridge.stats.processed == 1


def _run_bridge_process(tmp_path: Path, config: dict[str, Any]) -> subprocess.Popen[bytes]:
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "run", "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_availability_online_then_offline_when_killed_or_stopped(
    broker: BrokerAddress, emulator: ReaderEmulator, collector_factory: Any, tmp_path: Path
) -> None:
    collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/bridge/state"])
    state = "plate-bridge/bridge/state"
    process = _run_bridge_process(tmp_path, bridge_config(broker, emulator))
    try:
        assert collector.wait_for(state, 1)[-1] == {"state": "online"}
        process.kill()  # no clean shutdown: the broker publishes the last will
        process.wait(10)
        assert collector.wait_for(state, 2)[-1] == {"state": "offline"}
        process = _run_bridge_process(tmp_path, bridge_config(broker, emulator))
        assert collector.wait_for(state, 3)[-1] == {"state": "online"}
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
        assert collector.wait_for(state, 4)[-1] == {"state": "offline"}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    retained: Collector = collector_factory(broker.host, broker.port, [state])
    assert retained.wait_for(state)[-1] == {"state": "offline"}


def test_frames_sent_while_the_bridge_was_away_are_read_when_it_returns(
    broker: BrokerAddress, emulator: ReaderEmulator, collector_factory: Any
) -> None:
    if broker.kind == "amqtt":
        pytest.skip(
            "amqtt queues nothing for anonymous sessions (by design, see its broker.py); the embedded "
            "broker lives inside the bridge process anyway, so it is never 'away' from it"
        )
    config = load_config(**bridge_config(broker, emulator))
    assert config.mqtt.persistent_session
    first = Bridge(config)
    first.start()
    assert first.mqtt is not None and first.mqtt.wait_connected(10)
    first.stop(deadline=5)
    collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
    for _ in range(3):
        collector.publish("cameras/drive/image", FRAME, qos=1)
    returning = Bridge(config)
    returning.start()
    try:
        events = collector.wait_for("plate-bridge/drive/result", 3)
    finally:
        returning.stop(deadline=5)
    assert len(events) == 3


@pytest.mark.mosquitto
def test_mqtt5_shared_subscription_splits_frames_between_replicas(
    emulator: ReaderEmulator, collector_factory: Any, tmp_path: Path
) -> None:
    if shutil.which("mosquitto") is None:
        pytest.skip("the mosquitto binary is not installed")
    mosquitto = Mosquitto(tmp_path).start()
    replicas = []
    try:
        address = BrokerAddress("mosquitto", "127.0.0.1", mosquitto.port)
        for index in range(3):
            config = bridge_config(address, emulator)
            config["mqtt"].update(protocol="5", client_id=f"replica-{index}")
            config["routes"] = [{"topic": "cameras/+/image", "share_group": "readers"}]
            replica = Bridge(load_config(**config))
            replica.start()
            assert replica.mqtt is not None and replica.mqtt.wait_connected(10)
            replicas.append(replica)
        collector: Collector = collector_factory(address.host, address.port, ["plate-bridge/+/result"])
        frames = 60
        for index in range(frames):
            collector.publish(f"cameras/cam{index}/image", FRAME)
        events = collector.wait_for_total(frames)
        cameras = sorted(event["camera_id"] for event in events)
        assert cameras == sorted(f"cam{index}" for index in range(frames)), "every frame handled exactly once"
        # A worker counts its frame once the event is out, so the last count may trail the event.
        assert all(replica.wait_idle(10) for replica in replicas)
        shares = [replica.stats.processed for replica in replicas]
        assert sum(shares) == frames and all(share > 0 for share in shares), shares
    finally:
        for replica in replicas:
            replica.stop(deadline=5)
        mosquitto.stop()


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="CPU affinity needs Linux and at least two CPUs to choose from",
)
@pytest.mark.parametrize("setting", ["auto", "all"])
def test_run_pins_itself_to_one_cpu_for_a_remote_reader(
    broker: BrokerAddress, emulator: ReaderEmulator, collector_factory: Any, tmp_path: Path, setting: str
) -> None:
    collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/bridge/state"])
    process = _run_bridge_process(tmp_path, bridge_config(broker, emulator, cpu_affinity=setting))
    try:
        assert collector.wait_for("plate-bridge/bridge/state", 1)[-1] == {"state": "online"}
        # Every thread of the running bridge (MQTT, workers, health), not only the one that pinned.
        threads = [int(tid) for tid in os.listdir(f"/proc/{process.pid}/task")]
        assert len(threads) > 3
        masks = {frozenset(os.sched_getaffinity(thread)) for thread in threads}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    if setting == "auto":
        # One CPU for every thread: the least busy of those this test may use.
        assert len(masks) == 1 and len(next(iter(masks))) == 1, masks
        assert next(iter(masks)) <= os.sched_getaffinity(0)
    else:
        assert masks == {frozenset(os.sched_getaffinity(0))}


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is a Linux call")
def test_cpu_affinity_choices(tmp_path: Path) -> None:
    # In a child process: pinning this test runner would slow every test after it.
    allowed = sorted(os.sched_getaffinity(0))
    script = (
        "import json, os, sys\n"
        "from bridge.tuning import pin_to_cpu\n"
        "from bridge.core.errors import ConfigError\n"
        "setting = json.loads(sys.argv[1]); local = sys.argv[2] == 'local'\n"
        "try:\n"
        "    cpu = pin_to_cpu(setting, offline_engine=local)\n"
        "except ConfigError as error:\n"
        "    print(json.dumps({'error': str(error)})); sys.exit()\n"
        "print(json.dumps({'cpu': cpu, 'allowed': sorted(os.sched_getaffinity(0))}))\n"
    )

    def pin(setting: object, reader: str = "remote") -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-c", script, json.dumps(setting), reader],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return json.loads(done.stdout)

    assert pin("all") == {"cpu": None, "allowed": allowed}
    assert pin("auto", "local") == {"cpu": None, "allowed": allowed}, "the offline engine keeps every CPU"
    assert pin(allowed[0]) == {"cpu": allowed[0], "allowed": [allowed[0]]}
    if len(allowed) > 1:
        chosen = pin("auto")
        assert chosen["cpu"] in allowed and chosen["allowed"] == [chosen["cpu"]], chosen
    assert "may only run on CPUs" in pin(max(allowed) + 1)["error"]


def test_a_slow_call_for_one_camera_parks_no_second_worker(
    broker: BrokerAddress, emulator: ReaderEmulator, running_bridge: Any, collector_factory: Any
) -> None:
    """A route that reuses readings decides a camera's frames one after the other. The camera's next
    frame waits in its queue while its first is read (slowly, here): it must not take the second
    worker, which another camera's frame needs."""
    routes = [{"topic": "cameras/+/image", "regions": ["gb"], "repeat_window": 30}]
    running_bridge(bridge_config(broker, emulator, routes=routes))
    collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/+/result"])
    emulator.delay_next(3.0)  # the gate's first call
    collector.publish("cameras/gate/image", FRAME)
    assert emulator.wait_for_calls(1, timeout=10)
    collector.publish("cameras/gate/image", jpeg(text="XY99ZZZ"))  # the gate's next frame
    collector.publish("cameras/drive/image", jpeg(text="DR1VE"))  # another camera's
    collector.wait_for("plate-bridge/drive/result", 1, timeout=10)
    # The drive's frame went ahead on the free worker, before the gate's slow call came back.
    assert collector.on("plate-bridge/gate/result") == []
    gate = collector.wait_for("plate-bridge/gate/result", 2, timeout=15)
    assert [event.get("cached", False) for event in gate] == [False, False]
