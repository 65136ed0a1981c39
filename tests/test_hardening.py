"""Hardening: memory bounded by configuration, no reading of the bridge's own output, retained frames
read once. Real brokers, the reader emulator over HTTP (or, where a test must hold the reader still,
an in-process reader that waits for the test)."""

from __future__ import annotations

import copy
import json
import logging
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.config import load_config
from bridge.core.errors import ConfigError
from bridge.core.messages import filters_overlap
from bridge.imaging.digest import blake2b_digest, default_digest
from bridge.mqtt import RetainedRepeats
from bridge.service import Bridge
from tests.canned import READING
from tests.conftest import BrokerAddress, Collector, Mosquitto
from tests.emulator import ReaderEmulator
from tests.images import jpeg, noisy_jpeg
from tests.test_bridge import bridge_config

FRAME = jpeg(text="AB12CDE")
OTHER = jpeg(text="XY99ZZZ")


class GateReader:
    """A reader that holds each call until the test opens the gate: what is queued behind it, and
    what the bridge does meanwhile, is then up to the test, not to timing."""

    upload_base64 = False

    def __init__(self) -> None:
        self.calls: list[str | None] = []
        self.entered = threading.Semaphore(0)
        self._open = threading.Event()

    def read(self, image: bytes | str, **params: Any) -> dict[str, Any]:
        self.calls.append(params.get("camera_id"))
        self.entered.release()
        # Bounded, so a failing test still ends; a passing one opens the gate long before.
        self._open.wait(30)
        return copy.deepcopy(READING)

    def open(self) -> None:
        self._open.set()


@pytest.fixture
def start_bridge() -> Iterator[Any]:
    """Start a bridge (with the given reader, else the configured one); stopped after the test."""
    started: list[tuple[Bridge, GateReader | None]] = []

    def start(config: dict[str, Any], reader: GateReader | None = None) -> Bridge:
        bridge = Bridge(load_config(**config), reader=reader)
        bridge.start()
        started.append((bridge, reader))
        assert bridge.mqtt is not None and bridge.mqtt.wait_connected(10)
        return bridge

    yield start
    for bridge, reader in started:
        if reader is not None:
            reader.open()
        bridge.stop(deadline=5)


@pytest.fixture
def gated_bridge(start_bridge: Any) -> Any:
    def start(config: dict[str, Any]) -> tuple[Bridge, GateReader]:
        gate = GateReader()
        return start_bridge(config, gate), gate

    return start


def one_worker(emulator_url: str = "http://127.0.0.1:9/v1/plate-reader/") -> dict[str, Any]:
    return {"url": emulator_url, "max_calls_per_second": None, "concurrency": 1}


def wait_for_document(
    collector: Collector, topic: str, done: Callable[[dict[str, Any]], bool], timeout: float = 15.0
) -> dict[str, Any]:
    """The first document on `topic` for which `done` is true, once it has arrived (or fail)."""

    def found() -> dict[str, Any] | None:
        return next((document for document in collector.on(topic) if done(document)), None)

    with collector._changed:
        collector._changed.wait_for(lambda: found() is not None, timeout)
    document = found()
    assert document is not None, (
        f"no such document on {topic} after {timeout:g} s: {collector.on(topic)[-3:]}"
    )
    return document


# --- memory: refused before it is kept, and a global cap on what waits -----------------------------


def test_a_frame_over_max_payload_bytes_is_refused_at_once_without_being_queued(
    broker: BrokerAddress, emulator: ReaderEmulator, gated_bridge: Any, collector_factory: Any
) -> None:
    config = bridge_config(broker, emulator, reader=one_worker(), max_payload_bytes=len(FRAME) * 4)
    bridge, gate = gated_bridge(config)
    collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
    collector.publish("cameras/drive/image", FRAME)
    assert gate.entered.acquire(timeout=10), "the only worker is now held by the reader"
    collector.publish("cameras/gate/image", FRAME * 5)
    # The worker is still held: only a check made on arrival can have produced this event.
    [error] = collector.wait_for("plate-bridge/gate/error")
    assert error["code"] == "payload_too_large" and error["camera_id"] == "gate"
    health = bridge.health()
    assert health["queued"] == 0 and health["queued_bytes"] == 0 and health["too_large"] == 1
    gate.open()
    collector.wait_for("plate-bridge/drive/result")
    assert gate.calls == ["drive"]


@pytest.mark.mosquitto
def test_with_mqtt_5_the_broker_drops_what_is_over_the_limit_instead_of_sending_it(
    mosquitto: Mosquitto, emulator: ReaderEmulator, start_bridge: Any, collector_factory: Any
) -> None:
    broker = BrokerAddress("mosquitto", "127.0.0.1", mosquitto.port)
    limit = 200_000
    config = bridge_config(broker, emulator, reader=one_worker(emulator.url), max_payload_bytes=limit)
    config["mqtt"]["protocol"] = "5"
    bridge = start_bridge(config)
    collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
    # Over the limit with any topic and header the bridge's Maximum Packet Size leaves room for ...
    collector.publish("cameras/gate/image", b"\xff" * (limit + 128 * 1024))
    # ... then a frame within it: on the same topic, so the broker would have sent the big one first.
    collector.publish("cameras/gate/image", FRAME)
    collector.wait_for("plate-bridge/gate/result")
    health = bridge.health()
    assert (health["too_large"], health["received"]) == (0, 1), "the big frame never reached the bridge"
    assert collector.on("plate-bridge/gate/error") == []


def test_the_queue_is_capped_as_a_whole_and_drops_its_oldest_frames_first(
    broker: BrokerAddress, emulator: ReaderEmulator, gated_bridge: Any, collector_factory: Any
) -> None:
    config = bridge_config(broker, emulator, reader=one_worker(), max_queued_frames=3)
    bridge, gate = gated_bridge(config)
    collector: Collector = collector_factory(
        broker.host, broker.port, ["plate-bridge/+/result", "plate-bridge/+/error"]
    )
    collector.publish("cameras/cam0/image", FRAME)
    assert gate.entered.acquire(timeout=10)
    for index in range(1, 7):
        collector.publish(f"cameras/cam{index}/image", FRAME)
    # Six frames of six cameras behind a held worker, three places: the three oldest go.
    dropped = [collector.wait_for(f"plate-bridge/cam{index}/error")[0] for index in (1, 2, 3)]
    assert all(event["code"] == "frame_dropped" for event in dropped)
    health = bridge.health()
    assert health["queued"] == 3 and health["dropped"] == 3
    assert health["dropped_by"] == {"camera_queue": 0, "queue_full": 3, "shutdown": 0}
    gate.open()
    for index in (0, 4, 5, 6):
        collector.wait_for(f"plate-bridge/cam{index}/result")
    assert bridge.wait_idle(10)
    assert gate.calls == ["cam0", "cam4", "cam5", "cam6"], "the rest kept their arrival order"
    events = [topic for topic, _, _ in collector.messages]
    assert len(events) == 7, "every frame ended in exactly one event"


def test_a_frame_the_bridge_accepts_must_fit_in_its_queue() -> None:
    reader = {"url": "http://127.0.0.1:9/v1/plate-reader/"}
    with pytest.raises(ConfigError) as refused:
        load_config(reader=reader, max_payload_bytes=20_000_000, max_queued_bytes=10_000_000)
    assert refused.value.problems == [
        "max_queued_bytes: 10,000,000 is less than max_payload_bytes (20,000,000): "
        "a frame the bridge accepts must fit in its queue"
    ]
    config = load_config(reader=reader)
    assert (config.max_queued_frames, config.max_queued_bytes) == (100, 64 * 1024 * 1024)


def _rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _frame_of(size: int) -> bytes:
    """A JPEG of about `size` bytes (noise compresses badly, so its size follows its area)."""
    width = 400
    while len(frame := noisy_jpeg(width, width * 3 // 4)) < size:
        width += 40
    return frame


@pytest.mark.slow
@pytest.mark.mosquitto
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the bridge's RSS from /proc")
def test_memory_stays_bounded_by_configuration_under_thousands_of_cameras(
    emulator: ReaderEmulator, collector_factory: Any, tmp_path: Path
) -> None:
    if shutil.which("mosquitto") is None:
        pytest.skip("the mosquitto binary is not installed")
    cameras, frame = 1500, _frame_of(400_000)
    mosquitto = Mosquitto(tmp_path, extra="max_queued_messages 5000").start()
    address = BrokerAddress("mosquitto", "127.0.0.1", mosquitto.port)
    # A slow reader: frames arrive far faster than they are read, so most of them must wait or go.
    slow = ReaderEmulator(service_time=0.1, max_records=10).start()
    config = bridge_config(address, slow, reader={"url": slow.url, "max_calls_per_second": None})
    config["mqtt"]["health_interval"] = 0.5
    del config["queued_frames_per_camera"]  # the shipped defaults, as a user runs them
    # The shipped repeat_window too: the recognize node's cache of each camera's last frame counts.
    config["routes"] = [{"topic": "cameras/+/image"}]
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config))
    events: Collector = collector_factory(
        address.host, address.port, ["plate-bridge/+/result", "plate-bridge/+/error"]
    )
    health: Collector = collector_factory(address.host, address.port, ["plate-bridge/bridge/health"])
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "run", "--config", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        health.wait_for("plate-bridge/bridge/health")
        events.publish("cameras/warm-up/image", frame)  # every code path loaded before the baseline
        events.wait_for("plate-bridge/warm-up/result")
        baseline = _rss_kib(process.pid, "VmRSS")
        for index in range(cameras):
            events.publish(f"cameras/cam{index:04d}/image", frame)
        documents = events.wait_for_total(cameras + 1, timeout=300)
        peak = _rss_kib(process.pid, "VmHWM")
        dropped = sum(1 for event in documents if event.get("code") == "frame_dropped")
        counters = wait_for_document(
            health,
            "plate-bridge/bridge/health",
            lambda document: document["processed"] == cameras + 1 - dropped,
        )
    finally:
        process.terminate()
        process.wait(30)
        slow.stop()
        mosquitto.stop()
    results = [event for event in documents if "results" in event]
    errors = [event for event in documents if "code" in event]
    growth_mb = (peak - baseline) / 1024
    print(f"{len(results)} read, {len(errors)} dropped, peak RSS growth {growth_mb:.0f} MB")
    assert growth_mb < 250, f"the bridge grew by {growth_mb:.0f} MB for {cameras} cameras"
    assert len(results) + len(errors) == cameras + 1, "every frame ends in a result or an error event"
    assert len({event["camera_id"] for event in documents}) == cameras + 1, "one event per frame"
    assert {event["code"] for event in errors} == {"frame_dropped"}
    assert counters["dropped"] == counters["dropped_by"]["queue_full"] == dropped, counters


# --- the bridge never reads its own output --------------------------------------------------------


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_a_route_on_everything_does_not_read_the_bridges_own_events(
    broker: BrokerAddress,
    emulator: ReaderEmulator,
    start_bridge: Any,
    collector_factory: Any,
    caplog: pytest.LogCaptureFixture,
    protocol: str,
) -> None:
    if protocol == "5" and broker.kind == "amqtt":
        pytest.skip("amqtt speaks MQTT 3.1.1 only")
    config = bridge_config(broker, emulator, reader=one_worker(emulator.url), routes=[{"topic": "#"}])
    config["mqtt"]["protocol"] = protocol
    results_elsewhere = {"topic": "lot/+/image", "result_topic": "alpr/{camera_id}"}
    config["routes"].append(results_elsewhere)
    with caplog.at_level(logging.WARNING, logger="bridge.service"):
        bridge = start_bridge(config)
    overlaps = [record for record in caplog.records if "own topics" in record.getMessage()]
    assert len(overlaps) == 1 and "'#'" in overlaps[0].getMessage(), "one warning, for the '#' route"
    collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#", "alpr/#"])
    collector.publish("cameras/drive/image", b"not an image")
    [error] = collector.wait_for("plate-bridge/cameras/error")
    assert error["code"] == "payload_not_image"
    # The marker frame comes after the error event on the broker, hence also at the bridge: had the
    # bridge read its own error event, that reading's event would be out before the marker's.
    collector.publish("cameras/gate/image", FRAME)
    collector.wait_for("plate-bridge/cameras/result")
    assert bridge.wait_idle(10)
    # The retained status documents (bridge/state, bridge/info) aside, only the two events went out.
    topics = [topic for topic, _, _ in collector.messages if not topic.startswith("plate-bridge/bridge/")]
    assert topics == ["plate-bridge/cameras/error", "plate-bridge/cameras/result"]
    assert len(emulator.requests) == 1
    ignored = bridge.health()["own_topics_ignored"]
    if protocol == "5":
        # no_local: the broker sends none of the bridge's events back, only (on subscribing) the
        # retained bridge/state and bridge/info it may just have published.
        assert 1 <= ignored <= 2
    else:
        assert ignored >= 3, "bridge/state, bridge/info and the error event came back, and were ignored"


def test_own_topics_cover_the_base_topic_discovery_and_events_published_elsewhere() -> None:
    config = load_config(
        reader={"url": "http://127.0.0.1:9/v1/plate-reader/"},
        homeassistant={"enabled": True},
        routes=[
            {
                "topic": "cameras/+/image",
                "result_topic": "alpr/{camera_id}/plate",
                "error_topic": "x/err-{route}",
            }
        ],
    )
    own = Bridge(config).own_topics
    ours = [
        "plate-bridge/drive/error",
        "plate-bridge/bridge/state",
        "homeassistant/sensor/x/config",
        "alpr/drive/plate",
        "x/err-anything",
    ]
    assert [topic for topic in ours if not own.match(topic)] == []
    theirs = [
        "cameras/drive/image",
        "alpr/drive",
        "alpr/drive/plate/more",
        "x/other",
        "plate-bridgeX/a",
        "x/err",
    ]
    assert [topic for topic in theirs if own.match(topic)] == []


@pytest.mark.parametrize(
    ("first", "second", "overlap"),
    [
        ("#", "plate-bridge/#", True),
        ("+/+/image", "plate-bridge/+/result", False),
        ("+/+/result", "plate-bridge/+/result", True),
        ("plate-bridge", "plate-bridge/#", True),  # 'x/#' matches its parent 'x' too
        ("plate-bridge/+", "plate-bridge", False),
        ("cameras/+/image", "alpr/+/plate", False),
        ("#", "$SYS/broker", False),  # wildcards at the first level skip '$' topics
    ],
)
def test_filters_overlap_when_one_topic_could_match_both(first: str, second: str, overlap: bool) -> None:
    assert filters_overlap(first, second) is overlap
    assert filters_overlap(second, first) is overlap


# --- retained frames are read at most once --------------------------------------------------------


def _cut_connection(bridge: Bridge) -> None:
    """Shut the bridge's broker connection down under it, as a network failure would: paho
    reconnects and the bridge subscribes again, which makes the broker resend retained messages."""
    assert bridge.mqtt is not None
    connection = bridge.mqtt._client.socket()
    assert connection is not None
    connection.shutdown(socket.SHUT_RDWR)


STATE = "plate-bridge/bridge/state"


def _online_count(collector: Collector) -> int:
    return sum(1 for state in collector.on(STATE) if state["state"] == "online")


def wait_online(collector: Collector, count: int) -> None:
    """Wait until the bridge has said `online` `count` times: once per connection."""
    wait_for_document(collector, STATE, lambda _: _online_count(collector) >= count)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_a_retained_frame_is_read_once_across_reconnects(
    broker: BrokerAddress, emulator: ReaderEmulator, start_bridge: Any, collector_factory: Any, protocol: str
) -> None:
    if protocol == "5" and broker.kind == "amqtt":
        pytest.skip("amqtt speaks MQTT 3.1.1 only")
    collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
    # Frigate's snapshot topics are retained: the broker hands the last one to every new subscription.
    collector.publish("cameras/gate/image", FRAME, retain=True)
    config = bridge_config(broker, emulator, reader=one_worker(emulator.url))
    # Not the repeat cache's business (a redelivery is not a repeat), and it must not hide one here.
    config["routes"][0]["repeat_window"] = 0
    config["mqtt"]["protocol"] = protocol
    # MQTT 5: the session survives the cut and the subscription with it, and retain handling 1 asks
    # for retained messages on new subscriptions only, so the broker does not even resend the frame.
    resent = 1 if protocol == "3.1.1" else 0
    bridge = start_bridge(config)
    collector.wait_for("plate-bridge/gate/result")
    assert emulator.calls == 1

    def reconnect() -> None:
        before = _online_count(collector)
        _cut_connection(bridge)
        wait_online(collector, before + 1)
        assert bridge.mqtt is not None and bridge.mqtt.wait_connected(10)

    reconnect()
    # The broker sends the retained frame right after the SUBACK; the marker comes after it.
    collector.publish("cameras/marker/image", FRAME)
    collector.wait_for("plate-bridge/marker/result")
    assert emulator.calls == 2, "the retained frame was not read a second time"
    assert bridge.health()["retained_skipped"] == resent
    # A new retained frame on the topic is a new frame: read (once).
    collector.publish("cameras/gate/image", OTHER, retain=True)
    collector.wait_for("plate-bridge/gate/result", 2)
    reconnect()
    collector.publish("cameras/marker/image", OTHER)
    collector.wait_for("plate-bridge/marker/result", 2)
    assert emulator.calls == 4
    assert bridge.health()["retained_skipped"] == 2 * resent


@pytest.mark.parametrize("digest", [default_digest(), blake2b_digest], ids=["default", "blake2b"])
def test_retained_memory_is_bounded_per_topic_and_in_topics(digest: Any) -> None:
    memory = RetainedRepeats(topics=3, per_topic=2, digest=digest)
    assert not memory.seen_before("a", b"1", retained=True), "never seen: a new frame"
    assert not memory.seen_before("a", b"1", retained=False), "live frames are never skipped"
    assert memory.seen_before("a", b"1", retained=True)
    assert not memory.seen_before("b", b"1", retained=True), "by topic: the same frame elsewhere is new"
    memory.seen_before("a", b"2", retained=False)
    memory.seen_before("a", b"3", retained=False)
    assert not memory.seen_before("a", b"1", retained=True), "two digests per topic: 1 was forgotten"
    for topic in ("c", "d", "e"):
        memory.seen_before(topic, b"x", retained=False)
    assert len(memory) == 3
    assert not memory.seen_before("a", b"3", retained=True), "topic a was the least recently used"


def test_publishing_while_connecting_never_puts_a_packet_before_connect(broker: BrokerAddress) -> None:
    """paho opens the socket, then queues CONNECT: a publish from another thread in between went out
    first, and the broker closed the connection ("closed before answering"). Each attempt below
    connects while a thread publishes without pause; every one must be accepted."""
    from bridge.config import MQTTConfig
    from bridge.mqtt import MqttClient

    settings = MQTTConfig(host=broker.host, port=broker.port, client_id="race", persistent_session=False)
    for attempt in range(10):
        client = MqttClient(settings, on_message=lambda _message: None)
        started = threading.Event()
        done = threading.Event()

        def hammer(
            client: MqttClient = client, started: threading.Event = started, done: threading.Event = done
        ) -> None:
            started.set()
            while not done.is_set():
                client.publish("race/out", b"x", qos=1, retain=False)

        thread = threading.Thread(target=hammer, daemon=True)
        thread.start()
        started.wait(5)
        try:
            client.start(wait=10)  # raises BrokerError when the broker closed the connection
            assert client.wait_connected(10), f"attempt {attempt}: not connected"
        finally:
            done.set()
            thread.join(5)
            client.stop()
