"""Broker TLS and authentication against a real mosquitto, and secrets that never leak anywhere."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pwd
import shutil
import signal
import ssl
import subprocess
import sys
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
from bridge.core import schemas
from bridge.core.errors import BrokerError
from bridge.service import Bridge
from tests.conftest import Mosquitto, free_port
from tests.emulator import ReaderEmulator
from tests.images import jpeg

TOKEN = "tok-SECRET-7f3a9c"
BROKER_PASSWORD = "pw-SECRET-2b8e41"
WRONG_BROKER_PASSWORD = "pw-WRONG-SECRET-91d2e0"
TESTER, TESTER_PASSWORD = "tester", "tester-password"
FRAME = jpeg(text="AB12CDE")


def require_binaries(*names: str) -> None:
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        pytest.skip(f"needs the {', '.join(missing)} binar{'y' if len(missing) == 1 else 'ies'} on PATH")


def broker_user() -> str:
    # mosquitto started as root drops to the `mosquitto` user, which cannot read pytest's tmp folders
    # (mode 0700); naming the current user keeps it as is (and is ignored when not root).
    return pwd.getpwuid(os.getuid()).pw_name


def start_mosquitto(folder: Path, settings: str) -> Mosquitto:
    """A mosquitto on a free port: conftest's, with our settings after its defaults (the last wins)."""
    log = folder / "mosquitto.log"
    return Mosquitto(folder, extra=f"user {broker_user()}\nlog_dest file {log}\n{settings}").start()


def make_password_file(folder: Path, users: dict[str, str]) -> Path:
    path = folder / "passwords"
    for index, (user, password) in enumerate(users.items()):
        create = ["-c"] if index == 0 else []
        subprocess.run(
            ["mosquitto_passwd", "-b", *create, str(path), user, password],
            check=True,
            capture_output=True,
            timeout=30,
        )
    return path


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    require_binaries("openssl")
    folder = tmp_path_factory.mktemp("pki")
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca = ["-x509", "-days", "2", "-subj", "/CN=plate-bridge test CA", "-keyout", "ca.key", "-out", "ca.crt"]
    _openssl(folder, "req", *new_key, *ca)
    signed_by_ca = ["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2"]
    for name, extensions in (
        ("server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ):
        (folder / f"{name}.ext").write_text(extensions)
        request = ["-subj", f"/CN=plate-bridge {name}", "-keyout", f"{name}.key", "-out", f"{name}.csr"]
        _openssl(folder, "req", *new_key, *request)
        certificate = ["-in", f"{name}.csr", "-extfile", f"{name}.ext", "-out", f"{name}.crt"]
        _openssl(folder, "x509", "-req", *signed_by_ca, *certificate)
    return Pki(
        folder / "ca.crt",
        folder / "server.crt",
        folder / "server.key",
        folder / "client.crt",
        folder / "client.key",
    )


class Subscriber:
    """An MQTT client for assertions that can use TLS and a password; keeps every message as bytes."""

    def __init__(
        self,
        port: int,
        topics: list[str],
        *,
        username: str | None = None,
        password: str | None = None,
        tls: Pki | None = None,
    ) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._changed = threading.Condition()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"subscriber-{id(self)}")
        if username:
            self._client.username_pw_set(username, password)
        if tls:
            self._client.tls_set(
                ca_certs=str(tls.ca), certfile=str(tls.client_cert), keyfile=str(tls.client_key)
            )
        self._client.on_message = self._on_message
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *_: subscribed.set()
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        self._client.subscribe([(topic, 1) for topic in topics])
        if not subscribed.wait(10):
            self.close()
            raise TimeoutError("the subscriber could not subscribe")

    def _on_message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        with self._changed:
            self.messages.append((message.topic, message.payload))
            self._changed.notify_all()

    def wait_for(self, topic: str, count: int = 1, timeout: float = 15.0) -> list[Any]:
        """The JSON documents on `topic` once there are `count` of them (or fail)."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.on(topic)) >= count, timeout)
            found = self.on(topic)
        assert len(found) >= count, f"{len(found)} message(s) on {topic} after {timeout} s, wanted {count}"
        return found

    def on(self, topic: str) -> list[Any]:
        return [json.loads(payload) for name, payload in list(self.messages) if name == topic]

    def publish(self, topic: str, payload: bytes) -> None:
        self._client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


@pytest.fixture
def cleanup() -> Iterator[list[Any]]:
    """Processes, brokers, bridges, clients and files to end after the test, even when it fails."""
    owned: list[Any] = []
    yield owned
    for thing in reversed(owned):
        if isinstance(thing, subprocess.Popen):
            if thing.poll() is None:
                thing.kill()
            thing.wait(10)
        elif isinstance(thing, Bridge):
            thing.stop(deadline=2)
        elif hasattr(thing, "stop"):
            thing.stop()
        else:
            thing.close()


def anonymous_answer(port: int, pki: Pki) -> str:
    """What the broker answers a client with a valid certificate but no user name (a sanity check)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{time.monotonic_ns()}")
    outcome: list[str] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: outcome.append(str(reason))
    client.tls_set(ca_certs=str(pki.ca), certfile=str(pki.client_cert), keyfile=str(pki.client_key))
    try:
        client.connect("127.0.0.1", port, keepalive=5)
        deadline = time.monotonic() + 5
        while not outcome and time.monotonic() < deadline:
            client.loop(timeout=0.1)
    except (OSError, ssl.SSLError) as exc:
        outcome.append(f"{type(exc).__name__}: {exc}")
    finally:
        client.disconnect()
    return outcome[0] if outcome else "no answer"


# --- (a) TLS with a client certificate, and user names with passwords ------------------------------


def tls_bridge_config(port: int, emulator: ReaderEmulator, pki: Pki, **mqtt: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "client_id": "tls-bridge",
        "username": "bridge",
        "password": BROKER_PASSWORD,
        "tls": {"ca_certs": str(pki.ca), "certfile": str(pki.client_cert), "keyfile": str(pki.client_key)},
    }
    settings.update(mqtt)
    return {
        "mqtt": settings,
        "reader": {"url": emulator.url, "max_calls_per_second": None},
        "routes": [{"topic": "cameras/+/image"}],
    }


@pytest.fixture
def tls_broker(pki: Pki, tmp_path: Path, cleanup: list[Any]) -> int:
    require_binaries("mosquitto", "mosquitto_passwd")
    passwords = make_password_file(tmp_path, {"bridge": BROKER_PASSWORD, TESTER: TESTER_PASSWORD})
    broker = start_mosquitto(
        tmp_path,
        f"allow_anonymous false\npassword_file {passwords}\ncafile {pki.ca}\ncertfile {pki.server_cert}\n"
        f"keyfile {pki.server_key}\nrequire_certificate true\n",
    )
    cleanup.append(broker)
    return broker.port


@pytest.mark.mosquitto
def test_bridge_reads_frames_over_tls_with_a_client_certificate_and_a_password(
    tls_broker: int, pki: Pki, emulator: ReaderEmulator, cleanup: list[Any]
) -> None:
    assert "Not authorized" in anonymous_answer(tls_broker, pki), "anonymous clients must be refused"
    bridge = Bridge(load_config(**tls_bridge_config(tls_broker, emulator, pki)))
    cleanup.append(bridge)
    bridge.start()
    assert bridge.mqtt is not None and bridge.mqtt.wait_connected(10)
    subscriber = Subscriber(
        tls_broker, ["plate-bridge/#"], username=TESTER, password=TESTER_PASSWORD, tls=pki
    )
    cleanup.append(subscriber)
    subscriber.publish("cameras/gate/image", FRAME)
    [event] = subscriber.wait_for("plate-bridge/gate/result")
    schemas.validate("plate-event", event)
    assert event["camera_id"] == "gate" and event["results"]
    assert [request.upload for request in emulator.requests] == [FRAME]


@pytest.mark.mosquitto
def test_a_wrong_broker_password_fails_start_with_a_clear_error_without_the_password(
    tls_broker: int, pki: Pki, emulator: ReaderEmulator, cleanup: list[Any]
) -> None:
    bridge = Bridge(
        load_config(**tls_bridge_config(tls_broker, emulator, pki, password=WRONG_BROKER_PASSWORD))
    )
    cleanup.append(bridge)
    started = time.monotonic()
    with pytest.raises(BrokerError) as refused:
        bridge.start()
    assert time.monotonic() - started < 5, "a refused CONNACK is known at once; no waiting for a timeout"
    message = str(refused.value)
    assert "refused" in message and f"127.0.0.1:{tls_broker}" in message and "Not authorized" in message
    for secret in (WRONG_BROKER_PASSWORD, BROKER_PASSWORD):
        assert secret not in message and secret not in repr(refused.value)


@pytest.mark.mosquitto
def test_without_a_client_certificate_the_bridge_is_refused(
    tls_broker: int, pki: Pki, emulator: ReaderEmulator, cleanup: list[Any], tmp_path: Path
) -> None:
    config = tls_bridge_config(tls_broker, emulator, pki, tls={"ca_certs": str(pki.ca)})
    bridge = Bridge(load_config(**config))
    cleanup.append(bridge)
    with contextlib.suppress(BrokerError):  # refusing at start is the better behaviour: see the next test
        bridge.start(connect_wait=3)
    assert bridge.mqtt is not None and not bridge.mqtt.wait_connected(2)
    subscriber = Subscriber(
        tls_broker, ["plate-bridge/#"], username=TESTER, password=TESTER_PASSWORD, tls=pki
    )
    cleanup.append(subscriber)
    subscriber.publish("cameras/gate/image", FRAME)
    time.sleep(1)
    assert subscriber.messages == [] and emulator.requests == [], "no frame may pass a refused bridge"
    assert "did not return a certificate" in (tmp_path / "mosquitto.log").read_text()


@pytest.mark.mosquitto
def test_a_refused_tls_handshake_fails_start_with_a_broker_error(
    tls_broker: int, pki: Pki, emulator: ReaderEmulator, cleanup: list[Any]
) -> None:
    bridge = Bridge(
        load_config(**tls_bridge_config(tls_broker, emulator, pki, tls={"ca_certs": str(pki.ca)}))
    )
    cleanup.append(bridge)
    with pytest.raises(BrokerError, match=r"(?i)certificate|tls|ssl"):
        bridge.start(connect_wait=5)


# --- (b) secrets never leak: processes, logs, events ----------------------------------------------


def cli_environment() -> dict[str, str]:
    # The test's own settings only: a PLATE_* variable of the developer's shell must not interfere.
    return {key: value for key, value in os.environ.items() if not key.startswith("PLATE_")}


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", "-v", *args],
        capture_output=True,
        env={**cli_environment(), **(env or {})},
        timeout=timeout,
        check=False,
    )


def leaks(blob: bytes, secrets: list[str]) -> list[str]:
    """The secrets found in `blob`, as is or base64-encoded (alone or as HTTP basic `user:password`)."""
    found = []
    for secret in secrets:
        forms = [
            secret.encode(),
            base64.b64encode(secret.encode()),
            base64.urlsafe_b64encode(secret.encode()),
        ]
        forms.append(base64.b64encode(f"bridge:{secret}".encode()))
        found += [f"{secret} as {form!r}" for form in forms if form in blob]
    return found


@pytest.mark.mosquitto
def test_secrets_never_appear_in_output_logs_or_events(tmp_path: Path, cleanup: list[Any]) -> None:
    require_binaries("mosquitto", "mosquitto_passwd")
    passwords = make_password_file(tmp_path, {"bridge": BROKER_PASSWORD, TESTER: TESTER_PASSWORD})
    broker = start_mosquitto(tmp_path, f"allow_anonymous false\npassword_file {passwords}\n")
    cleanup.append(broker)
    emulator = ReaderEmulator(token=TOKEN).start()
    cleanup.append(emulator)
    config = {
        "mqtt": {
            "host": "127.0.0.1",
            "port": broker.port,
            "client_id": "secret-keeper",
            "username": "bridge",
            "password": BROKER_PASSWORD,
            "health_interval": 0.2,
        },
        "reader": {
            "url": emulator.url,
            "token": TOKEN,
            "max_calls_per_second": None,
            # One worker, so each scripted failure meets the frame it was scripted for.
            "concurrency": 1,
            "timeout": 0.5,
            "retries": 1,
            "backoff_initial": 0.05,
            "backoff_max": 0.1,
            # Keep calling after a 403 and keep the circuit closed: every failure path must be walked.
            "forbidden_cooldown": 0,
            "breaker_threshold": 100,
        },
        # Every frame must reach the reader to walk every failure path: no repeat cache.
        "routes": [{"topic": "cameras/+/image", "regions": ["gb"], "repeat_window": 0}],
        "log_level": "DEBUG",
    }
    config_path = tmp_path / "config.yaml"
    config_path.write_text(json.dumps(config))  # JSON is YAML
    outputs: dict[str, bytes] = {}

    subscriber = Subscriber(broker.port, ["plate-bridge/#"], username=TESTER, password=TESTER_PASSWORD)
    cleanup.append(subscriber)
    stdout, stderr = (tmp_path / "run.out").open("wb"), (tmp_path / "run.err").open("wb")
    cleanup += [stdout, stderr]
    bridge = subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "-v", "run", "--config", str(config_path)],
        stdout=stdout,
        stderr=stderr,
        env=cli_environment(),
    )
    cleanup.append(bridge)
    subscriber.wait_for("plate-bridge/bridge/state")

    invalid_json, invalid_schema = jpeg(text="BAD1"), jpeg(text="BAD2")
    emulator.set_response(invalid_json, "<html>upstream sent garbage</html>")
    emulator.set_response(invalid_schema, {"results": "not a list"}, verbatim=True)
    scenarios: list[tuple[str, Any, bytes, str]] = [
        ("forbidden", lambda: emulator.fail_next(403), FRAME, "error"),
        ("servererror", lambda: emulator.fail_next(500, times=2), FRAME, "error"),
        ("timeout", lambda: emulator.delay_next(1.5, times=2), FRAME, "error"),
        ("dropped", lambda: emulator.drop_next(times=2), FRAME, "error"),
        ("throttled", lambda: emulator.fail_next(429, times=2, retry_after=0.2), FRAME, "error"),
        ("notjson", None, invalid_json, "error"),
        ("badschema", None, invalid_schema, "error"),
        ("garbage", None, b"\x00not an image at all", "error"),
        ("badenvelope", None, b'{"image": 12, "regions": {"gb": 1}}', "error"),
        ("fine", None, FRAME, "result"),
    ]
    for camera, script, payload, kind in scenarios:
        if script is not None:
            script()
        subscriber.publish(f"cameras/{camera}/image", payload)
        subscriber.wait_for(f"plate-bridge/{camera}/{kind}")
    # Someone else's token on the service side: every call is refused from now on.
    emulator.token = "tok-of-another-account"
    subscriber.publish("cameras/othertoken/image", FRAME)
    [refused] = subscriber.wait_for("plate-bridge/othertoken/error")
    assert refused["code"] == "reader_forbidden" and "Invalid token." in refused["message"]
    subscriber.wait_for("plate-bridge/bridge/health", count=3)
    bridge.send_signal(signal.SIGTERM)
    assert bridge.wait(15) == 0
    outputs["run stdout"] = (tmp_path / "run.out").read_bytes()
    outputs["run stderr"] = (tmp_path / "run.err").read_bytes()

    codes = {
        json.loads(payload).get("code") for topic, payload in subscriber.messages if topic.endswith("/error")
    }
    assert codes >= {
        "reader_forbidden",
        "reader_unavailable",
        "reader_rate_limited",
        "reader_invalid_response",
        "payload_not_image",
        "envelope_invalid",
    }, codes
    assert b" DEBUG " in outputs["run stderr"], "debug logging was on, so there was every chance to leak"

    wrong = tmp_path / "wrong-password.yaml"
    wrong.write_text(json.dumps({**config, "mqtt": {**config["mqtt"], "password": WRONG_BROKER_PASSWORD}}))
    done = run_cli("run", "--config", str(wrong), timeout=60)
    assert done.returncode == 1 and b"Not authorized" in done.stderr, done.stderr[-2000:]
    outputs["wrong password run"] = done.stdout + done.stderr

    done = run_cli("check-config", str(config_path))
    assert done.returncode == 0 and b"**********" in done.stdout, done.stderr
    outputs["check-config"] = done.stdout + done.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text(json.dumps({**config, "mqtt": {**config["mqtt"], "pasword": BROKER_PASSWORD}}))
    done = run_cli("check-config", str(broken))
    assert done.returncode == 2 and b"mqtt.pasword" in done.stderr, done.stderr
    outputs["check-config, a typo"] = done.stdout + done.stderr
    minimal = tmp_path / "minimal.yaml"
    minimal.write_text("{}")  # the cloud URL, so the token from the environment is required and shown
    done = run_cli("check-config", str(minimal), env={"PLATE_RECOGNIZER_TOKEN": TOKEN})
    assert done.returncode == 0, done.stderr
    outputs["check-config, token from the environment"] = done.stdout + done.stderr

    image = tmp_path / "car.jpg"
    image.write_bytes(FRAME)
    emulator.token = "tok-of-another-account"
    for how, args, env in (
        ("--token", ["--token", TOKEN], None),
        ("PLATE_RECOGNIZER_TOKEN", [], {"PLATE_RECOGNIZER_TOKEN": TOKEN}),
    ):
        done = run_cli("recognize", str(image), "--url", emulator.url, *args, env=env)
        assert done.returncode == 1 and b"403" in done.stderr, done.stderr[-2000:]
        outputs[f"recognize, wrong token by {how}"] = done.stdout + done.stderr

    outputs["mosquitto log"] = (tmp_path / "mosquitto.log").read_bytes()
    for topic, payload in subscriber.messages:
        outputs[f"event on {topic}"] = topic.encode() + b"\n" + payload
    assert any(name.startswith("event on plate-bridge/bridge/") for name in outputs)
    secrets = [TOKEN, BROKER_PASSWORD, WRONG_BROKER_PASSWORD]
    leaked = {name: found for name, blob in outputs.items() if (found := leaks(blob, secrets))}
    assert not leaked, leaked


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, f"<html><pre>HTTP_AUTHORIZATION = 'Token {TOKEN}'</pre></html>"),
        (403, {"detail": f"Invalid token {TOKEN}."}),
        (400, {"upload": [f"rejected for Token {TOKEN}"]}),
    ],
)
def test_a_token_echoed_back_by_the_service_is_redacted(status: int, body: Any) -> None:
    from bridge.core.errors import ReaderError
    from bridge.reader import PlateReader

    with ReaderEmulator(token=TOKEN) as emulator, PlateReader(emulator.url, token=TOKEN) as reader:
        emulator.fail_next(status, body=body)
        with pytest.raises(ReaderError) as failed:
            reader.read(FRAME)
    assert not leaks(f"{failed.value} {failed.value!r} {failed.value.context}".encode(), [TOKEN])


# --- a hostile camera ------------------------------------------------------------------------------


@pytest.mark.mosquitto
def test_a_camera_id_with_control_characters_cannot_knock_the_bridge_off_the_broker(
    tmp_path: Path, emulator: ReaderEmulator, cleanup: list[Any]
) -> None:
    require_binaries("mosquitto")
    broker = start_mosquitto(tmp_path, "")
    cleanup.append(broker)
    config = {
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "client_id": "hostile-camera-test"},
        "reader": {"url": emulator.url, "max_calls_per_second": None, "concurrency": 1},
        "routes": [{"topic": "cameras/+/image"}],
    }
    bridge = Bridge(load_config(**config))
    cleanup.append(bridge)
    bridge.start()
    assert bridge.mqtt is not None and bridge.mqtt.wait_connected(10)
    subscriber = Subscriber(broker.port, ["plate-bridge/#"])
    cleanup.append(subscriber)
    poisoned = {"image": base64.b64encode(FRAME).decode(), "camera_id": "gate\x01one"}
    subscriber.publish("cameras/gate/image", json.dumps(poisoned).encode())
    subscriber.publish("cameras/drive/image", FRAME)
    try:
        subscriber.wait_for("plate-bridge/drive/result", timeout=8)
    finally:
        log = (tmp_path / "mosquitto.log").read_text(errors="replace")
    assert "malformed packet" not in log, log[-1000:]
    events = [topic for topic, _ in subscriber.messages if topic.split("/")[-1] in ("result", "error")]
    assert len(events) == 2, f"one event per frame, got {events}"


# --- (c) what an operator sees when broker TLS or credentials go wrong: `plate-bridge run` ---------


class RunningBridge:
    """`plate-bridge -v run --config FILE` as a process; its stderr lines collected as they come."""

    def __init__(self, config: Path) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bridge.cli", "-v", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=cli_environment(),
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def matching(self, words: str) -> list[str]:
        with self._changed:
            return [line for line in self.lines if words in line]

    def wait_for(self, words: str, count: int = 1, timeout: float = 30.0) -> list[str]:
        with self._changed:
            self._changed.wait_for(lambda: len([ln for ln in self.lines if words in ln]) >= count, timeout)
        found = self.matching(words)
        assert len(found) >= count, f"{len(found)} line(s) with {words!r}, wanted {count}:\n" + "\n".join(
            self.lines[-30:]
        )
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._reader.join(5)
        if self.process.stderr is not None:
            self.process.stderr.close()


def write_run_config(folder: Path, port: int, emulator: ReaderEmulator, **mqtt: Any) -> Path:
    document = {
        "mqtt": {"host": "127.0.0.1", "port": port, "client_id": "first-hour", **mqtt},
        "reader": {"url": emulator.url, "max_calls_per_second": None},
        "routes": [{"topic": "cameras/+/image"}],
    }
    path = folder / "bridge.yaml"
    path.write_text(json.dumps(document))  # JSON is YAML
    return path


def trustme_broker_files(folder: Path, *hosts: str) -> tuple[Path, Path, Path]:
    """A CA of trustme's, and a server certificate and key it signed for `hosts`: (ca, cert, key)."""
    import trustme

    authority = trustme.CA()
    server = authority.issue_cert(*hosts)
    ca, cert, key = folder / "trustme-ca.pem", folder / "trustme-server.pem", folder / "trustme-server.key"
    authority.cert_pem.write_to_path(str(ca))
    for blob in server.cert_chain_pems:
        blob.write_to_path(str(cert), append=True)
    server.private_key_pem.write_to_path(str(key))
    return ca, cert, key


@pytest.mark.slow  # the start-up wait (10 s) and paho's reconnect backoff
@pytest.mark.mosquitto
def test_a_broker_with_an_untrusted_certificate_after_start_up_is_logged_once_with_openssls_reason(
    tmp_path: Path, pki: Pki, emulator: ReaderEmulator, cleanup: list[Any]
) -> None:
    require_binaries("mosquitto")
    _, cert, key = trustme_broker_files(tmp_path, "127.0.0.1")  # signed by a CA the bridge does not trust
    port = free_port()
    bridge = RunningBridge(write_run_config(tmp_path, port, emulator, tls={"ca_certs": str(pki.ca)}))
    cleanup.append(bridge)
    bridge.wait_for("no answer yet from the broker")  # the start-up wait is over, without a broker
    broker = Mosquitto(
        tmp_path, port, extra=f"user {broker_user()}\ncertfile {cert}\nkeyfile {key}\n"
    ).start()
    cleanup.append(broker)
    [logged] = bridge.wait_for("TLS failed: certificate verify failed:")
    assert "unable to get local issuer certificate" in logged or "self-signed" in logged, logged
    assert "still retrying" in logged
    bridge.wait_for("again: TLS failed", count=1, timeout=30)  # paho retried it ...
    assert len(bridge.matching("ERROR bridge.mqtt.client: broker")) == 1, "... and it was logged once"


@pytest.mark.mosquitto
def test_a_certificate_for_another_address_names_the_mismatch_and_insecure_warns(
    tmp_path: Path, emulator: ReaderEmulator, cleanup: list[Any]
) -> None:
    require_binaries("mosquitto")
    ca, cert, key = trustme_broker_files(tmp_path, "localhost")  # not 127.0.0.1
    broker = Mosquitto(tmp_path, extra=f"user {broker_user()}\ncertfile {cert}\nkeyfile {key}\n").start()
    cleanup.append(broker)
    config = write_run_config(tmp_path, broker.port, emulator, tls={"ca_certs": str(ca)})
    done = run_cli("run", "--config", str(config))
    stderr = done.stderr.decode()
    assert done.returncode == 1, stderr
    assert "certificate verify failed: IP address mismatch" in stderr and "127.0.0.1" in stderr, stderr
    assert "Traceback" not in stderr

    config = write_run_config(tmp_path, broker.port, emulator, tls={"ca_certs": str(ca), "insecure": True})
    bridge = RunningBridge(config)
    cleanup.append(bridge)
    bridge.wait_for(f"connected to broker 127.0.0.1:{broker.port}")
    [warning] = bridge.matching("mqtt.tls.insecure")
    assert "WARNING" in warning and "not checked" in warning


@pytest.mark.slow  # the start-up wait (10 s) and paho's reconnect backoff
@pytest.mark.mosquitto
def test_a_wrong_password_seen_after_start_up_is_logged_when_it_changes_and_retried(
    tmp_path: Path, emulator: ReaderEmulator, cleanup: list[Any]
) -> None:
    require_binaries("mosquitto", "mosquitto_passwd")
    passwords = make_password_file(tmp_path, {"bridge": BROKER_PASSWORD})
    port = free_port()
    config = write_run_config(tmp_path, port, emulator, username="bridge", password=WRONG_BROKER_PASSWORD)
    bridge = RunningBridge(config)
    cleanup.append(bridge)
    bridge.wait_for("no answer yet from the broker")  # the start-up wait is over, without a broker
    broker = Mosquitto(
        tmp_path, port, extra=f"user {broker_user()}\nallow_anonymous false\npassword_file {passwords}\n"
    ).start()
    cleanup.append(broker)
    [logged] = bridge.wait_for("refused the connection: Not authorized")
    assert "ERROR" in logged and "still retrying" in logged and "mqtt.password" in logged
    bridge.wait_for("again: the broker refused", timeout=30)
    assert len(bridge.matching("refused the connection: Not authorized")) == 2, "once, then once per retry"
    bridge.stop()
    everything = "\n".join(bridge.lines)
    assert WRONG_BROKER_PASSWORD not in everything and BROKER_PASSWORD not in everything
