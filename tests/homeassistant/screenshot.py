"""Take the Home Assistant page's screenshot (docs/images/) of a camera's device page in a real HA.

    python -m tests.homeassistant.screenshot docs/images/homeassistant-device.png

Starts mosquitto, a cached Home Assistant (see harness.py), the bridge with the offline reader, sends
one of examples/images/, and photographs the device page with headless Chromium, driven over the
DevTools protocol (the page needs the owner's token in its local storage before it loads).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from websockets.sync.client import connect

from bridge.config import load_config
from bridge.service import Bridge
from tests.conftest import EXAMPLES, Collector, Mosquitto, free_port
from tests.homeassistant.harness import HomeAssistant, Release, install, interpreter

RELEASE = Release("2025.4.4", interpreter("3.13") or "python3.13")
WIDTH, HEIGHT = 1280, 900


class DevTools:
    """The few DevTools protocol calls a screenshot needs."""

    def __init__(self, port: int) -> None:
        give_up = time.monotonic() + 30
        while True:
            try:
                pages = requests.get(f"http://127.0.0.1:{port}/json", timeout=2).json()
                break
            except requests.RequestException:
                if time.monotonic() > give_up:
                    raise
                time.sleep(0.2)
        page = next(page for page in pages if page["type"] == "page")
        self.socket = connect(page["webSocketDebuggerUrl"], max_size=None)
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            answer = json.loads(self.socket.recv(60))
            if answer.get("id") == self.next_id:
                return answer.get("result", {})  # type: ignore[no-any-return]


def main(out: Path) -> None:
    install(RELEASE)
    folder = Path(tempfile.mkdtemp(prefix="ha-screenshot-"))
    mosquitto = Mosquitto(folder).start()
    http_port = free_port()
    home_assistant = HomeAssistant(RELEASE, folder / "ha", http_port=http_port, broker_port=mosquitto.port)
    chromium = None
    bridge = None
    try:
        home_assistant.start()
        config = load_config(
            mqtt={"host": "127.0.0.1", "port": mosquitto.port, "health_interval": 0},
            reader={"url": "local"},
            routes=[{"topic": "cameras/+/image", "regions": ["gb"]}],
            homeassistant={"enabled": True, "cameras": ["gate"], "autoclear": 0},
            watchlists={"family": {"plates": [{"plate": "BD51SMR", "label": "Anna's car"}]}},
        )
        bridge = Bridge(config)
        bridge.start()
        collector = Collector("127.0.0.1", mosquitto.port, ["plate-bridge/#"])
        collector.publish("cameras/gate/image", (EXAMPLES / "images" / "gb_rear_yellow.jpg").read_bytes())
        home_assistant.wait_state(
            "sensor.gate_plate", lambda state: state["state"] not in ("", "unknown"), 120
        )
        [devices] = home_assistant.ws({"type": "config/device_registry/list"})
        [gate] = [device for device in devices if device["name"] == "gate"]

        debug_port = free_port()
        chromium = subprocess.Popen(
            [
                shutil.which("chromium") or "chromium",
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                f"--remote-debugging-port={debug_port}",
                f"--window-size={WIDTH},{HEIGHT}",
                f"--user-data-dir={folder / 'chromium'}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        tools = DevTools(debug_port)
        tools.call("Page.enable")
        tools.call("Page.navigate", url=home_assistant.url + "/auth/authorize")
        time.sleep(2)
        tokens = {
            "access_token": home_assistant.credentials.access_token,
            "token_type": "Bearer",
            "expires_in": 86400,
            "hassUrl": home_assistant.url,
            "clientId": home_assistant.credentials.client_id,
            "expires": int(time.time() * 1000) + 86_400_000,
            "refresh_token": home_assistant.credentials.refresh_token,
        }
        tools.call(
            "Runtime.evaluate",
            expression=f"localStorage.setItem('hassTokens', {json.dumps(json.dumps(tokens))});"
            "localStorage.setItem('selectedTheme', JSON.stringify({theme: 'default', dark: false}));",
        )
        tools.call("Page.navigate", url=f"{home_assistant.url}/config/devices/device/{gate['id']}")
        time.sleep(12)  # the frontend loads, connects its websocket and renders the cards
        shot = tools.call("Page.captureScreenshot", format="png")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(shot["data"]))
        print(f"wrote {out}")
    finally:
        if chromium is not None:
            chromium.terminate()
            chromium.wait(10)
        if bridge is not None:
            bridge.stop(deadline=5)
        home_assistant.stop()
        mosquitto.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images/homeassistant-device.png"))
