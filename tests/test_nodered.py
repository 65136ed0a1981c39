"""The Node-RED example flows, loaded headless by a real Node-RED 4 against the test's mosquitto and a
running bridge: what the flows publish is what a user's home would get."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bridge.config import load_config
from bridge.service import Bridge
from tests.conftest import EXAMPLES, Collector, Mosquitto, free_port
from tests.emulator import ReaderEmulator
from tests.images import jpeg

FLOWS = EXAMPLES / "node-red"
NODE_RED_SPEC = "node-red@4"  # Node-RED 4 runs on Node 18/20; Node-RED 5 needs Node 22
NODE_RED_CACHE = Path.home() / ".cache" / "plate-bridge" / "node-red-4"
NPM_TIMEOUT = 600

SETTINGS_JS = """\
// Written by tests/test_nodered.py: no editor, no telemetry, loopback only.
module.exports = {{
    flowFile: {flow_file},
    credentialSecret: false,
    uiHost: "127.0.0.1",
    uiPort: {port},
    httpAdminRoot: false,
    httpNodeRoot: false,
    diagnostics: {{ enabled: false }},
    runtimeState: {{ enabled: false }},
    telemetry: {{ enabled: false }},
    logging: {{ console: {{ level: "warn", metrics: false, audit: false }} }},
}};
"""


def node_red() -> tuple[str, Path]:
    """`node` and Node-RED's red.js, installed into the cache folder once (lock-guarded); else skip."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("`node` and `npm` are needed to run Node-RED (neither is required by the bridge)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    if int(version.lstrip("v").split(".")[0] or 0) < 18:
        pytest.skip(f"Node-RED 4 needs Node.js 18 or later; this is {version}")
    red_js = NODE_RED_CACHE / "node_modules" / "node-red" / "red.js"
    NODE_RED_CACHE.mkdir(parents=True, exist_ok=True)
    # Several test runs (or helpers) may start at once: one installs, the others wait for it.
    with open(NODE_RED_CACHE.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not red_js.exists():
            command = [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", NODE_RED_SPEC]
            try:
                result = subprocess.run(
                    command,
                    cwd=NODE_RED_CACHE,
                    capture_output=True,
                    text=True,
                    timeout=NPM_TIMEOUT,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                pytest.skip(f"`npm install {NODE_RED_SPEC}` took over {NPM_TIMEOUT} s")
            if result.returncode != 0 or not red_js.exists():
                pytest.skip(f"`npm install {NODE_RED_SPEC}` failed: {result.stderr.strip()[-300:]}")
    return node, red_js


class Camera:
    """A camera's snapshot URL on 127.0.0.1 (what the flows' http request node fetches)."""

    def __init__(self, image: bytes) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(image)))
                self.end_headers()
                self.wfile.write(image)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/snapshot.jpg"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    if shutil.which("mosquitto") is None:
        pytest.skip("the mosquitto binary is not installed (the request/response flow needs MQTT 5)")
    broker = Mosquitto(tmp_path).start()
    yield broker
    broker.stop()


def test_the_example_flows_drive_the_bridge_and_act_on_its_events(
    mosquitto: Mosquitto, emulator: ReaderEmulator, tmp_path: Path, collector_factory: Any
) -> None:
    node, red_js = node_red()
    config = load_config(
        mqtt={"host": "127.0.0.1", "port": mosquitto.port, "protocol": "5", "health_interval": 0},
        reader={"url": emulator.url, "max_calls_per_second": None},
        requests={"enabled": True},
    )
    bridge = Bridge(config)
    bridge.start()
    camera = Camera(jpeg())
    process: subprocess.Popen[bytes] | None = None
    try:
        assert bridge.mqtt is not None and bridge.mqtt.wait_connected(10)
        collector: Collector = collector_factory(
            "127.0.0.1", mosquitto.port, ["home/+/+", "plate-bridge/+/result"]
        )
        # Retained triggers: Node-RED finds them when it subscribes, whenever that is.
        collector.publish("home/driveway/motion", b"on", retain=True)
        collector.publish("home/gate/doorbell", b"ring", retain=True)

        flows = [
            node
            for name in ("plates-flow.json", "request-response-flow.json")
            for node in json.loads((FLOWS / name).read_text())
        ]
        flow_file = tmp_path / "flows.json"
        flow_file.write_text(json.dumps(flows))
        settings = tmp_path / "settings.js"
        settings.write_text(SETTINGS_JS.format(flow_file=json.dumps(str(flow_file)), port=free_port()))
        environment = {
            **os.environ,
            "MQTT_HOST": "127.0.0.1",
            "MQTT_PORT": str(mosquitto.port),
            "CAMERA_SNAPSHOT_URL": camera.url,
        }
        log = (tmp_path / "node-red.log").open("wb")
        process = subprocess.Popen(
            [node, str(red_js), "--userDir", str(tmp_path), "--settings", str(settings)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=tmp_path,
        )

        # Flow 1: motion -> snapshot -> the bridge -> an event -> "a plate seen" in the home.
        [event] = collector.wait_for("plate-bridge/driveway/result", timeout=60)
        collector.wait_for("home/plates/seen", 2, timeout=30)  # one per camera (the gate's too)
        [seen] = [doc for doc in collector.on("home/plates/seen") if doc["camera"] == "driveway"]
        assert seen == {"plate": event["results"][0]["plate"], "camera": "driveway", "at": event["timestamp"]}
        # Flow 2: doorbell -> snapshot with a response topic -> the bridge's answer, matched.
        [answer] = collector.wait_for("home/gate/plate", timeout=30)
        [gate_event] = collector.wait_for("plate-bridge/gate/result")
        assert answer["kind"] == "plate" and answer["plate"] == gate_event["results"][0]["plate"]
        assert answer["request"] and answer["error"] is None
        # A plate on a watch list opens the gate (the event as the watch-list node publishes it).
        watched = {**event, "watched": [{"list": "family", "entry": "AB12CDE", "label": "Anna"}]}
        collector.publish("plate-bridge/driveway/result", json.dumps(watched).encode())
        [opened] = collector.wait_for("home/gate/open")
        assert opened == {"plate": event["results"][0]["plate"], "who": "Anna", "camera": "driveway"}
        # ... and is not also reported as merely seen.
        assert [doc["camera"] for doc in collector.on("home/plates/seen")].count("driveway") == 1
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        camera.close()
        bridge.stop(deadline=5)
