"""The history extension in a running bridge: frames over a real broker, the reader emulator, the
store on disk; the watch-list API over MQTT; presence documents; a full queue that never blocks."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bridge.config import load_config
from bridge.core.messages import Message
from bridge.extensions.base import ExtensionContext, PublishedEvent
from bridge.extensions.history.extension import HistoryExtension
from bridge.extensions.history.models import Sighting
from bridge.service import Bridge
from tests.canned import RecordingPublisher
from tests.conftest import BrokerAddress, Collector
from tests.emulator import ReaderEmulator
from tests.images import jpeg

BASE = "plate-bridge"


def result(plate: str, score: float = 0.9) -> dict[str, Any]:
    return {
        "box": {"xmin": 100, "ymin": 120, "xmax": 260, "ymax": 160},
        "plate": plate,
        "score": score,
        "region": {"code": "gb", "score": 0.8},
        "candidates": [{"plate": plate, "score": score}],
    }


def history_bridge(
    broker: BrokerAddress, emulator: ReaderEmulator, data_dir: Path, **sections: Any
) -> Bridge:
    config = load_config(
        mqtt={"host": broker.host, "port": broker.port, "health_interval": 0, "client_id": "history-test"},
        reader={"url": emulator.url, "max_calls_per_second": None},
        routes=[{"topic": "cameras/+/image", "repeat_window": 0}],
        history={"enabled": True, "data_dir": str(data_dir), **sections.pop("history", {})},
        **sections,
    )
    bridge = Bridge(config)
    bridge.start()
    assert bridge.mqtt is not None and bridge.mqtt.wait_connected(10)
    return bridge


def history_of(bridge: Bridge) -> HistoryExtension:
    return next(ext for ext in bridge.extensions if isinstance(ext, HistoryExtension))


class Feed:
    """The extension's live feed, waited on with a deadline."""

    def __init__(self, extension: HistoryExtension) -> None:
        self.sightings: list[Sighting] = []
        self._changed = threading.Condition()
        self.unsubscribe = extension.add_listener(self._add)

    def _add(self, sighting: Sighting) -> None:
        with self._changed:
            self.sightings.append(sighting)
            self._changed.notify_all()

    def wait(self, count: int, timeout: float = 15.0) -> list[Sighting]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.sightings) >= count, timeout)
            assert len(self.sightings) >= count, f"{len(self.sightings)} sighting(s), wanted {count}"
            return list(self.sightings)


def frame(emulator: ReaderEmulator, plate: str, seed: str) -> bytes:
    image = jpeg(640, 480, text=seed)
    emulator.set_response(image, {"processing_time": 5.0, "results": [result(plate)]})
    return image


def test_a_frame_read_is_stored_with_its_pictures_and_usage(
    broker: BrokerAddress,
    emulator: ReaderEmulator,
    collector_factory: Any,
    tmp_path: Path,
    history_url: str | None,
) -> None:
    bridge = history_bridge(
        broker,
        emulator,
        tmp_path,
        watchlists={"family": {"plates": ["AB12CDE"]}},
        history={"url": history_url},
    )
    try:
        extension = history_of(bridge)
        feed = Feed(extension)
        collector: Collector = collector_factory(broker.host, broker.port, [f"{BASE}/#"])
        collector.publish("cameras/drive/image", frame(emulator, "ab12cde", "one"))
        [sighting] = feed.wait(1)
        store = extension.store
        assert store is not None
        assert (sighting.plate, sighting.camera, sighting.region, sighting.calls) == (
            "AB12CDE",
            "drive",
            "gb",
            1,
        )
        assert (
            sighting.watchlists == ("family",) and sighting.reader == "sdk"
        )  # the emulator is not the cloud URL
        assert store.search("AB12CDF", tolerance=1) == [sighting]
        crop, snapshot = store.image(sighting.id, "crop"), store.image(sighting.id, "snapshot")
        assert crop is not None and crop.startswith(b"\xff\xd8") and snapshot is not None
        assert snapshot.startswith(b"\xff\xd8")
        [visit] = store.present()
        assert visit.plate == "AB12CDE" and visit.cameras == ("drive",)
        # Presence of the watched plate, for Home Assistant's device_tracker.
        assert latest(collector, f"{BASE}/history/presence/AB12CDE", "home")
        assert collector.on(f"{BASE}/history/presence/AB12CDE")[-1]["lists"] == ["family"]
    finally:
        bridge.stop(deadline=5)
    # Usage is written by the writer; the store outlives the bridge: open it again.
    from bridge.extensions.history.store import HistoryStore

    reopened = HistoryStore.open(history_url, tmp_path)
    try:
        assert reopened.usage().calls == 1
        assert [s.plate for s in reopened.search()] == ["AB12CDE"]
    finally:
        reopened.close()
    assert (tmp_path / "history.sqlite3").exists() == (history_url is None)


def request(collector: Collector, action: str, document: dict[str, Any], count: int) -> dict[str, Any]:
    collector.publish(f"{BASE}/bridge/request/watchlist/{action}", json.dumps(document).encode())
    return collector.wait_for(f"{BASE}/bridge/response/watchlist/{action}", count)[-1]


def test_the_watch_list_api_edits_lists_that_the_next_frame_matches(
    broker: BrokerAddress, emulator: ReaderEmulator, collector_factory: Any, tmp_path: Path
) -> None:
    bridge = history_bridge(broker, emulator, tmp_path, watchlists={"family": {"plates": ["AB12CDE"]}})
    try:
        collector: Collector = collector_factory(broker.host, broker.port, [f"{BASE}/#"])
        collector.publish("cameras/gate/image", frame(emulator, "cd34efg", "before"))
        [before] = collector.wait_for(f"{BASE}/gate/result")
        assert before.get("watched") == []

        added = request(
            collector,
            "add",
            {"list": "visitors", "plate": "CD34 EFG", "label": "Plumber", "transaction": "t-1"},
            1,
        )
        assert added == {
            "data": {"list": "visitors", "plate": "CD34EFG", "label": "Plumber", "source": "store"},
            "status": "ok",
            "transaction": "t-1",
        }
        # No restart: the very next frame of that plate is flagged.
        collector.publish("cameras/gate/image", frame(emulator, "cd34efg", "after"))
        after = collector.wait_for(f"{BASE}/gate/result", 2)[-1]
        assert [(m["list"], m["label"]) for m in after["watched"]] == [("visitors", "Plumber")]

        refused = request(collector, "add", {"list": "family", "plate": "ZZ99ZZZ", "transaction": 7}, 2)
        assert (
            refused["status"] == "error" and "read-only" in refused["error"] and refused["transaction"] == 7
        )
        listed = request(collector, "list", {}, 1)
        assert {(e["list"], e["plate"], e["source"]) for e in listed["data"]["entries"]} == {
            ("family", "AB12CDE", "yaml"),
            ("visitors", "CD34EFG", "store"),
        }
        imported = request(
            collector, "import", {"list": "stolen", "csv": "plate,label\nEF56GHI,red van\n"}, 1
        )
        assert imported["data"] == {"list": "stolen", "count": 1}
        exported = request(collector, "export", {"list": "stolen"}, 1)
        assert exported["data"]["csv"] == "plate,label\nEF56GHI,red van\n"
        removed = request(collector, "remove", {"list": "visitors", "plate": "cd34efg"}, 1)
        assert removed["data"]["removed"] is True
        collector.publish("cameras/gate/image", frame(emulator, "cd34efg", "removed"))
        assert collector.wait_for(f"{BASE}/gate/result", 3)[-1]["watched"] == []

        bad = request(collector, "add", {"list": "visitors"}, 3)
        assert bad["status"] == "error" and "'plate'" in bad["error"]
        collector.publish(f"{BASE}/bridge/request/watchlist/add", b"{not json")
        assert (
            collector.wait_for(f"{BASE}/bridge/response/watchlist/add", 4)[-1]["error"]
            == "the request is not JSON"
        )
        unknown = request(collector, "rename", {}, 1)
        assert unknown["status"] == "error" and "unknown watch-list request" in unknown["error"]
    finally:
        bridge.stop(deadline=5)


def test_a_full_queue_drops_counts_and_never_blocks(tmp_path: Path) -> None:
    config = load_config(history={"enabled": True, "data_dir": str(tmp_path), "queue_size": 2})
    context = ExtensionContext(config=config, publisher=RecordingPublisher(), health=dict)
    extension = HistoryExtension(context)  # not started: nothing takes from the queue
    msg = Message(
        topic="cameras/gate/image",
        payload=b"",
        received_at=time_now(),
        camera_id="gate",
        result={"results": [result("ab12cde")]},
    )
    event = {"results": [result("ab12cde")], "camera_id": "gate"}
    started = time.perf_counter()
    for _ in range(5):
        extension.on_event(PublishedEvent("plate", "plate-bridge/gate/result", event, msg))
    assert time.perf_counter() - started < 1.0  # a put that blocked would wait forever
    assert extension.stats() == {"dropped": 3, "queued": 2, "store_open": 0}


def time_now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


@pytest.mark.parametrize("kind", ["error"])
def test_errors_are_not_vehicles(kind: str, tmp_path: Path) -> None:
    config = load_config(history={"enabled": True, "data_dir": str(tmp_path)})
    extension = HistoryExtension(ExtensionContext(config=config, publisher=RecordingPublisher(), health=dict))
    msg = Message(topic="cameras/gate/image", payload=b"", received_at=time_now(), camera_id="gate")
    extension.on_event(PublishedEvent(kind, "plate-bridge/gate/error", {"code": "x"}, msg))  # type: ignore[arg-type]
    assert extension.stats() == {"queued": 0, "store_open": 0}


def test_a_watched_plate_gets_a_home_assistant_device_tracker_driven_by_its_visits(
    broker: BrokerAddress, emulator: ReaderEmulator, collector_factory: Any, tmp_path: Path
) -> None:
    bridge = history_bridge(
        broker,
        emulator,
        tmp_path,
        watchlists={"family": {"plates": [{"plate": "AB12CDE", "label": "Anna's car"}]}},
        homeassistant={"enabled": True},
        history={"visit_gap": 2},
    )
    presence_topic = f"{BASE}/history/presence/AB12CDE"
    try:
        collector: Collector = collector_factory(broker.host, broker.port, [f"{BASE}/#", "homeassistant/#"])
        tracker = collector.wait_for("homeassistant/device_tracker/history-test/plate_ab12cde/config")[-1]
        assert tracker["state_topic"] == presence_topic and tracker["name"] == "Anna's car"
        assert (tracker["payload_home"], tracker["payload_not_home"]) == ("home", "not_home")
        assert latest(collector, presence_topic, "not_home")
        collector.publish("cameras/drive/image", frame(emulator, "ab12cde", "home"))
        assert latest(collector, presence_topic, "home")
        # No sighting for the visit gap (2 s): the visit closes, the car is away.
        assert latest(collector, presence_topic, "not_home", timeout=20)
        # A plate added over MQTT gets its tracker; removed, the tracker goes.
        request(collector, "add", {"list": "visitors", "plate": "CD34EFG"}, 1)
        collector.wait_for("homeassistant/device_tracker/history-test/plate_cd34efg/config")
        request(collector, "remove", {"list": "visitors", "plate": "CD34EFG"}, 1)
        topic = "homeassistant/device_tracker/history-test/plate_cd34efg/config"
        with collector._changed:
            collector._changed.wait_for(
                lambda: any(t == topic and p == b"" for t, p, _ in collector.messages), 10
            )
        assert any(t == topic and p == b"" for t, p, _ in collector.messages)
    finally:
        bridge.stop(deadline=5)


def latest(collector: Collector, topic: str, state: str, timeout: float = 15.0) -> bool:
    """Whether the last presence document on `topic` says `state`, waiting for it up to `timeout`."""

    def last_state() -> str | None:
        documents = [p for t, p, _ in collector.messages if t == topic and p]
        return json.loads(documents[-1])["state"] if documents else None

    with collector._changed:
        return collector._changed.wait_for(lambda: last_state() == state, timeout)


def test_history_is_off_by_default_and_its_url_is_checked(tmp_path: Path) -> None:
    from bridge.core.errors import ConfigError
    from bridge.extensions import enabled_extensions

    assert HistoryExtension not in enabled_extensions(load_config())
    assert HistoryExtension in enabled_extensions(load_config(history={"enabled": True}))
    with pytest.raises(ConfigError) as info:
        load_config(history={"url": "mysql://user:secret@db:3306/x"})
    [problem] = info.value.problems
    assert "history.url" in problem and "'mysql://db:3306' is not a postgresql" in problem
    assert "secret" not in problem
    assert load_config(history={"url": ""}).history.url is None
    shown = json.dumps(load_config(history={"url": "postgresql://plates:secret@db:5432/x"}).masked())
    assert "postgresql://db:5432" in shown and "secret" not in shown  # what bridge/info publishes


def test_run_time_lists_join_the_nodes_that_match_every_global_list() -> None:
    from bridge.config import RouteConfig
    from bridge.nodes import NodeContext, WatchlistNode
    from bridge.nodes.watchlist import LiveWatchlists

    live = LiveWatchlists()

    def node(settings: dict[str, Any]) -> WatchlistNode:
        context = NodeContext(
            route=RouteConfig(topic="cameras/+/image"),
            base_topic=BASE,
            publisher=RecordingPublisher(),
            live_watchlists=live,
        )
        return WatchlistNode.from_settings(settings, context)  # type: ignore[return-value]

    every, own = node({}), node({"use": [], "lists": {"gate": {"plates": ["ZZ11ZZZ"]}}})
    msg = Message(
        topic="cameras/gate/image",
        payload=b"",
        received_at=time_now(),
        camera_id="gate",
        result={"results": [result("ab12cdf")]},
    )
    assert every.process(msg).watched == ()  # type: ignore[union-attr]
    live.replace({"visitors": [("AB12CDE", "Plumber")]})
    [match] = every.process(msg).watched  # type: ignore[union-attr]
    assert (match["list"], match["label"], match["distance"]) == ("visitors", "Plumber", 1.0)
    assert own.process(msg).watched == ()  # type: ignore[union-attr]


def test_frames_waiting_for_the_writer_are_bounded_in_bytes_too(tmp_path: Path) -> None:
    config = load_config(history={"enabled": True, "data_dir": str(tmp_path), "queue_bytes": 1024**2})
    extension = HistoryExtension(ExtensionContext(config=config, publisher=RecordingPublisher(), health=dict))
    image = b"\xff\xd8" + bytes(600 * 1024)
    msg = Message(
        topic="cameras/gate/image", payload=b"", received_at=time_now(), camera_id="gate", image=image
    )
    event = {"results": [result("ab12cde")], "camera_id": "gate"}
    for _ in range(3):
        extension.on_event(PublishedEvent("plate", "plate-bridge/gate/result", event, msg))
    assert extension.stats() == {"dropped": 2, "queued": 1, "store_open": 0}


def test_a_presence_left_retained_by_an_earlier_run_is_emptied(
    broker: BrokerAddress, emulator: ReaderEmulator, collector_factory: Any, tmp_path: Path
) -> None:
    collector: Collector = collector_factory(broker.host, broker.port, [f"{BASE}/history/#"])
    old = f"{BASE}/history/presence/OLD123"
    collector.publish(old, json.dumps({"state": "home", "plate": "OLD123"}).encode(), retain=True)
    bridge = history_bridge(broker, emulator, tmp_path, watchlists={"family": {"plates": ["AB12CDE"]}})
    try:
        with collector._changed:
            emptied = collector._changed.wait_for(
                lambda: any(t == old and p == b"" for t, p, _ in collector.messages), 15
            )
        assert emptied
        assert latest(collector, f"{BASE}/history/presence/AB12CDE", "not_home")
    finally:
        bridge.stop(deadline=5)


def test_a_store_that_cannot_be_opened_yet_stops_nothing_and_is_tried_again(
    broker: BrokerAddress,
    emulator: ReaderEmulator,
    collector_factory: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store's folder cannot be made at start (a file is in the way, as a share not mounted yet
    would be): the bridge starts, plate events go on, a watch-list request is told to retry, and the
    vehicle read meanwhile is stored once the store opens."""
    from bridge.extensions.history import extension as history_extension

    monkeypatch.setattr(history_extension, "STORE_RETRY_FIRST", 0.2)
    monkeypatch.setattr(history_extension, "STORE_RETRY_MAX", 0.2)
    mount = tmp_path / "mnt"
    mount.write_text("not a folder yet")
    bridge = history_bridge(broker, emulator, mount / "history")
    try:
        extension = history_of(bridge)
        assert extension.store is None and extension.stats()["store_open"] == 0
        feed = Feed(extension)
        collector: Collector = collector_factory(broker.host, broker.port, [f"{BASE}/#"])
        collector.publish("cameras/drive/image", frame(emulator, "ab12cde", "one"))
        [event] = collector.wait_for(f"{BASE}/drive/result", 1)
        assert event["results"][0]["plate"] == "ab12cde"
        answer = request(collector, "list", {"transaction": "t1"}, 1)
        assert answer["status"] == "error" and "not open yet" in answer["error"]
        assert feed.sightings == []
        mount.unlink()
        mount.mkdir()
        [sighting] = feed.wait(1)
        assert sighting.plate == "AB12CDE" and extension.stats()["store_open"] == 1
        assert (mount / "history" / "history.sqlite3").exists()
    finally:
        bridge.stop(deadline=5)


def test_a_store_never_opened_says_what_it_did_not_store(
    broker: BrokerAddress, emulator: ReaderEmulator, collector_factory: Any, tmp_path: Path, caplog: Any
) -> None:
    blocker = tmp_path / "mnt"
    blocker.write_text("never a folder")
    bridge = history_bridge(broker, emulator, blocker / "history")
    try:
        extension = history_of(bridge)
        collector: Collector = collector_factory(broker.host, broker.port, [f"{BASE}/+/result"])
        collector.publish("cameras/drive/image", frame(emulator, "ab12cde", "one"))
        collector.wait_for(f"{BASE}/drive/result", 1)
        # The event is published before the vehicle is queued for the store: wait until it is.
        deadline = time.monotonic() + 10
        while extension.stats()["queued"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert extension.stats()["queued"] == 1
    finally:
        with caplog.at_level("ERROR", logger="bridge.extensions.history.extension"):
            bridge.stop(deadline=5)
    assert extension.stats()["not_stored"] == 1
    assert "1 vehicle(s) and 1 usage count(s) of this run were not stored" in caplog.text


def test_a_vehicle_read_offline_cost_no_call() -> None:
    from bridge.extensions.history.records import Pending, records_of

    def calls_of(**event: Any) -> list[int]:
        pending = Pending(
            kind="plate",
            event={"results": [result("ab12cde")], **event},
            image=None,
            scale=None,
            camera="gate",
            seen_at=time_now(),
        )
        return [record.calls for record in records_of(pending, reader="cloud", images=False)]

    assert calls_of() == [1]
    assert calls_of(reader="local") == [0]
    assert calls_of(cached=True) == [0]


def test_the_months_usage_tells_frames_read_offline_from_calls_and_reuse(tmp_path: Path) -> None:
    from bridge.extensions.history.store import HistoryStore

    config = load_config(history={"enabled": True, "data_dir": str(tmp_path)})
    extension = HistoryExtension(ExtensionContext(config=config, publisher=RecordingPublisher(), health=dict))
    extension.start()
    try:
        msg = Message(topic="cameras/gate/image", payload=b"", received_at=time_now(), camera_id="gate")
        for event in (
            {"results": [], "reader": "cloud"},
            {"results": [], "reader": "local"},
            {"results": [], "reader": "local"},
            {"results": [], "reader": "cloud", "cached": True},
        ):
            extension.on_event(PublishedEvent("plate", "plate-bridge/gate/result", event, msg))
    finally:
        extension.stop()  # writes this run's usage
    store = HistoryStore.open(None, tmp_path)
    try:
        usage = store.usage(time_now().strftime("%Y-%m"))
        assert (usage.calls, usage.read_offline, usage.saved_by_reuse) == (1, 2, 1)
    finally:
        store.close()
