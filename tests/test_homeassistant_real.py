"""The bridge against a real Home Assistant: what HA makes of the discovery it is sent.

Home Assistant core is installed (pinned, cached under ~/.cache/plate-bridge, see
tests/homeassistant/harness.py), started on loopback against the test's own mosquitto, and asked
through its REST and websocket APIs which devices, entities, states and device triggers it built.
Its log must show no rejected discovery or state payload.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from bridge.config import load_config
from bridge.service import Bridge
from tests.conftest import EXAMPLES, Collector, Mosquitto, free_port
from tests.emulator import ReaderEmulator
from tests.homeassistant.harness import HomeAssistant, Release, install, interpreter
from tests.images import jpeg
from tests.test_homeassistant import BOX, RESULT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.homeassistant,
    pytest.mark.mosquitto,
    pytest.mark.skipif(shutil.which("mosquitto") is None, reason="the mosquitto binary is not installed"),
]


# The oldest release supported (its Python: 3.11) and the newest that installs on the Python 3.13.0
# of the development and CI machines (later releases ask for 3.13.2 or newer).
RELEASES = [
    ("2024.3.3", "3.11", ("josepy<2",)),  # acme 2.8, pinned by HA 2024.3, breaks on josepy 2
    ("2025.4.4", "3.13", ()),
]

# What Home Assistant logs when it refuses a discovery document or cannot use a state.
REJECTED = re.compile(
    r"Invalid|not valid|LoggingUndefined|TemplateError|UndefinedError|Error parsing|"
    r"Unable to|Exception|Traceback|Ignoring|No valid JSON|not in the list",
    re.IGNORECASE,
)
# Lines of a clean start that are not about us.
UNRELATED = re.compile(
    r"Support for the running Python version|Skipping pip installation|"
    r"We found a custom integration|deprecated and will be removed|"
    r"analytics|homeassistant.components.http.ban|aiohttp_fast_zlib",
)


_INSTALLS: dict[str, Future[float | None]] = {}


def _installing(release: Release) -> Future[float | None]:
    """Every release's install starts with the first one asked for: they run side by side (mostly
    downloads), so a cold cache costs the slowest install, not the sum."""
    if not _INSTALLS:
        pool = ThreadPoolExecutor(max_workers=len(RELEASES), thread_name_prefix="ha-install")
        for version, python_version, pins in RELEASES:
            python = interpreter(python_version)
            if python is not None:
                _INSTALLS[version] = pool.submit(install, Release(version, python, pins))
        pool.shutdown(wait=False)
    return _INSTALLS[release.version]


@pytest.fixture(scope="module", params=RELEASES, ids=[version for version, _, _ in RELEASES])
def release(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> Release:
    version, python_version, pins = request.param
    python = interpreter(python_version)
    if python is None:
        pytest.skip(f"Home Assistant {version} needs Python {python_version}, which is not installed")
    release = Release(version, python, pins)
    try:
        seconds = _installing(release).result()
    except Exception as exc:  # a failed install is a failure to report, not a skip
        pytest.fail(f"could not install Home Assistant {version}: {exc}")
    took = "cached" if seconds is None else f"installed in {seconds:.0f} s"
    # Past pytest's capture, so the install time shows in every run's output.
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\nHome Assistant {version} ({python}): {took}, {release.venv}")
    return release


@pytest.fixture
def setup(release: Release, tmp_path: Path) -> Iterator[tuple[HomeAssistant, Mosquitto, ReaderEmulator]]:
    mosquitto = Mosquitto(tmp_path).start()
    home_assistant = HomeAssistant(
        release,
        tmp_path / "ha",
        http_port=free_port(),
        broker_port=mosquitto.port,
        automations=EXAMPLES / "homeassistant" / "automations.yaml",
    )
    try:
        home_assistant.start()
        with ReaderEmulator() as emulator:
            yield home_assistant, mosquitto, emulator
    finally:
        home_assistant.stop()
        mosquitto.stop()


def bridge_config(
    mosquitto: Mosquitto, emulator: ReaderEmulator, cameras: list[str], autoclear: float = 4
) -> Any:
    return load_config(
        mqtt={"host": "127.0.0.1", "port": mosquitto.port, "health_interval": 0},
        # One failed call opens the circuit, so the test can see the reader sensor say so.
        reader={"url": emulator.url, "max_calls_per_second": None, "retries": 0, "breaker_threshold": 1},
        homeassistant={"enabled": True, "cameras": cameras, "autoclear": autoclear, "stats_interval": 0.5},
        watchlists={"family": {"plates": [{"plate": "NHK552", "label": "Anna's car"}]}},
        # The test's frames are small drawings that differ by a few characters of text: to the
        # similar-frame check they are one scene. Every frame here must be read.
        routes=[{"topic": "cameras/+/image", "repeat_window": 0}],
    )


def rejected_lines(home_assistant: HomeAssistant) -> list[str]:
    lines = home_assistant.log.read_text(errors="replace").splitlines()
    suspicious = [
        line
        for line in lines
        if (" ERROR " in line or " WARNING " in line or (REJECTED.search(line) and "mqtt" in line.lower()))
        and not UNRELATED.search(line)
    ]
    return [line for line in suspicious if line.strip()]


def by_unique_id(entities: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {entity["unique_id"]: entity for entity in entities if entity.get("platform") == "mqtt"}


def test_home_assistant_builds_every_entity_and_accepts_every_payload(
    setup: tuple[HomeAssistant, Mosquitto, ReaderEmulator], collector_factory: Any
) -> None:
    home_assistant, mosquitto, emulator = setup
    frame = jpeg(320, 240, text="NHK552")
    emulator.set_response(frame, {"results": [{**RESULT, "box": BOX}]})
    bridge = Bridge(bridge_config(mosquitto, emulator, ["gate", "drive"]))
    bridge.start()
    try:
        # The example automations are accepted.
        for automation in ("open_the_gate_for_the_family", "unknown_car_at_the_gate_at_night"):
            home_assistant.wait_state(f"automation.{automation}", lambda state: state["state"] == "on")
        # Announced at start-up: entities exist (with a clear state) before any frame.
        plate = home_assistant.wait_state("sensor.gate_plate", lambda state: state["state"] == "")
        assert plate["attributes"]["friendly_name"] == "gate Plate"
        home_assistant.wait_state(
            "binary_sensor.plate_bridge_connection", lambda state: state["state"] == "on"
        )
        home_assistant.wait_state("sensor.plate_bridge_reader", lambda state: state["state"] == "ok")
        home_assistant.wait_state("sensor.plate_bridge_frames_read", lambda state: state["state"] == "0")
        home_assistant.wait_state("binary_sensor.gate_watched_family", lambda state: state["state"] == "off")
        home_assistant.wait_state(
            "sensor.plate_bridge_reader_calls_used", lambda state: state["state"] == "0"
        )

        # A frame: the plate, its attributes, the snapshot, the event entity.
        collector: Collector = collector_factory("127.0.0.1", mosquitto.port, ["plate-bridge/#"])
        collector.publish("cameras/gate/image", frame)
        plate = home_assistant.wait_state("sensor.gate_plate", lambda state: state["state"] == "NHK552")
        watch = home_assistant.wait_state(
            "binary_sensor.gate_watched_family", lambda state: state["state"] == "on"
        )
        assert watch["attributes"]["label"] == "Anna's car" and watch["attributes"]["plate"] == "NHK552"
        attributes = plate["attributes"]
        assert (attributes["score"], attributes["region"], attributes["vehicle"]) == (0.9, "gb", "Sedan")
        assert attributes["candidates"] == ["NHK552", "NHK55Z"] and attributes["camera"] == "gate"
        # NHK552 is on the family list: the watchlist node marks it, and the event entity's last event
        # is the watched one (plate_detected went out just before it).
        event = home_assistant.wait_state(
            "event.gate_plate_event",
            lambda state: state["attributes"].get("event_type") == "watched_plate_detected",
        )
        assert event["attributes"]["plate"] == "NHK552" and event["attributes"]["list"] == "family"
        snapshot = home_assistant.wait_state("image.gate_snapshot", lambda state: state["state"] != "unknown")
        image = home_assistant.api(
            "GET", f"/api/image_proxy/image.gate_snapshot?token={snapshot['attributes']['access_token']}"
        )
        assert image.startswith(b"\xff\xd8\xff")
        home_assistant.wait_state("sensor.plate_bridge_frames_read", lambda state: state["state"] == "1")

        # NHK552 is Anna's car: the frame ran the example automation that opens the gate (the sensor
        # it follows was checked on above, before autoclear could turn it off again).
        home_assistant.wait_state(
            "automation.open_the_gate_for_the_family", lambda state: state["attributes"].get("last_triggered")
        )
        give_up, messages = time.monotonic() + 15, ""
        while "Anna's car" not in messages and time.monotonic() < give_up:
            [notifications] = home_assistant.ws({"type": "persistent_notification/get"})
            messages = " ".join(item["message"] for item in notifications)
        assert "Opened for Anna's car (NHK552)" in messages
        assert home_assistant.state("input_boolean.gate")["state"] == "on"  # type: ignore[index]

        # Autoclear: the plate and the watch-list sensor go back to clear.
        home_assistant.wait_state(
            "binary_sensor.gate_watched_family", lambda state: state["state"] == "off", 20
        )
        home_assistant.wait_state("sensor.gate_plate", lambda state: state["state"] == "", 20)

        # Devices, entities and device triggers as Home Assistant's registries have them.
        devices, entities = home_assistant.ws(
            {"type": "config/device_registry/list"}, {"type": "config/entity_registry/list"}
        )
        names = {device["name"]: device for device in devices}
        bridge_device, gate = names["Plate bridge"], names["gate"]
        assert (
            gate["via_device_id"] == bridge_device["id"]
            and names["drive"]["via_device_id"] == bridge_device["id"]
        )
        assert gate["model"] == "Camera (plate reader)" and gate["manufacturer"] == "plate-bridge"
        assert bridge_device["sw_version"]
        unique = by_unique_id(entities)
        expected = {
            "plate_bridge_plate-bridge_gate_plate": "sensor.gate_plate",
            "plate_bridge_plate-bridge_gate_snapshot": "image.gate_snapshot",
            "plate_bridge_plate-bridge_gate_plate_crop": "image.gate_plate_crop",
            "plate_bridge_plate-bridge_gate_plate_event": "event.gate_plate_event",
            "plate_bridge_plate-bridge_gate_watched_family": "binary_sensor.gate_watched_family",
            "plate_bridge_plate-bridge_connection": "binary_sensor.plate_bridge_connection",
            "plate_bridge_plate-bridge_reader": "sensor.plate_bridge_reader",
            "plate_bridge_plate-bridge_processed": "sensor.plate_bridge_frames_read",
            "plate_bridge_plate-bridge_dropped": "sensor.plate_bridge_frames_dropped",
            "plate_bridge_plate-bridge_calls_used": "sensor.plate_bridge_reader_calls_used",
            "plate_bridge_plate-bridge_calls_left": "sensor.plate_bridge_reader_calls_left",
        }
        assert {key: unique[key]["entity_id"] for key in expected if key in unique} == expected
        assert unique["plate_bridge_plate-bridge_gate_plate"]["device_id"] == gate["id"]
        [triggers] = home_assistant.ws({"type": "device_automation/trigger/list", "device_id": gate["id"]})
        kinds = {(trigger["type"], trigger["subtype"]) for trigger in triggers if trigger["domain"] == "mqtt"}
        assert kinds == {("plate_detected", "any"), ("watched_plate_detected", "family")}

        # A frame without a plate: nothing for HA to choke on, the cleared state stays as it is. First
        # a positive signal: "Frames read" goes to 2, published after the frame was handled, so Home
        # Assistant has read everything the bridge published for it; then nothing else changed.
        last_event = home_assistant.state("event.gate_plate_event")["state"]  # type: ignore[index]
        empty = jpeg(320, 240, text="nothing")
        emulator.set_response(empty, {"results": []})
        collector.publish("cameras/gate/image", empty)
        collector.wait_for("plate-bridge/gate/result", 2)
        home_assistant.wait_state("sensor.plate_bridge_frames_read", lambda state: state["state"] == "2")
        assert home_assistant.state("sensor.gate_plate")["state"] == ""  # type: ignore[index]
        assert home_assistant.state("binary_sensor.gate_watched_family")["state"] == "off"  # type: ignore[index]
        assert home_assistant.state("event.gate_plate_event")["state"] == last_event  # type: ignore[index]

        # The reader fails: the sensor says circuit_open (never HA's "unavailable"), with the reason.
        emulator.fail_next(503)
        collector.publish("cameras/drive/image", jpeg(320, 240, text="fails"))
        reader = home_assistant.wait_state(
            "sensor.plate_bridge_reader", lambda state: state["state"] == "circuit_open"
        )
        assert reader["attributes"]["reason"] and reader["attributes"]["retry_in"] == 30
    finally:
        bridge.stop(deadline=5)

    # The next run no longer has the camera `drive`: Home Assistant removes its entities.
    bridge = Bridge(bridge_config(mosquitto, emulator, ["gate"], autoclear=0))
    bridge.start()
    try:
        give_up = time.monotonic() + 30
        while time.monotonic() < give_up and home_assistant.state("sensor.drive_plate") is not None:
            time.sleep(0.25)
        assert home_assistant.state("sensor.drive_plate") is None
        assert home_assistant.state("sensor.gate_plate") is not None

        # A plate, then Home Assistant restarts: the plate is still there (retained state), not unknown.
        collector.publish("cameras/gate/image", frame)
        home_assistant.wait_state("sensor.gate_plate", lambda state: state["state"] == "NHK552")
        home_assistant.stop()
        home_assistant.start()
        plate = home_assistant.wait_state(
            "sensor.gate_plate", lambda state: state["state"] not in ("unavailable", "unknown")
        )
        assert plate["state"] == "NHK552" and plate["attributes"]["score"] == 0.9
    finally:
        bridge.stop(deadline=5)

    problems = rejected_lines(home_assistant)
    assert not problems, "Home Assistant logged:\n" + "\n".join(problems)


def test_a_watched_car_is_a_device_tracker_home_while_its_visit_is_open(
    setup: tuple[HomeAssistant, Mosquitto, ReaderEmulator], collector_factory: Any, tmp_path: Path
) -> None:
    home_assistant, mosquitto, emulator = setup
    frame = jpeg(320, 240, text="NHK552 home")
    emulator.set_response(frame, {"results": [{**RESULT, "box": BOX}]})
    config = bridge_config(mosquitto, emulator, ["gate"]).model_copy(
        update={
            "history": load_config(
                history={"enabled": True, "data_dir": str(tmp_path / "history"), "visit_gap": 3}
            ).history
        }
    )
    bridge = Bridge(config)
    bridge.start()
    try:
        tracker = "device_tracker.plate_bridge_anna_s_car"
        state = home_assistant.wait_state(tracker, lambda state: state["state"] == "not_home")
        assert state["attributes"]["friendly_name"] == "Plate bridge Anna's car"
        collector: Collector = collector_factory("127.0.0.1", mosquitto.port, ["plate-bridge/#"])
        collector.publish("cameras/gate/image", frame)
        state = home_assistant.wait_state(tracker, lambda state: state["state"] == "home")
        assert state["attributes"]["plate"] == "NHK552" and state["attributes"]["cameras"] == ["gate"]
        # No sighting for the visit gap: the visit closes and the car is away.
        home_assistant.wait_state(tracker, lambda state: state["state"] == "not_home", 30)
        [entities] = home_assistant.ws({"type": "config/entity_registry/list"})
        assert by_unique_id(entities)["plate_bridge_plate-bridge_plate_nhk552"]["entity_id"] == tracker
    finally:
        bridge.stop(deadline=5)
    problems = rejected_lines(home_assistant)
    assert not problems, "Home Assistant logged:\n" + "\n".join(problems)
