"""Local first (bridge/reader/cascade.py): each rule through a real bridge, a real broker, the offline
reader on the shipped example images and the reader emulator over HTTP as the paid reader."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.config import load_config
from bridge.nodes.localfirst import NearMiss
from bridge.nodes.watchlist import LiveWatchlists
from bridge.reader import PlateReader
from bridge.reader.calibration import fit, load_calibration, region_family, wilson_lower
from bridge.reader.cascade import QuotaGuard, UsagePoller
from bridge.service import Bridge
from tests.conftest import EXAMPLES, BrokerAddress, loaded_local_engine
from tests.emulator import ReaderEmulator

# The offline reader reads `8mzr417` on this photo with a score of 1.0: credited 0.93 by the shipped
# calibration for US routes, above the default precision of 0.9.
ROOT = Path(__file__).resolve().parents[1]
CONFIDENT = (EXAMPLES / "images" / "us_ca_rear.jpg").read_bytes()
# `bd51smr` at 0.997 for a GB route: the EU family's calibration credits it 0.66.
UNSURE = (EXAMPLES / "images" / "gb_rear_yellow.jpg").read_bytes()


@pytest.fixture(scope="module", autouse=True)
def _engine() -> None:
    loaded_local_engine()  # skips the module without the [local] extra


@pytest.fixture
def bridges() -> Iterator[Any]:
    started: list[Bridge] = []

    def start(broker: BrokerAddress, emulator: ReaderEmulator, **sections: Any) -> Bridge:
        reader = {"url": emulator.url, "max_calls_per_second": None, "concurrency": 2}
        reader.update(sections.pop("reader", {}))
        config = load_config(
            mqtt={"host": broker.host, "port": broker.port, "health_interval": 0},
            reader=reader,
            **sections,
        )
        bridge = Bridge(config)
        bridge.start()
        assert bridge.mqtt is not None and bridge.mqtt.wait_connected(10)
        started.append(bridge)
        return bridge

    yield start
    for bridge in started:
        bridge.stop(deadline=5)


def _route(regions: list[str], **extra: Any) -> dict[str, Any]:
    return {"topic": "cameras/+/image", "regions": regions, "repeat_window": 0, **extra}


def _credits(bridge: Bridge) -> dict[str, int]:
    return bridge.health()["credits"]


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
def test_a_confident_reading_is_the_event_and_no_call_is_paid(
    broker: BrokerAddress, emulator: ReaderEmulator, bridges: Any, collector_factory: Any
) -> None:
    bridge = bridges(broker, emulator, reader={"local_first": {"enabled": True}}, routes=[_route(["us"])])
    collector = collector_factory(broker.host, broker.port, ["plate-bridge/+/result"])
    collector.publish("cameras/drive/image", CONFIDENT)
    (event,) = collector.wait_for("plate-bridge/drive/result")
    assert event["reader"] == "local"
    assert event["results"][0]["plate"] == "8mzr417"
    assert emulator.calls == 0
    credits = _credits(bridge)
    assert credits["saved_local"] == 1 and credits["calls"] == 0 and credits["calls_saved"] == 1


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
def test_unconfident_off_layout_and_near_miss_readings_go_to_the_paid_reader(
    broker: BrokerAddress, emulator: ReaderEmulator, bridges: Any, collector_factory: Any
) -> None:
    bridge = bridges(
        broker,
        emulator,
        reader={"local_first": {"enabled": True}},
        routes=[
            _route(["gb"], topic="unsure/+/image"),
            # Precision asked of this route is low enough for any reading: only its layouts decline.
            _route(["br"], topic="layout/+/image", local_first={"precision": 0.01}),
            _route(["us"], topic="watched/+/image"),
        ],
        watchlists={"gate": {"plates": ["8MZR411"]}},
    )
    collector = collector_factory(broker.host, broker.port, ["plate-bridge/+/result"])
    events = {}
    # One at a time: frames at once would find the one offline worker busy (a test of its own).
    for topic, camera, frame in (
        ("unsure", "gate", UNSURE),
        ("layout", "yard", CONFIDENT),
        ("watched", "drive", CONFIDENT),
    ):
        collector.publish(f"{topic}/{camera}/image", frame)
        events[camera] = collector.wait_for(f"plate-bridge/{camera}/result")[0]
    assert {camera: event["reader"] for camera, event in events.items()} == {
        "gate": "sdk",
        "yard": "sdk",
        "drive": "sdk",
    }
    assert emulator.calls == 3
    credits = _credits(bridge)
    assert credits["local_declined_unconfident"] == 1, credits
    assert credits["local_declined_off_layout"] == 1, json.dumps(credits)
    assert credits["local_declined_near_miss"] == 1
    assert credits["saved_local"] == 0


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
def test_an_exact_watch_list_match_is_no_near_miss_and_a_route_may_turn_local_first_off(
    broker: BrokerAddress, emulator: ReaderEmulator, bridges: Any, collector_factory: Any
) -> None:
    bridges(
        broker,
        emulator,
        reader={"local_first": {"enabled": True}},
        routes=[
            _route(["us"], topic="on/+/image"),
            _route(["us"], topic="off/+/image", local_first={"enabled": False}),
        ],
        watchlists={"gate": {"plates": ["8MZR417"], "strict": True}},
    )
    collector = collector_factory(broker.host, broker.port, ["plate-bridge/+/result"])
    collector.publish("on/a/image", CONFIDENT)
    assert collector.wait_for("plate-bridge/a/result")[0]["reader"] == "local"
    collector.publish("off/b/image", CONFIDENT)
    assert collector.wait_for("plate-bridge/b/result")[0]["reader"] == "sdk"
    assert emulator.calls == 1


class GatedReader:
    """The bridge's own offline reader, held at the gate until the test lets it read."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.entered = threading.Event()
        self.release = threading.Event()

    def read(self, image: Any, **kwargs: Any) -> dict[str, Any]:
        self.entered.set()
        assert self.release.wait(30), "the test never let the offline reader go"
        return self.reader.read(image, **kwargs)


def test_a_plate_listed_at_run_time_makes_its_one_character_misread_a_near_miss() -> None:
    """Lists edited on the web page or over MQTT are watch lists like the configured ones: an offline
    reading one character off a plate listed a moment ago is confirmed by the paid reader."""
    live = LiveWatchlists()
    near_miss = NearMiss([], live)
    misread = [{"plate": "ab12cdf", "score": 0.95, "candidates": [{"plate": "ab12cdf", "score": 0.95}]}]
    exact = [{"plate": "ab12cde", "score": 0.95, "candidates": [{"plate": "ab12cde", "score": 0.95}]}]
    assert not near_miss(misread)  # nothing listed yet
    live.replace({"family": [("AB12CDE", "Anna")]})
    assert near_miss(misread)
    assert not near_miss(exact)
    live.replace({})
    assert not near_miss(misread)


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
def test_a_busy_pool_sends_the_frame_to_the_paid_reader_at_once(
    broker: BrokerAddress, emulator: ReaderEmulator, bridges: Any, collector_factory: Any
) -> None:
    bridge = bridges(
        broker, emulator, reader={"local_first": {"enabled": True, "workers": 1}}, routes=[_route(["us"])]
    )
    assert bridge.local_first.cascade is not None
    gated = GatedReader(bridge.local_first.cascade.reader)
    bridge.local_first.cascade.reader = gated
    collector = collector_factory(broker.host, broker.port, ["plate-bridge/+/result"])
    collector.publish("cameras/first/image", CONFIDENT)
    assert gated.entered.wait(15), "the first frame never reached the offline reader"
    collector.publish("cameras/second/image", CONFIDENT)
    # Answered by the paid reader while the only offline worker is still held.
    assert collector.wait_for("plate-bridge/second/result")[0]["reader"] == "sdk"
    assert not collector.on("plate-bridge/first/result")
    gated.release.set()
    assert collector.wait_for("plate-bridge/first/result")[0]["reader"] == "local"
    credits = _credits(bridge)
    assert credits["local_declined_busy"] == 1 and credits["saved_local"] == 1 and emulator.calls == 1


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
def test_an_open_circuit_switches_to_the_offline_reader_and_back(
    broker: BrokerAddress, emulator: ReaderEmulator, bridges: Any, collector_factory: Any
) -> None:
    bridge = bridges(
        broker,
        emulator,
        reader={
            "local_first": {"enabled": True},
            "retries": 0,
            "breaker_threshold": 1,
            "breaker_reset": 0.5,
            "concurrency": 1,
        },
        routes=[_route(["gb"])],
        homeassistant={"enabled": True},
    )
    offline_only = "homeassistant/binary_sensor/plate-bridge/local_only/config"
    collector = collector_factory(
        broker.host, broker.port, ["plate-bridge/+/result", "plate-bridge/bridge/state", offline_only]
    )
    # Home Assistant's "Offline only" sensor reads the state document's local_only.
    (sensor,) = collector.wait_for(offline_only)
    assert sensor["state_topic"] == "plate-bridge/bridge/state" and "local_only" in sensor["value_template"]
    emulator.fail_next(503)
    collector.publish("cameras/gate/image", UNSURE)
    (event,) = collector.wait_for("plate-bridge/gate/result")
    # The call that opened the circuit failed; the offline reading already made answers.
    assert event["reader"] == "local" and event["local_only"] == "circuit_open"
    deadline = time.monotonic() + 15
    while not any(state.get("local_only") for state in collector.on("plate-bridge/bridge/state")):
        assert time.monotonic() < deadline, "bridge/state never said local_only"
        collector.wait_for("plate-bridge/bridge/state", len(collector.on("plate-bridge/bridge/state")) + 1, 1)
    state = [s for s in collector.on("plate-bridge/bridge/state") if s.get("local_only")][-1]
    assert state["local_only_reason"] == "circuit_open" and state["reader"] == "unavailable"
    assert bridge.health()["local_first"]["local_only"] is True
    # Frames keep coming; once the circuit's probe is answered, the paid reader is back.
    sent = 1
    while True:
        assert time.monotonic() < deadline + 15, "the paid reader never answered again"
        collector.publish("cameras/gate/image", UNSURE)
        sent += 1
        event = collector.wait_for("plate-bridge/gate/result", sent)[-1]
        if event["reader"] == "sdk":
            break
        assert event["local_only"] == "circuit_open"
    states = collector.wait_for("plate-bridge/bridge/state")
    assert states[-1]["local_only"] is False and states[-1]["reader"] == "ok"
    assert bridge.health()["local_first"]["local_only"] is False


def test_the_quota_guard_switches_below_the_calls_left_and_back(emulator: ReaderEmulator) -> None:
    """Calls left from the emulator's /v1/statistics/ over HTTP: 2,500 a month, 0 used."""
    changes: list[dict[str, Any]] = []
    changed = threading.Condition()

    def on_change(state: dict[str, Any]) -> None:
        with changed:
            changes.append(state)
            changed.notify_all()

    quota = QuotaGuard(calls_left_below=3000, on_change=on_change)
    with PlateReader(emulator.url) as reader:
        poller = UsagePoller(reader.statistics, quota, interval=3600)
        poller.start()
        try:
            with changed:
                assert changed.wait_for(lambda: len(changes) == 1, 10)
            assert changes[0] == {"local_only": True, "local_only_reason": "calls_left", "calls_left": 2500}
            quota.calls_left_below = 100
            poller.poll()
            with changed:
                assert changed.wait_for(lambda: len(changes) == 2, 10)
            assert changes[1]["local_only"] is False and changes[1]["local_only_reason"] is None
        finally:
            poller.stop()
    assert len(changes) == 2


def test_the_calibration_is_conservative_and_per_family(tmp_path: Path) -> None:
    # 30 right readings are credited less than 1, and a block of wrong ones below stays low.
    samples = [("us", 0.99, True)] * 30 + [("us", 0.5, False)] * 10 + [("eu", 0.99, True)] * 5
    calibration = fit(samples, min_family_samples=20)
    assert 0.9 < calibration.lower_precision(["us"], 0.99) < 1.0
    assert calibration.lower_precision(["us"], 0.5) < 0.3
    # Too few EU samples: the pooled map answers for EU routes.
    assert calibration.family(["de"])[0] == "any"
    assert region_family(["us", "de"]) == "any" and region_family(["us-ca", "ca"]) == "us"
    assert wilson_lower(30, 30) == pytest.approx(30 / (30 + 1.2816**2), abs=1e-3)
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(calibration.as_dict()))
    again = load_calibration(path)
    assert again.lower_precision(["us"], 0.99) == calibration.lower_precision(["us"], 0.99)
    path.write_text("{}")
    with pytest.raises(ValueError, match="not a local-first calibration"):
        load_calibration(path)


def test_the_shipped_calibration_loads_and_says_how_it_was_made() -> None:
    shipped = load_calibration()
    assert shipped.made["holdout"] == 0.5 and shipped.made["photos"] > 100
    assert set(shipped.families) >= {"any", "us", "eu", "br"}


def _plate_bridge(*arguments: str) -> subprocess.CompletedProcess[str]:
    """The real program (in-process, `main` would leave the bridge's loggers quieted for later tests)."""
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", *arguments],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_evaluate_calibrate_fits_on_one_half_and_reports_both(tmp_path: Path) -> None:
    out = tmp_path / "mine.json"
    labels = str(EXAMPLES / "images" / "labels.tsv")
    done = _plate_bridge("evaluate", labels, "--calibrate", str(out), "--holdout", "0.5", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    halves = json.loads(done.stdout)["report"]
    photos = halves["calibration_half"]["images"] + halves["held_apart_half"]["images"]
    assert photos == 7 and halves["held_apart_half"]["images"] > 0
    mine = load_calibration(out)
    assert mine.made["fitted_on"] == halves["calibration_half"]["images"]
    assert mine.made["holdout"] == 0.5
    # The same split every time: a photo's half is a hash of its path.
    again = _plate_bridge("evaluate", labels, "--calibrate", str(tmp_path / "again.json"), "--json")
    assert json.loads(again.stdout)["report"] == halves
    refused = _plate_bridge("evaluate", labels, "--calibrate", str(out), "--holdout", "1")
    assert refused.returncode == 2 and "--holdout 1.0: a share from 0 up to" in refused.stderr


def test_benchmarks_md_shows_the_committed_local_first_results() -> None:
    from benchmarks import localfirst

    results = json.loads(localfirst.RESULTS.read_text(encoding="utf-8"))
    assert localfirst.table(results) in (localfirst.ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    default = results["at"][f"{results['default_precision']:g}"]
    assert default["offline"] + default["paid_calls"] == default["frames"]
