"""The npm node `node-red-contrib-plate-recognizer`, unchanged, in a real Node-RED 4 against `plate-bridge
serve` with the offline engine: what a Node-RED user who points the node at `serve` gets.

The node (1.0.3, read from its source) posts multipart/form-data to its configured URL with
`Authorization: Token <API token>`: `upload` as a base64 text field (a Buffer is encoded first), `mmc`
as "true"/"false", `camera_id` (empty when left blank), `timestamp` as JavaScript's ISO time with
milliseconds, and one `regions` field per entry of its region list when the region filter is on. A 2xx
answer goes to its first output (with `status` and `statusText` added; with "separate messages", one
message per plate whose `results` is that plate), anything else to its second, the HTTP reason in the
node's status. Its companion `plate-statistics` node GETs its URL with the same header.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLES, Collector, Mosquitto, loaded_local_engine
from tests.nodered import NodeRed
from tests.test_server import TOKEN, Served, start, stop

PLATE_RECOGNIZER = "node-red-contrib-plate-recognizer@1.0.3"  # the only version on npm
FLOW = EXAMPLES / "node-red" / "serve-flow.json"
IMAGES = EXAMPLES / "images"
READ_TIMEOUT = 120.0  # Node-RED's start, its MQTT connection, and the engine on 2 busy cores


class RecordingEngine:
    """The offline engine, unchanged, noting what each request asked of it (what the node sent)."""

    supports_mmc = False

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def load(self) -> None:
        self.engine.load()

    def read(self, image: bytes, **options: Any) -> dict[str, Any]:
        with self._lock:
            self.calls.append({"size": len(image), **options})
        return self.engine.read(image, **options)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """`serve` as it ships (the offline engine, with a token) under uvicorn on 127.0.0.1."""
    engine = loaded_local_engine()
    running = start(RecordingEngine(engine), token=TOKEN)
    try:
        yield running
    finally:
        stop(running)


def banner_url_for_node_red(served: Served) -> str:
    """The URL `serve`'s start-up banner tells Node-RED users to give the node."""
    from bridge.server.runner import startup_banner

    banner = startup_banner("127.0.0.1", served.port, token=TOKEN)
    [line] = [line for line in banner.splitlines() if "Node-RED" in line]
    return line.split()[-1]


def variant(
    flow: list[dict[str, Any]], name: str, *, topic: str, **settings: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A copy of the example's snapshot input and reader, named `name`, reading `topic`, with `settings`."""
    snapshot = copy.deepcopy(next(node for node in flow if node["id"] == "pb_serve_snapshot"))
    reader = copy.deepcopy(next(node for node in flow if node["id"] == "pb_serve_reader"))
    reader.update(id=f"pb_serve_reader_{name}", name=name, **settings)
    snapshot.update(id=f"pb_serve_snapshot_{name}", topic=topic, wires=[[reader["id"]]])
    return snapshot, reader


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def one_call(calls: Sequence[Mapping[str, Any]], camera_id: str | None) -> Mapping[str, Any]:
    found = [call for call in calls if call["camera_id"] == camera_id]
    assert len(found) == 1, f"{len(found)} engine calls for camera {camera_id!r}: {calls}"
    return found[0]


def test_the_plate_recognizer_node_reads_plates_with_serve(
    served: Served, mosquitto: Mosquitto, tmp_path: Path, collector_factory: Any
) -> None:
    flow: list[dict[str, Any]] = json.loads(FLOW.read_text())
    # The example as shipped reads the driveway; variants cover what else the node's editor offers.
    variants = [
        # Region filter on (one `regions` field per entry), one message per plate, the plates as status.
        variant(
            flow,
            "gate",
            topic="home/gate/snapshot",
            cameraId="gate",
            regionFilter=True,
            regionList='["fr"]',
            separateMsg=True,
        ),
        # As dropped from the palette: no camera id (sent empty), the plate count as status.
        variant(flow, "yard", topic="home/yard/snapshot", cameraId="", statusText="count"),
        # Make and model on: the offline engine reads neither, so serve refuses it.
        variant(flow, "makes", topic="home/makes/snapshot", cameraId="makes", makeAndModel=True),
        # A token that is not serve's.
        variant(flow, "intruder", topic="home/intruder/snapshot", cameraId="intruder"),
    ]
    flow += [node for pair in variants for node in pair]
    readers = ["pb_serve_reader", *(reader["id"] for _, reader in variants)]
    next(node for node in flow if node["id"] == "pb_serve_status")["scope"] = readers
    credentials = {reader: {"apiToken": TOKEN} for reader in readers}
    credentials["pb_serve_reader_intruder"] = {"apiToken": "not-" + TOKEN}
    credentials["pb_serve_statistics"] = {"apiToken": TOKEN}

    collector: Collector = collector_factory("127.0.0.1", mosquitto.port, ["home/plates/#"])
    # Retained snapshots: Node-RED finds them when it subscribes, whenever that is.
    snapshots = {
        "driveway": "gb_rear_yellow.jpg",
        "gate": "eu_fr_front.jpg",
        "yard": "gb_front_white.jpg",
        "makes": "gb_rear_yellow.jpg",
        "intruder": "gb_rear_yellow.jpg",
    }
    for camera, image in snapshots.items():
        collector.publish(f"home/{camera}/snapshot", (IMAGES / image).read_bytes(), retain=True)
    url = banner_url_for_node_red(served)
    assert url == served.url
    now = datetime.now(UTC)
    began = now.replace(microsecond=now.microsecond // 1000 * 1000)  # JavaScript's clock has milliseconds
    with NodeRed(
        tmp_path,
        flow,
        credentials=credentials,
        environment={
            "MQTT_HOST": "127.0.0.1",
            "MQTT_PORT": str(mosquitto.port),
            "PLATE_READER_URL": url,
            "PLATE_STATISTICS_URL": served.base_url + "/v1/statistics/",
        },
        packages=[PLATE_RECOGNIZER],
    ) as node_red:
        try:
            answers = collector.wait_for("home/plates/read", 3, timeout=READ_TIMEOUT)
            refused = collector.wait_for("home/plates/failed", 2, timeout=READ_TIMEOUT)
            statuses = {
                name: [status["text"] for status in collector.wait_for(f"home/plates/status/{name}", 2)]
                for name in ("driveway", "gate", "yard", "makes", "intruder")
            }
            [usage] = collector.wait_for("home/plates/usage")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nNode-RED's log:\n{node_red.log()}") from None
    ended = datetime.now(UTC)

    by_camera = {answer["camera_id"]: answer for answer in answers}
    assert set(by_camera) == {"driveway", "gate", None}, answers
    # The example as shipped: the whole answer in the cloud's shape, the node's status fields added.
    driveway = by_camera["driveway"]
    assert [result["plate"] for result in driveway["results"]] == ["bd51smr"]
    assert (driveway["status"], driveway["statusText"]) == (200, "OK")
    assert began <= moment(driveway["timestamp"]) <= ended  # the node's own time, not serve's
    assert statuses["driveway"] == ["recognizing", "BD51SMR"]
    # Separate messages: `results` is the one plate; the region hint reached the engine and its answer.
    gate = by_camera["gate"]
    assert gate["results"]["plate"] == "fg482kt" and gate["results"]["region"]["code"] == "fr"
    assert statuses["gate"] == ["recognizing", "FG482KT"]
    # A blank camera id is no camera id.
    assert [result["plate"] for result in by_camera[None]["results"]] == ["yr68khn"]
    assert statuses["yard"] == ["recognizing", "1 plates"]

    # What the node sent, as the engine received it.
    calls = served.engine.calls
    assert len(calls) == 3, calls
    driveway_call = one_call(calls, "driveway")
    assert driveway_call["regions"] == () and driveway_call["mmc"] is False
    assert driveway_call["size"] == (IMAGES / "gb_rear_yellow.jpg").stat().st_size  # base64, decoded
    assert moment(driveway_call["timestamp"]) == moment(driveway["timestamp"])
    assert one_call(calls, "gate")["regions"] == ("fr",)
    assert one_call(calls, None)["regions"] == ()

    # Refused before the engine: make and model (400), and a wrong token (403) — so the node sends its
    # token, since a request without one would be answered as an SDK's.
    assert sorted(doc["snapshot"] for doc in refused) == ["home/intruder/snapshot", "home/makes/snapshot"]
    assert statuses["makes"] == ["recognizing", "Bad Request"]
    assert statuses["intruder"] == ["recognizing", "Forbidden"]
    # The companion statistics node, with the token the cloud-only path requires.
    assert isinstance(usage["usage"]["calls"], int) and usage["total_calls"] > 0
