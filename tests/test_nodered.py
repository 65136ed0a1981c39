"""The Node-RED example flows, loaded headless by a real Node-RED 4 against the test's mosquitto and a
running bridge: what the flows publish is what a user's home would get."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bridge.config import load_config
from bridge.service import Bridge
from tests.conftest import EXAMPLES, Collector, Mosquitto
from tests.emulator import ReaderEmulator
from tests.images import jpeg
from tests.nodered import NodeRed

FLOWS = EXAMPLES / "node-red"


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


def test_the_example_flows_drive_the_bridge_and_act_on_its_events(
    mosquitto: Mosquitto, emulator: ReaderEmulator, tmp_path: Path, collector_factory: Any
) -> None:
    config = load_config(
        mqtt={"host": "127.0.0.1", "port": mosquitto.port, "protocol": "5", "health_interval": 0},
        reader={"url": emulator.url, "max_calls_per_second": None},
        requests={"enabled": True},
    )
    bridge = Bridge(config)
    bridge.start()
    camera = Camera(jpeg())
    node_red: NodeRed | None = None
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
        node_red = NodeRed(
            tmp_path,
            flows,
            environment={
                "MQTT_HOST": "127.0.0.1",
                "MQTT_PORT": str(mosquitto.port),
                "CAMERA_SNAPSHOT_URL": camera.url,
            },
        ).start()

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
        if node_red is not None:
            node_red.stop()
        camera.close()
        bridge.stop(deadline=5)
