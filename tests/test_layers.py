"""The house's rules, checked: imports point one way, service.py only wires, extension hooks are
isolated from each other, and a route's chain of nodes is the one the architecture page shows."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import load_config
from bridge.core.events import PublishedEvent
from bridge.core.messages import Message, utc_now
from bridge.extensions import EXTENSIONS, Extension, ExtensionContext, Extensions
from bridge.flows import Flow
from bridge.flows.stats import FrameStats
from tests.canned import RecordingPublisher

ROOT = Path(__file__).resolve().parents[1]
READER = {"url": "http://127.0.0.1:9/v1/plate-reader/"}


def _lint_imports() -> str | None:
    beside = Path(sys.executable).with_name("lint-imports")
    return str(beside) if beside.exists() else shutil.which("lint-imports")


def test_the_import_contracts_hold() -> None:
    """The command `make test` runs; here too, so a plain pytest run shows a broken layer by name."""
    command = _lint_imports()
    if command is None:
        pytest.skip("import-linter is not installed: pip install -e '.[test]'")
    done = subprocess.run([command], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout


def test_service_wires_and_names_no_extension() -> None:
    source = (ROOT / "bridge" / "service.py").read_text()
    assert len(source.splitlines()) <= 250
    # Each extension by its module path, class name and feature word ("info" alone is in log.info).
    names = {path.partition(":")[0] for path in EXTENSIONS} | {path.partition(":")[2] for path in EXTENSIONS}
    names |= {
        "homeassistant",
        "home assistant",
        "frigate",
        "webhook",
        "metrics",
        "discovery",
        "response_topic",
    }
    lowered = source.lower()
    assert [name for name in names if name.lower() in lowered] == []


def test_the_global_watch_lists_add_a_watchlist_node_unless_the_route_places_one() -> None:
    config = load_config(reader=READER, routes=[{"topic": "a/+"}, {"topic": "b/+", "nodes": ["watchlist"]}])
    plain, own = config.routes
    assert [spec.type for spec in Flow.chain(plain, watchlists=False)] == [
        "decode",
        "recognize",
        "validate",
        "publish",
    ]
    assert [spec.type for spec in Flow.chain(plain, watchlists=True)] == [
        "decode",
        "recognize",
        "validate",
        "watchlist",
        "publish",
    ]
    assert [spec.type for spec in Flow.chain(own, watchlists=True)].count("watchlist") == 1


class _Failing(Extension):
    name = "failing"

    def on_event(self, published: PublishedEvent) -> None:
        raise RuntimeError("broken on purpose")

    def on_frame(self, msg: Message) -> None:
        raise RuntimeError("broken on purpose")


class _Counting(Extension):
    name = "counting"

    def __init__(self, context: ExtensionContext) -> None:
        super().__init__(context)
        self.events: list[str] = []
        self.frames: list[str] = []

    def on_event(self, published: PublishedEvent) -> None:
        self.events.append(published.topic)

    def on_frame(self, msg: Message) -> None:
        self.frames.append(msg.topic)

    def stats(self) -> dict[str, int]:
        return {"events": len(self.events)}


def test_a_failing_extension_is_logged_and_the_others_still_hear(caplog: pytest.LogCaptureFixture) -> None:
    context = ExtensionContext(config=load_config(reader=READER), publisher=RecordingPublisher(), health=dict)
    counting = _Counting(context)
    extensions = Extensions([_Failing(context), counting])
    msg = Message(topic="cameras/gate/image", payload=b"", received_at=utc_now())
    extensions.on_frame(msg)
    extensions.on_event(PublishedEvent("plate", "plate-bridge/gate/result", {}, msg))
    assert counting.frames == ["cameras/gate/image"]
    assert counting.events == ["plate-bridge/gate/result"]
    assert extensions.stats() == {"counting": {"events": 1}}
    failures = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert failures == [
        "extension failing failed on a frame on cameras/gate/image",
        "extension failing failed on an event on plate-bridge/gate/result",
    ]


def test_the_frame_counters_add_up_in_one_registry() -> None:
    stats = FrameStats()
    for _ in range(3):
        stats.count("received")
        stats.count_accepted("gate")
    stats.count("processed")
    stats.count_dropped("camera_queue")
    counted = stats.as_dict()
    assert (counted["received"], counted["processed"], counted["dropped"]) == (3, 1, 1)
    assert counted["dropped_by"] == {"camera_queue": 1, "queue_full": 0, "shutdown": 0}
    assert stats.accepted() == {"gate": 3}
