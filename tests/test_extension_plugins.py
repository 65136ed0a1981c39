"""Extensions as plugins: the built-ins and a third-party package register through one entry-point
group, each with its own configuration section, checked by `check-config` and served by `run`.

The example in examples/extension/ is installed for real (pip, into a temporary folder) and run in
a bridge process of its own against mosquitto; nothing of plate-bridge is edited for it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.config import CORE_KEYS, BridgeConfig, load_config
from bridge.core.errors import ConfigError
from bridge.extensions import registry as extension_registry
from bridge.extensions.registry import BUILTIN_EXTENSIONS, ENTRY_POINT_GROUP
from tests.conftest import EXAMPLES, Collector, Mosquitto
from tests.emulator import ReaderEmulator
from tests.images import jpeg

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = EXAMPLES / "extension"
# check-config builds the reader's settings only; nothing listens here and nothing is called.
SDK_URL = "http://127.0.0.1:9/v1/plate-reader/"


def _env(*paths: Path) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PLATE_")}
    environment["PYTHONPATH"] = os.pathsep.join([*map(str, paths), str(ROOT)])
    return environment


def _plate_bridge(*args: str, paths: tuple[Path, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(*paths),
        check=False,
    )


def _write(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example extension installed with pip into a folder of its own (put on PYTHONPATH to use)."""
    target = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"),
            *("--no-index", "--target", str(target), str(EXAMPLE)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert list(target.glob("plate_bridge_lastplate-*.dist-info")), sorted(p.name for p in target.iterdir())
    return target


def test_the_builtins_are_registered_in_pyproject_as_in_the_table() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = project["entry-points"][ENTRY_POINT_GROUP]
    assert list(declared.items()) == list(BUILTIN_EXTENSIONS.items())


def test_each_builtin_brings_its_own_section() -> None:
    found = extension_registry.build()
    assert found.problems == ()
    sections = {kind.config_key: kind.config_model for kind in found.types if kind.config_key}
    assert set(sections) == {"homeassistant", "requests", "metrics", "frigate", "webhooks", "history", "web"}
    for key, model in sections.items():
        assert BridgeConfig.model_fields[key].annotation is model, key
        assert key not in CORE_KEYS
    # The names the code used before the split still reach the same models.
    from bridge.config import FrigateConfig, HomeAssistantConfig, WebhooksConfig

    assert (HomeAssistantConfig, FrigateConfig, WebhooksConfig) == (
        sections["homeassistant"],
        sections["frigate"],
        sections["webhooks"],
    )


def test_an_extension_cross_check_is_a_configuration_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(reader={"url": SDK_URL}, requests={"enabled": True})
    assert caught.value.problems == [
        "configuration: requests.enabled needs mqtt.protocol '5' (response topics are MQTT 5)"
    ]


def test_home_assistant_owns_its_discovery_prefix_only_when_enabled() -> None:
    from bridge.extensions.homeassistant import HomeAssistantExtension

    on = load_config(reader={"url": SDK_URL}, homeassistant={"enabled": True, "discovery_prefix": "ha"})
    off = load_config(reader={"url": SDK_URL}, homeassistant={"discovery_prefix": "ha"})
    assert list(HomeAssistantExtension.published_subtrees(on)) == ["ha"]
    assert list(HomeAssistantExtension.published_subtrees(off)) == []


def test_the_environment_reaches_an_extension_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLATE_BRIDGE__METRICS__PORT", "9345")
    config = load_config(reader={"url": SDK_URL}, metrics={"enabled": True})
    assert (config.metrics.enabled, config.metrics.port) == (True, 9345)


def _fake_distribution(folder: Path, name: str, entries: dict[str, str]) -> Path:
    """A distribution's metadata as pip leaves it (METADATA, entry_points.txt), for plugins whose code
    is missing or wrong on purpose."""
    info = folder / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "".join(f"{key} = {value}\n" for key, value in entries.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")
    return folder


def test_a_broken_plugin_is_named_and_the_rest_still_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "not_an_extension.py").write_text("class Thing:\n    pass\n")
    monkeypatch.syspath_prepend(
        str(
            _fake_distribution(
                tmp_path,
                "broken-plugin",
                {
                    "missing": "no_such_module_here:Extension",
                    "wrong": "not_an_extension:Thing",
                    "homeassistant": "not_an_extension:Thing",
                },
            )
        )
    )
    found = extension_registry.build()
    problems = "\n".join(found.problems)
    assert "extension 'missing' (no_such_module_here:Extension, from broken-plugin) cannot be loaded: " in (
        problems
    )
    assert "ModuleNotFoundError" in problems
    assert "extension 'wrong' (not_an_extension:Thing, from broken-plugin) is not a" in problems
    assert "'homeassistant' (not_an_extension:Thing, from broken-plugin): the name is taken" in problems
    assert len(found.problems) == 3
    assert "homeassistant" in found.config.model_fields  # the built-ins are all there


def test_check_config_names_a_broken_plugin(tmp_path: Path) -> None:
    site = _fake_distribution(tmp_path / "site", "broken-plugin", {"missing": "no_such_module_here:X"})
    path = _write(tmp_path / "c.yaml", {"reader": {"url": SDK_URL}})
    done = _plate_bridge("check-config", str(path), paths=(site,))
    assert done.returncode == 2, done.stdout
    assert "extension 'missing' (no_such_module_here:X, from broken-plugin) cannot be loaded" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_plugin_that_needs_bridgeconfig_at_import_is_told_why(tmp_path: Path) -> None:
    site = _fake_distribution(tmp_path / "site", "eager-plugin", {"eager": "eager_plugin:Eager"})
    (site / "eager_plugin.py").write_text(
        "from bridge.config import BridgeConfig\nfrom bridge.extensions import Extension\n\n\n"
        "class Eager(Extension):\n    name = 'eager'\n"
    )
    path = _write(tmp_path / "c.yaml", {"reader": {"url": SDK_URL}})
    done = _plate_bridge("check-config", str(path), paths=(site,))
    assert done.returncode == 2, done.stdout
    assert "extension 'eager' (eager_plugin:Eager, from eager-plugin) cannot be loaded: ImportError" in (
        done.stderr
    )
    assert "import it only under TYPE_CHECKING" in done.stderr


def test_a_section_without_its_extension_is_an_unknown_key(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.yaml", {"reader": {"url": SDK_URL}, "last_plate": {"enabled": True}})
    done = _plate_bridge("check-config", str(path))
    assert done.returncode == 2
    assert "last_plate: unknown key" in done.stderr
    assert "needs its extension installed" in done.stderr


def test_check_config_checks_the_installed_example_section(installed: Path, tmp_path: Path) -> None:
    good = _write(tmp_path / "good.yaml", {"reader": {"url": SDK_URL}, "last_plate": {"enabled": True}})
    done = _plate_bridge("check-config", str(good), paths=(installed,))
    assert done.returncode == 0, done.stderr
    assert "last_plate:" in done.stdout
    assert "topic: '{base_topic}/last_plate'" in done.stdout

    bad = _write(
        tmp_path / "bad.yaml",
        {"reader": {"url": SDK_URL}, "last_plate": {"enabled": True, "cameras": 0, "colour": "red"}},
    )
    done = _plate_bridge("check-config", str(bad), paths=(installed,))
    assert done.returncode == 2
    assert "last_plate.cameras: Input should be greater than or equal to 1" in done.stderr
    assert "last_plate.colour: unknown key" in done.stderr

    crossed = _write(
        tmp_path / "crossed.yaml",
        {
            "reader": {"url": SDK_URL},
            "routes": [{"topic": "plate-bridge/+"}],
            "last_plate": {"enabled": True},
        },
    )
    done = _plate_bridge("check-config", str(crossed), paths=(installed,))
    assert done.returncode == 2
    assert "last_plate.topic: 'plate-bridge/last_plate' is taken by a route" in done.stderr


@pytest.fixture
def bridge_process(
    installed: Path, mosquitto: Mosquitto, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], ReaderEmulator]]:
    with ReaderEmulator() as emulator:
        config = {
            "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "health_interval": 0},
            "reader": {"url": emulator.url, "max_calls_per_second": None},
            "last_plate": {"enabled": True, "topic": "{base_topic}/last"},
        }
        path = _write(tmp_path / "run.yaml", config)
        process = subprocess.Popen(
            [sys.executable, "-m", "bridge.cli", "run", "--config", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(installed),
        )
        try:
            yield process, emulator
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
            if process.stderr is not None:
                process.stderr.close()


@pytest.mark.mosquitto
def test_the_installed_example_serves_its_topic(
    bridge_process: tuple[subprocess.Popen[str], ReaderEmulator], mosquitto: Mosquitto
) -> None:
    process, emulator = bridge_process
    collector = Collector(
        "127.0.0.1",
        mosquitto.port,
        ["plate-bridge/bridge/state", "plate-bridge/+/result", "plate-bridge/last"],
    )
    try:
        assert collector.wait_for("plate-bridge/bridge/state")[-1] == {"state": "online"}
        # Asked before any plate: an empty answer, on the extension's own topic.
        collector.publish("plate-bridge/last/get", b"")
        assert collector.wait_for("plate-bridge/last")[0] == {}
        collector.publish("cameras/drive/image", jpeg(text="AB12CDE"))
        plate = collector.wait_for("plate-bridge/drive/result")[0]["results"][0]["plate"]
        assert plate in emulator.answer_plates()
        collector.publish("plate-bridge/last/get", b"")
        assert collector.wait_for("plate-bridge/last", 2)[1] == {"drive": plate}
    finally:
        collector.close()
    assert process.poll() is None, process.stderr.read() if process.stderr else ""
