"""Secrets never leave the process: what bridge/info, logs, errors and check-config show of the config."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.config import FrigateConfig, load_config
from bridge.core.errors import ConfigError, ReaderUnavailable
from bridge.core.redact import MASK, is_secret_name, redacted, shown_url
from bridge.extensions.frigate import FrigateClient
from bridge.reader import PlateReader
from tests.conftest import Collector, Mosquitto, free_port
from tests.emulator import ReaderEmulator
from tests.frigate_emulator import FrigateEmulator, event_message
from tests.images import jpeg
from tests.test_frigate import wait_until
from tests.test_webhooks import Target

SDK = "http://127.0.0.1:8080/v1/plate-reader/"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://frigate-user:frigate-pw@frigate:5000", "http://frigate:5000"),
        ("https://hooks.example.com/hook?token=query-tok&x=1", "https://hooks.example.com"),
        ("https://hooks.slack.com/services/T000/B000/path-tok", "https://hooks.slack.com"),
        ("http://ha.local:8123/api/webhook/ha-hook-id#frag", "http://ha.local:8123"),
        ("http://[::1]:8080/v1/plate-reader/", "http://[::1]:8080"),
        ("http://host:notaport/x", "http://host"),
    ],
)
def test_a_url_is_shown_as_scheme_host_and_port(url: str, shown: str) -> None:
    assert shown_url(url) == shown


@pytest.mark.parametrize(
    "name", ["password", "api_key", "apiKey", "API_KEY", "X-Auth-Token", "Authorization", "client_secret"]
)
def test_keys_named_like_secrets_are_secret(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["keyfile", "keepalive", "topic", "monkey", "username", "url"])
def test_other_keys_are_not(name: str) -> None:
    assert not is_secret_name(name)


def test_text_keeps_its_words_and_loses_the_secrets_of_its_urls() -> None:
    text = "cannot reach http://u:pw-1@host:81/p/path-tok?token=q-tok: refused (see https://h/x)."
    assert redacted(text) == "cannot reach http://host:81: refused (see https://h)."


def test_the_masked_configuration_shows_no_secret_of_any_kind() -> None:
    config = load_config(
        mqtt={"username": "cam", "password": "broker-pw"},
        reader={
            "url": "http://sdk-user:sdk-pw@sdk:8080/v1/plate-reader/?token=sdk-query",
            "token": "reader-tok",
        },
        frigate={"url": "http://frigate-user:frigate-pw@frigate:5000"},
        webhooks={
            "targets": [
                {"url": "https://hooks.example.com/hook?token=query-tok"},
                {"url": "https://discord.com/api/webhooks/123/path-tok", "headers": {"X-Key": "header-val"}},
            ]
        },
        routes=[
            {
                "topic": "cameras/+/image",
                "config": {
                    "mode": "fast",
                    "api_key": "engine-key",
                    "nested": {"clientSecret": "nested-secret"},
                },
                "nodes": [{"type": "dedupe", "auth_token": "node-tok"}],
            }
        ],
    )
    masked = config.masked()
    text = json.dumps(masked)
    for secret in (
        "broker-pw", "sdk-pw", "sdk-query", "reader-tok", "frigate-pw", "query-tok", "path-tok", "header-val",
        "engine-key", "nested-secret", "node-tok", "v1/plate-reader",
    ):  # fmt: skip
        assert secret not in text, secret
    assert masked["reader"]["url"] == "http://sdk:8080"
    assert masked["frigate"]["url"] == "http://frigate:5000"
    assert [target["url"] for target in masked["webhooks"]["targets"]] == [
        "https://hooks.example.com",
        "https://discord.com",
    ]
    assert masked["webhooks"]["targets"][1]["headers"] == {"X-Key": MASK}
    assert masked["routes"][0]["config"] == {
        "mode": "fast",
        "api_key": MASK,
        "nested": {"clientSecret": MASK},
    }
    assert masked["routes"][0]["nodes"] == [{"type": "dedupe", "auth_token": MASK}]
    assert masked["mqtt"]["username"] == "cam" and masked["mqtt"]["password"] == MASK
    # What is shown is redacted, not what is used.
    assert config.frigate.url == "http://frigate-user:frigate-pw@frigate:5000"


def test_a_refused_url_is_named_without_its_secrets() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(reader={"url": SDK}, frigate={"url": "ftp://u:frigate-pw@nas/x?token=query-tok"})
    assert any("frigate.url 'ftp://nas' must start with http" in p for p in caught.value.problems)
    assert "frigate-pw" not in str(caught.value.problems) and "query-tok" not in str(caught.value.problems)


def test_reader_errors_name_the_service_by_scheme_host_and_port() -> None:
    port = free_port()  # nothing listens there
    url = f"http://sdk-user:sdk-pw@127.0.0.1:{port}/v1/plate-reader/?token=sdk-query"
    with PlateReader(url, timeout=2) as reader, pytest.raises(ReaderUnavailable) as caught:
        reader.read(jpeg())
    shown = f"{caught.value} {caught.value!r} {caught.value.context} {reader!r}"
    assert f"http://127.0.0.1:{port}" in shown
    assert "sdk-pw" not in shown and "sdk-query" not in shown and "plate-reader" not in shown


def test_frigate_errors_name_frigate_by_scheme_host_and_port() -> None:
    port = free_port()
    client = FrigateClient(FrigateConfig(url=f"http://frigate-user:frigate-pw@127.0.0.1:{port}", timeout=2))
    try:
        with pytest.raises(ValueError, match=rf"Frigate at http://127\.0\.0\.1:{port} cannot") as caught:
            client.snapshot("1700000000.0-abc")
    finally:
        client.close()
    assert "frigate-pw" not in str(caught.value)


# --- end to end: a real bridge (the `plate-bridge run` process), a real broker, real HTTP peers ------

BROKER_PASSWORD = "broker-pw-e2e-1111"
READER_TOKEN = "reader-token-e2e-2222"
FRIGATE_PASSWORD = "frigate-pw-e2e-3333"
QUERY_TOKEN = "query-token-e2e-4444"
PATH_TOKEN = "path-token-e2e-5555"
HEADER_VALUE = "header-value-e2e-6666"
ENGINE_KEY = "engine-key-e2e-7777"
DEAD_QUERY_TOKEN = "dead-query-e2e-8888"
SECRETS = [
    BROKER_PASSWORD,
    READER_TOKEN,
    FRIGATE_PASSWORD,
    QUERY_TOKEN,
    PATH_TOKEN,
    HEADER_VALUE,
    ENGINE_KEY,
    DEAD_QUERY_TOKEN,
]


def leaks(blob: bytes) -> list[str]:
    """The secrets found in `blob`, as is or base64-encoded (alone or as HTTP basic `user:password`)."""
    found = []
    for secret in SECRETS:
        forms = [
            secret.encode(),
            base64.b64encode(secret.encode()),
            base64.urlsafe_b64encode(secret.encode()),
        ]
        forms += [base64.b64encode(f"{user}:{secret}".encode()) for user in ("bridge", "frigate-user")]
        found += [f"{secret} as {form!r}" for form in forms if form in blob]
    return found


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PLATE_")}
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", "-v", *args],
        capture_output=True,
        env=environment,
        timeout=timeout,
        check=False,
    )


@pytest.mark.mosquitto
def test_no_secret_leaves_a_running_bridge(
    mosquitto: Mosquitto, tmp_path: Path, collector_factory: Any
) -> None:
    hooks = Target([])
    hook_port = hooks.server.server_address[1]
    with ReaderEmulator(token=READER_TOKEN) as emulator, FrigateEmulator() as frigate:
        frigate.add_event("1700000000.0-abc123", "driveway", "car", jpeg())
        frigate_port = frigate.url.rsplit(":", 1)[1]
        config = {
            "mqtt": {
                "host": "127.0.0.1",
                "port": mosquitto.port,
                "username": "bridge",
                "password": BROKER_PASSWORD,
                "health_interval": 0.2,
            },
            "reader": {"url": emulator.url, "token": READER_TOKEN, "max_calls_per_second": None},
            "routes": [
                {"topic": "cameras/+/image", "config": {"api_key": ENGINE_KEY}, "repeat_window": 0},
                {"topic": "frigate/+/+/event_snapshot"},
            ],
            "frigate": {
                "enabled": True,
                "url": f"http://frigate-user:{FRIGATE_PASSWORD}@127.0.0.1:{frigate_port}",
            },
            "webhooks": {
                "targets": [
                    {
                        "url": f"http://127.0.0.1:{hook_port}/hook?token={QUERY_TOKEN}",
                        "headers": {"X-Api-Key": HEADER_VALUE},
                        "events": ["plate", "error"],
                    },
                    {"url": f"http://127.0.0.1:{hook_port}/api/webhook/{PATH_TOKEN}"},
                    # Nobody there: its failure is logged.
                    {"url": f"http://127.0.0.1:{free_port()}/hook?token={DEAD_QUERY_TOKEN}"},
                ],
                "retries": 0,
                "timeout": 2,
            },
            "log_level": "DEBUG",
        }
        config_path = tmp_path / "config.yaml"
        config_path.write_text(json.dumps(config))  # JSON is YAML
        collector: Collector = collector_factory("127.0.0.1", mosquitto.port, ["#"])
        stderr_path = tmp_path / "run.err"
        with stderr_path.open("wb") as stderr:
            bridge = subprocess.Popen(
                [sys.executable, "-m", "bridge.cli", "-v", "run", "--config", str(config_path)],
                stdout=stderr,
                stderr=stderr,
                env={key: value for key, value in os.environ.items() if not key.startswith("PLATE_")},
            )
        try:
            [info] = collector.wait_for("plate-bridge/bridge/info")
            collector.publish("cameras/gate/image", jpeg())
            collector.publish("cameras/gate/image", b"not an image")
            collector.publish("frigate/events", event_message("new", "1700000000.0-abc123"))
            collector.wait_for("plate-bridge/gate/result")
            collector.wait_for("plate-bridge/gate/error")
            collector.wait_for("plate-bridge/driveway/result")
            # Both plate events and the error to the first target, the plates to the second.
            received = hooks.wait_for(5)
            assert any(headers.get("X-Api-Key") == HEADER_VALUE for headers, _ in received)
            assert frigate.snapshot_requests("1700000000.0-abc123")
            collector.wait_for("plate-bridge/bridge/health", 2)
            wait_until(lambda: b"gave up" in stderr_path.read_bytes(), "the dead target's failure logged")
        finally:
            bridge.send_signal(signal.SIGTERM)
            assert bridge.wait(15) == 0
            hooks.close()

    outputs = {"run stderr": stderr_path.read_bytes()}
    for topic, payload, _ in collector.messages:
        outputs[f"message on {topic}"] = topic.encode() + b"\n" + payload
    done = run_cli("check-config", str(config_path))
    assert done.returncode == 0, done.stderr
    outputs["check-config"] = done.stdout + done.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text(json.dumps({**config, "frigate": {"url": f"ftp://u:{FRIGATE_PASSWORD}@nas"}}))
    done = run_cli("check-config", str(broken))
    assert done.returncode == 2 and b"frigate.url" in done.stderr, done.stderr
    outputs["check-config, a bad URL"] = done.stdout + done.stderr

    leaked = {name: found for name, blob in outputs.items() if (found := leaks(blob))}
    assert not leaked, leaked
    # Shown, though: where each URL points.
    assert info["config"]["frigate"]["url"] == f"http://127.0.0.1:{frigate_port}"
    assert [t["url"] for t in info["config"]["webhooks"]["targets"]][:2] == [
        f"http://127.0.0.1:{hook_port}"
    ] * 2
    assert b"webhooks: http://127.0.0.1:" in outputs["run stderr"]
