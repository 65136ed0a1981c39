"""Shared fixtures: the shared data folder, real brokers (amqtt, mosquitto), the reader emulator."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bridge.config import load_config
from bridge.mqtt.broker import EmbeddedBroker, pick_port
from bridge.service import Bridge
from tests.emulator import DEFAULT_SHARED_DIR as SHARED
from tests.emulator import ReaderEmulator

RESPONSES = SHARED / "data" / "responses"
PLATES = SHARED / "data" / "plates"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

needs_shared = pytest.mark.skipif(
    not RESPONSES.is_dir(), reason=f"the shared data folder {SHARED} is not there (it is read in place)"
)


def free_port() -> int:
    return pick_port("127.0.0.1", 0)


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")


@dataclass
class BrokerAddress:
    kind: str
    host: str
    port: int
    process: subprocess.Popen[bytes] | None = None


class Mosquitto:
    """A mosquitto of the test's own on a free port, with a temporary configuration."""

    def __init__(self, folder: Path, port: int | None = None, extra: str = "") -> None:
        self.folder = folder
        self.port = port or free_port()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        conf = self.folder / f"mosquitto-{self.port}.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n{self.extra}\n"
        )
        self.process = subprocess.Popen(
            ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()


@pytest.fixture(params=["amqtt", "mosquitto"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BrokerAddress]:
    """A real broker on a free port: the embedded amqtt always, mosquitto when its binary exists."""
    if request.param == "amqtt":
        embedded = EmbeddedBroker("127.0.0.1", free_port())
        embedded.start()
        try:
            yield BrokerAddress("amqtt", "127.0.0.1", embedded.port)
        finally:
            embedded.stop()
        return
    if shutil.which("mosquitto") is None:
        pytest.skip("the mosquitto binary is not installed")
    mosquitto = Mosquitto(tmp_path).start()
    try:
        yield BrokerAddress("mosquitto", "127.0.0.1", mosquitto.port, mosquitto.process)
    finally:
        mosquitto.stop()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A mosquitto of the test's own on a free port (MQTT 5 too), for tests that need that broker alone."""
    if shutil.which("mosquitto") is None:
        pytest.skip("the mosquitto binary is not installed (this test needs a real mosquitto)")
    broker = Mosquitto(tmp_path).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def emulator() -> Iterator[ReaderEmulator]:
    with ReaderEmulator() as running:
        yield running


def start_bridge(broker: BrokerAddress, emulator: ReaderEmulator, **sections: Any) -> Bridge:
    """A bridge on `broker` reading through `emulator`, with `sections` of configuration, connected."""
    config = load_config(
        mqtt={"host": broker.host, "port": broker.port, "health_interval": 0},
        reader={"url": emulator.url, "max_calls_per_second": None},
        **sections,
    )
    bridge = Bridge(config)
    bridge.start()
    assert bridge.mqtt is not None and bridge.mqtt.wait_connected(10)
    return bridge


def loaded_local_engine() -> Any:
    """The offline engine with its models loaded, or the test skipped saying what is missing (loading here
    makes missing models a skip rather than a server failing to start)."""
    local = pytest.importorskip(
        "bridge.engines.local", reason="the local engine's packages are not installed", exc_type=ImportError
    )
    engine = local.LocalEngine()
    try:
        engine.load()
    except (ImportError, FileNotFoundError) as exc:
        pytest.skip(f"the local engine's models are not installed: {exc}")
    return engine


class Collector:
    """A plain MQTT subscriber for assertions: collects messages, waits for them with a timeout."""

    def __init__(self, host: str, port: int, topics: list[str]) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._changed = threading.Condition()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"collector-{id(self)}")
        self._client.on_message = self._on_message
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *_: subscribed.set()
        self._client.connect(host, port)
        self._client.loop_start()
        self._client.subscribe([(topic, 1) for topic in topics])
        if not subscribed.wait(10):
            raise TimeoutError("the collector could not subscribe")

    def _on_message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        with self._changed:
            self.messages.append((message.topic, message.payload, bool(message.retain)))
            self._changed.notify_all()

    def on(self, topic: str) -> list[Any]:
        with self._changed:
            return [json.loads(payload) for name, payload, _ in self.messages if name == topic]

    def wait_for(self, topic: str, count: int = 1, timeout: float = 15.0) -> list[Any]:
        """The JSON documents received on `topic` once there are `count` of them (or fail)."""
        with self._changed:
            self._changed.wait_for(
                lambda: sum(1 for name, _, _ in self.messages if name == topic) >= count, timeout
            )
        found = self.on(topic)
        assert len(found) >= count, f"{len(found)} message(s) on {topic} after {timeout} s, wanted {count}"
        return found

    def wait_for_total(self, count: int, timeout: float = 30.0) -> list[Any]:
        """All JSON documents received once there are `count` messages on any topic (or fail)."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.messages) >= count, timeout)
            documents = [json.loads(payload) for _, payload, _ in self.messages]
        assert len(documents) >= count, f"{len(documents)} message(s) after {timeout} s, wanted {count}"
        return documents

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self._client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


@pytest.fixture
def collector_factory() -> Iterator[Any]:
    made: list[Collector] = []

    def make(host: str, port: int, topics: list[str]) -> Collector:
        made.append(Collector(host, port, topics))
        return made[-1]

    yield make
    for collector in made:
        collector.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server's URL: PLATE_BRIDGE_TEST_POSTGRES_URL, else one tests/postgres.py starts."""
    import os

    from tests.postgres import URL_ENV, PostgresServer, postgres_bin

    given = os.environ.get(URL_ENV)
    if given:
        yield given
        return
    if postgres_bin() is None:
        pytest.skip(f"PostgreSQL is not installed (scripts/ensure-postgresql.sh) and {URL_ENV} is not set")
    server = PostgresServer().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def history_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """A history store's URL for the same test on both databases: None (the SQLite file in the
    test's data directory), or a fresh database on the tests' PostgreSQL server."""
    if request.param == "sqlite":
        yield None
        return
    from tests.postgres import drop_database, fresh_database

    server = request.getfixturevalue("postgres_url")
    name = f"history_{abs(hash(request.node.nodeid)) % 10**9}"
    yield fresh_database(server, name)
    drop_database(server, name)
