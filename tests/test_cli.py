"""The `plate-bridge` command as a user runs it: a real process, the emulator over HTTP."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.core import schemas
from tests.conftest import EXAMPLES, RESPONSES, BrokerAddress, free_port, needs_shared
from tests.emulator import ReaderEmulator
from tests.images import jpeg

TOKEN = "cli-token-9876543210"


def plate_bridge(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PLATE_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        check=False,
    )


@pytest.fixture
def secured() -> ReaderEmulator:
    with ReaderEmulator(token=TOKEN) as running:
        yield running


@needs_shared
def test_recognize_the_shared_images_prints_one_valid_result_each(secured: ReaderEmulator) -> None:
    folder = RESPONSES / "images"
    done = plate_bridge("recognize", str(folder), "--url", secured.url, env={"PLATE_RECOGNIZER_TOKEN": TOKEN})
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == len(list(folder.glob("*.jpg")))
    for line in lines:
        path = line.pop("path")
        schemas.validate("plate-reader-response", line)
        assert line["results"], f"{path}: the paired real response has plates"
    plates = {Path(line["filename"]).stem: [r["plate"] for r in line["results"]] for line in lines}
    assert ["kbw468a", "kbw468a"] in plates.values()


def test_recognize_with_a_wrong_token_names_the_403(secured: ReaderEmulator, tmp_path: Path) -> None:
    image = tmp_path / "car.jpg"
    image.write_bytes(jpeg())
    done = plate_bridge("recognize", str(image), "--url", secured.url, "--token", "not-the-token-555")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("plate-bridge: 403: the token was refused")
    assert "not-the-token-555" not in done.stdout + done.stderr


def test_recognize_csv_with_every_parameter(secured: ReaderEmulator, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.jpg").write_bytes(jpeg())
    (tmp_path / "two.JPEG").write_bytes(jpeg(text="X"))
    (tmp_path / "notes.txt").write_text("not an image")
    out = tmp_path / "plates.csv"
    done = plate_bridge(
        "recognize", str(tmp_path), "--url", secured.url, "--token", TOKEN, "--regions", "gb",
        "--regions", "fr", "--camera-id", "gate", "--mmc", "--config", '{"mode":"fast"}',
        "--format", "csv", "-o", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 2 and {row["plate"] for row in rows} == secured.answer_plates(mmc=True)
    assert set(rows[0]) >= {"filename", "plate", "score", "dscore", "region", "vehicle_type", "xmin", "ymax"}
    assert all(request.fields["regions"] == ["gb", "fr"] for request in secured.requests)
    assert all(request.fields["camera_id"] == ["gate"] for request in secured.requests)
    assert len(secured.requests) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["recognize", "missing.jpg", "--url", "http://127.0.0.1:9/"], "missing.jpg: no such file or folder"),
        (
            ["recognize", ".", "--url", "https://api.platerecognizer.com/v1/plate-reader/"],
            "the cloud URL needs a token",
        ),
        (["recognize", "README.md", "--url", "http://127.0.0.1:9/", "--regions", "zz"], "unknown region"),
        (["check-config", "nope.yaml"], "cannot read nope.yaml"),
    ],
)
def test_usage_errors_are_one_clear_line(args: list[str], message: str) -> None:
    done = plate_bridge(*args)
    assert done.returncode in (1, 2)
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_check_config_masks_secrets(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("mqtt: {username: u, password: pw-secret-1}\nreader: {token: tok-secret-2}\n")
    done = plate_bridge("check-config", str(path))
    assert done.returncode == 0, done.stderr
    assert "pw-secret-1" not in done.stdout and "tok-secret-2" not in done.stdout
    assert "'**********'" in done.stdout
    assert "cameras/+/image" in done.stdout


def test_check_config_lists_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "mqtt: {prot: 1}\nreader: {url: 'https://api.platerecognizer.com/v1/plate-reader/'}\n"
        "routes: [{topic: 'a/#/b', regions: [no]}]\n"
    )
    done = plate_bridge("check-config", str(path))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 4, lines
    assert all(line.startswith("plate-bridge: ") for line in lines)


def test_demo_runs_offline_and_reads_every_example_plate() -> None:
    pytest.importorskip(
        "bridge.engines.local", reason="the [local] extra is not installed", exc_type=ImportError
    )
    labels = (EXAMPLES / "images" / "labels.tsv").read_text().splitlines()[1:]
    expected = {Path(line.split("\t")[1]).stem: line.split("\t")[2].lower() for line in labels}
    done = plate_bridge("demo", "--port", "0", timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    read = dict(
        (line.split("/")[1], line.split(": ")[1].split(" (")[0])
        for line in done.stdout.splitlines()
        if line.startswith("plate-bridge/") and line.count(": ") == 1
    )
    assert read == expected
    assert (
        f"{len(expected)} frame(s) published, {len(expected)} plate event(s), 0 error event(s)" in done.stdout
    )


def test_demo_with_an_unreachable_sdk_reports_errors() -> None:
    done = plate_bridge(
        "demo", "--port", "0", "--url", "http://127.0.0.1:9/v1/plate-reader/", "--timeout", "60"
    )
    assert done.returncode == 1
    assert "reader_unavailable" in done.stdout


@pytest.mark.parametrize("payload_format", ["raw", "base64", "json"])
def test_publish_is_a_camera_simulator(
    payload_format: str, broker: BrokerAddress, collector_factory: Any, tmp_path: Path
) -> None:
    image = tmp_path / "car.jpg"
    image.write_bytes(jpeg())
    collector = collector_factory(broker.host, broker.port, ["cameras/#"])
    done = plate_bridge(
        "publish", str(image), "--topic", "cameras/gate/image", "--port", str(broker.port),
        "--format", payload_format, "--camera-id", "gate", "--repeat", "2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with collector._changed:
        collector._changed.wait_for(lambda: len(collector.messages) >= 2, 10)
    payloads = [payload for topic, payload, _ in collector.messages if topic == "cameras/gate/image"]
    assert len(payloads) == 2
    expected = {
        "raw": image.read_bytes(),
        "base64": base64.b64encode(image.read_bytes()),
        "json": json.dumps(
            {"image": base64.b64encode(image.read_bytes()).decode(), "camera_id": "gate"}
        ).encode(),
    }[payload_format]
    assert payloads[0] == expected


def test_publish_to_no_broker_is_one_clear_line(tmp_path: Path) -> None:
    image = tmp_path / "car.jpg"
    image.write_bytes(jpeg())
    done = plate_bridge("publish", str(image), "--topic", "a/b", "--port", str(free_port()))
    assert done.returncode == 1
    assert done.stderr.strip().startswith("plate-bridge: cannot connect to the broker at 127.0.0.1:")
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc arenas are glibc's (Linux)")
@pytest.mark.parametrize(("environment", "expected"), [({}, "2"), ({"MALLOC_ARENA_MAX": "8"}, "None")])
def test_run_caps_malloc_arenas_only_when_the_user_did_not(
    environment: dict[str, str], expected: str
) -> None:
    # In a child process, as `run` does it at start: the cap is process-wide.
    env = {key: value for key, value in os.environ.items() if key != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", "from bridge.tuning import limit_malloc_arenas; print(limit_malloc_arenas())"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**env, **environment},
        check=True,
    )
    assert done.stdout.strip() == expected


def test_every_command_module_is_in_the_table_and_the_help() -> None:
    """A command is a module of bridge/cli/ with NAME, HELP, add_arguments and handle, and one line in
    COMMANDS: a module left out of the table (or a table line without a module) fails here."""
    import importlib
    import pkgutil

    import bridge.cli

    helpers = {"common", "__main__"}
    modules = {info.name for info in pkgutil.iter_modules(bridge.cli.__path__)} - helpers
    assert set(bridge.cli.COMMANDS) == modules
    names = []
    for module_name in bridge.cli.COMMANDS:
        command = importlib.import_module(f"bridge.cli.{module_name}")
        assert command.NAME and command.HELP
        assert callable(command.add_arguments) and callable(command.handle)
        names.append(command.NAME)
    usage = plate_bridge("--help")
    assert usage.returncode == 0
    for name in names:
        assert name in usage.stdout
