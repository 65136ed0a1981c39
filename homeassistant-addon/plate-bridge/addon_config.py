"""The add-on's options (/data/options.json) as the bridge's configuration file.

Run by run.sh at every start: it reads the options Home Assistant saved, asks the Supervisor for the
MQTT service (the Mosquitto add-on's address and credentials) unless the options name a broker, and
writes the configuration (JSON, which YAML reads) readable by the add-on alone. Standard library only:
it runs before anything else is certain to work. Tested against `plate-bridge check-config`
(tests/test_homeassistant_addon.py).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path
from typing import Any

SUPERVISOR = "http://supervisor"
INGRESS_PROXY = "172.30.32.2"
"""The Supervisor's ingress proxy: it logs users in (Home Assistant's own login) before they reach the
page, so its requests need no password of the page's (web.trusted_proxies)."""
DATA = Path("/data")


def mqtt_service(token: str | None) -> dict[str, Any]:
    """The MQTT service Home Assistant offers (host, port, username, password), or {} when none."""
    if not token:
        return {}
    request = urllib.request.Request(
        f"{SUPERVISOR}/services/mqtt", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(json.load(response).get("data") or {})
    except (OSError, ValueError):
        return {}


def bridge_config(options: dict[str, Any], service: dict[str, Any], data: Path = DATA) -> dict[str, Any]:
    """The bridge's configuration from the add-on's options and the MQTT service."""
    mqtt: dict[str, Any] = {"base_topic": options.get("base_topic") or "plate-bridge"}
    if options.get("mqtt_host"):
        mqtt["host"] = options["mqtt_host"]
        mqtt["port"] = int(options.get("mqtt_port") or 1883)
        credentials = (options.get("mqtt_username"), options.get("mqtt_password"))
    else:
        mqtt["host"] = service.get("host") or "core-mosquitto"
        mqtt["port"] = int(service.get("port") or 1883)
        credentials = (service.get("username"), service.get("password"))
    if credentials[0]:
        mqtt["username"], mqtt["password"] = credentials
    reader: dict[str, Any] = {}
    if options.get("token"):
        reader["token"] = options["token"]
    route: dict[str, Any] = {"topic": options.get("camera_topic") or "cameras/+/image"}
    if options.get("regions"):
        route["regions"] = list(options["regions"])
    return {
        "mqtt": mqtt,
        "reader": reader,
        "routes": [route],
        "homeassistant": {"enabled": bool(options.get("homeassistant_discovery", True))},
        "history": {
            "enabled": True,
            "data_dir": str(data / "history"),
            "max_age_days": int(options.get("history_days") or 30),
            "max_bytes": int(options.get("history_max_mb") or 1024) * 1024 * 1024,
            "visit_gap": float(options.get("visit_gap_seconds") or 300),
        },
        "web": {
            "enabled": True,
            "host": "0.0.0.0",
            "port": 8099,
            "trusted_proxies": [INGRESS_PROXY],
        },
        "log_level": str(options.get("log_level") or "info").upper(),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: addon_config.py OPTIONS.json CONFIG.yaml", file=sys.stderr)
        return 2
    options = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    service = {} if options.get("mqtt_host") else mqtt_service(os.environ.get("SUPERVISOR_TOKEN"))
    target = Path(argv[2])
    target.write_text(json.dumps(bridge_config(options, service), indent=2), encoding="utf-8")
    target.chmod(0o600)
    broker = (
        "the options' broker"
        if options.get("mqtt_host")
        else ("Home Assistant's MQTT service" if service else "core-mosquitto (no MQTT service offered)")
    )
    print(f"plate-bridge add-on: configuration written to {target}; MQTT: {broker}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
