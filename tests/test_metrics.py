"""Prometheus /metrics and /health over real HTTP on 127.0.0.1, with a bridge on a real broker."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from bridge.config import load_config
from bridge.core.errors import ConfigError
from bridge.core.messages import Message
from bridge.extensions import ExtensionContext, metrics
from bridge.extensions.metrics import MetricsExtension
from bridge.nodes.base import Node
from bridge.service import Bridge
from tests.canned import RecordingPublisher
from tests.conftest import BrokerAddress, Collector, free_port
from tests.emulator import ReaderEmulator
from tests.images import jpeg
from tests.test_httpserver import trickle

ROUTE = "cameras/+/image"


def samples(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics by (name, sorted labels)."""
    response = requests.get(f"{base}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def metrics_of(bridge: Bridge) -> MetricsExtension:
    [extension] = [e for e in bridge.extensions if isinstance(e, MetricsExtension)]
    return extension


def test_metrics_count_frames_events_errors_and_saved_calls(
    broker: BrokerAddress, emulator: ReaderEmulator, collector_factory: Any
) -> None:
    config = load_config(
        mqtt={"host": broker.host, "port": broker.port, "health_interval": 0},
        reader={
            "url": emulator.url,
            "max_calls_per_second": None,
            "concurrency": 1,
            "retries": 0,
            "breaker_threshold": 1,
            "breaker_reset": 300,
        },
        metrics={"enabled": True, "port": free_port()},
    )
    bridge = Bridge(config)
    bridge.start()
    try:
        assert bridge.mqtt is not None and bridge.mqtt.wait_connected(10)
        base = f"http://127.0.0.1:{metrics_of(bridge).port}"
        health = requests.get(f"{base}/health", timeout=5)
        assert health.status_code == 200
        assert health.json()["status"] == "healthy" and health.json()["connected"] is True

        collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
        frame = jpeg()
        collector.publish("cameras/drive/image", frame)
        collector.wait_for("plate-bridge/drive/result")
        collector.publish("cameras/drive/image", frame)  # the same frame again: the repeat cache answers
        collector.wait_for("plate-bridge/drive/result", 2)
        collector.publish("cameras/drive/image", b"not an image")
        collector.wait_for("plate-bridge/drive/error")
        # An event reaches MQTT before the extensions hear of it: the counters are read once every
        # frame has been through its flow, extension hooks included.
        assert bridge.wait_idle(10)

        found = samples(base)
        assert found[("plate_bridge_frames_total", (("route", ROUTE),))] == 3
        assert found[("plate_bridge_events_total", (("kind", "plate"), ("route", ROUTE)))] == 2
        assert found[("plate_bridge_events_total", (("kind", "error"), ("route", ROUTE)))] == 1
        assert found[("plate_bridge_errors_total", (("code", "payload_not_image"),))] == 1
        assert found[("plate_bridge_reader_calls_saved_total", ())] == 1
        assert found[("plate_bridge_reader_calls_total", ())] == emulator.calls == 1
        assert found[("plate_bridge_event_latency_seconds_count", (("route", ROUTE),))] == 1
        assert found[("plate_bridge_queue_depth", ())] == 0
        assert found[("plate_bridge_mqtt_connected", ())] == 1
        assert found[("plate_bridge_reader_state", (("state", "ok"),))] == 1

        # The service fails once: with breaker_threshold 1 the circuit opens, and /health says 503.
        emulator.fail_next(503)
        collector.publish("cameras/drive/image", jpeg(text="XY99ZZZ"))
        collector.wait_for("plate-bridge/drive/error", 2)
        assert bridge.wait_idle(10)
        health = requests.get(f"{base}/health", timeout=5)
        assert health.status_code == 503
        assert health.json()["status"] == "unhealthy"
        assert any("circuit" in problem for problem in health.json()["problems"])
        # Readiness says the same; liveness does not: a restart cannot heal a service that is down.
        ready = requests.get(f"{base}/health/ready", timeout=5)
        assert ready.status_code == 503 and any("circuit" in problem for problem in ready.json()["problems"])
        live = requests.get(f"{base}/health/live", timeout=5)
        assert live.status_code == 200 and live.json() == {"status": "alive", "problems": []}
        found = samples(base)
        assert found[("plate_bridge_reader_state", (("state", "unavailable"),))] == 1
        assert found[("plate_bridge_reader_state", (("state", "ok"),))] == 0
        assert found[("plate_bridge_errors_total", (("code", "reader_unavailable"),))] == 1

        assert requests.get(f"{base}/other", timeout=5).status_code == 404
    finally:
        bridge.stop(deadline=5)


def test_health_is_503_while_the_broker_cannot_be_reached(emulator: ReaderEmulator) -> None:
    config = load_config(
        mqtt={"host": "127.0.0.1", "port": free_port(), "health_interval": 0},  # nothing listens there
        reader={"url": emulator.url},
        metrics={"enabled": True, "port": free_port()},
    )
    bridge = Bridge(config)
    bridge.start(connect_wait=0.5)
    try:
        base = f"http://127.0.0.1:{metrics_of(bridge).port}"
        for path in ("/health", "/health/ready"):
            health = requests.get(base + path, timeout=5)
            assert health.status_code == 503
            assert health.json()["problems"] == ["not connected to the MQTT broker"]
        # paho keeps trying in its thread: the process works, a restart would find the same broker.
        assert requests.get(f"{base}/health/live", timeout=5).status_code == 200
    finally:
        bridge.stop(deadline=1)


def test_liveness_fails_once_the_mqtt_network_thread_has_ended(broker: BrokerAddress) -> None:
    config = load_config(
        mqtt={"host": broker.host, "port": broker.port, "health_interval": 0},
        reader={"url": "http://127.0.0.1:1/alpr"},
        metrics={"enabled": True, "port": free_port()},
    )
    bridge = Bridge(config)
    bridge.start()
    try:
        assert bridge.mqtt is not None and bridge.mqtt.wait_connected(10)
        base = f"http://127.0.0.1:{metrics_of(bridge).port}"
        assert requests.get(f"{base}/health/live", timeout=5).status_code == 200
        bridge.mqtt.stop()  # paho's network thread ends, as it would if it died
        live = requests.get(f"{base}/health/live", timeout=5)
        assert live.status_code == 503
        assert live.json() == {"status": "wedged", "problems": ["the MQTT network thread has ended"]}
    finally:
        bridge.stop(deadline=1)


class Exits(Node):
    """Ends the thread that runs it, as an error no `except Exception` catches would."""

    type = "exits"

    def process(self, msg: Message) -> Message:
        raise SystemExit


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_liveness_fails_once_a_reader_worker_has_ended(
    broker: BrokerAddress, emulator: ReaderEmulator, collector_factory: Any
) -> None:
    config = load_config(
        mqtt={"host": broker.host, "port": broker.port, "health_interval": 0},
        reader={"url": emulator.url, "concurrency": 2},
        routes=[{"topic": ROUTE, "nodes": [{"type": "tests.test_metrics:Exits"}]}],
        metrics={"enabled": True, "port": free_port()},
    )
    bridge = Bridge(config)
    bridge.start()
    try:
        assert bridge.mqtt is not None and bridge.mqtt.wait_connected(10)
        base = f"http://127.0.0.1:{metrics_of(bridge).port}"
        assert requests.get(f"{base}/health/live", timeout=5).status_code == 200
        workers = [thread for thread in threading.enumerate() if thread.name.startswith("reader-worker-")]
        collector: Collector = collector_factory(broker.host, broker.port, ["plate-bridge/#"])
        collector.publish("cameras/drive/image", jpeg())
        _first_to_end(workers, timeout=15)
        live = requests.get(f"{base}/health/live", timeout=5)
        assert live.status_code == 503
        assert live.json()["problems"] == ["1 of 2 reader workers have ended"]
    finally:
        bridge.stop(deadline=1)


def _first_to_end(threads: list[threading.Thread], timeout: float) -> threading.Thread:
    """The first of `threads` to end, joining each in turn briefly for up to `timeout` s."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        for thread in threads:
            thread.join(0.05)
            if not thread.is_alive():
                return thread
    raise AssertionError("no thread ended")


def test_a_taken_port_is_a_clear_error(emulator: ReaderEmulator) -> None:
    taken = int(emulator.base_url.rsplit(":", 1)[1])
    config = load_config(
        mqtt={"host": "127.0.0.1", "port": free_port()},
        reader={"url": emulator.url},
        metrics={"enabled": True, "port": taken},
    )
    with pytest.raises(ConfigError, match=f"metrics: cannot listen on 127.0.0.1:{taken}"):
        Bridge(config).start(connect_wait=0.5)


def test_metrics_are_off_by_default() -> None:
    config = load_config(reader={"url": "http://127.0.0.1:1/alpr"})
    assert not config.metrics.enabled and not MetricsExtension.enabled(config)


def test_the_listener_is_bounded_and_cuts_off_slow_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "REQUEST_DEADLINE", 1.0)
    config = load_config(reader={"url": "http://127.0.0.1:1/alpr"}, metrics={"enabled": True, "port": 0})
    extension = MetricsExtension(
        ExtensionContext(config=config, publisher=RecordingPublisher(), health=lambda: {})
    )
    extension.start()
    try:
        closed_after = trickle(extension.port, b"GET /metrics HTTP/1.1\r\nX-Slow: ", every=0.2, give_up=5)
        assert closed_after is not None and closed_after <= 2.5
        idle = [
            socket.create_connection(("127.0.0.1", extension.port))
            for _ in range(metrics.CONCURRENT_REQUESTS)
        ]
        try:
            busy = requests.get(f"http://127.0.0.1:{extension.port}/health/live", timeout=5)
            assert busy.status_code == 503
        finally:
            for sock in idle:
                sock.close()
    finally:
        extension.stop()
