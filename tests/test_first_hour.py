"""A new user's first hour: every command of the README and getting started, run as a user runs it."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import sysconfig
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bridge.config import CLOUD_URL
from bridge.core import schemas
from bridge.core.errors import ConfigError
from bridge.core.redact import shown_url
from bridge.mqtt.broker import EmbeddedBroker
from tests.conftest import EXAMPLES, Collector, free_port, wait_for_port
from tests.emulator import ReaderEmulator
from tests.images import jpeg

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "first-hour-token-31337"
SDK = "http://127.0.0.1:9/v1/plate-reader/"
LABELS = {
    line.split("\t")[1]: line.split("\t")[2].lower()
    for line in (EXAMPLES / "images" / "labels.tsv").read_text().splitlines()[1:]
}

PIP_WHEEL = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet"]
needs_local = pytest.mark.skipif(
    __import__("importlib").util.find_spec("onnxruntime") is None,
    reason="the offline reader needs the [local] extra",
)


def environment(**extra: str) -> dict[str, str]:
    """The user's environment without any PLATE_* setting of the developer's shell."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PLATE_")}
    env.update(extra)
    return env


def plate_bridge(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment(**env),
        check=False,
        cwd=ROOT,
    )


def on_a_terminal(*args: str, timeout: float = 120, **env: str) -> tuple[int, str]:
    """Run with stdout and stderr on one pseudo-terminal, as in a user's shell; return what it showed."""
    controller, terminal = pty.openpty()
    # A terminal of 30 rows by 120 columns: a fresh pty has 0 columns, and a bar fits in none.
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
        env=environment(**env),
        cwd=ROOT,
    )
    os.close(terminal)
    shown = bytearray()
    give_up = time.monotonic() + timeout
    try:
        while time.monotonic() < give_up:
            ready, _, _ = select.select([controller], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        status = process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
        os.close(controller)
    return status, shown.decode("utf-8", "replace").replace("\r\n", "\n")


@pytest.fixture
def secured() -> Iterator[ReaderEmulator]:
    with ReaderEmulator(token=TOKEN) as running:
        yield running


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


# --- 1. recognize reads offline, and `local` is the default without a token ------------------------


@needs_local
def test_recognize_reads_offline_with_url_local_and_by_default_without_a_token() -> None:
    image = EXAMPLES / "images" / "gb_front_white.jpg"
    expected = LABELS[image.name]
    done = plate_bridge("recognize", str(image), "--url", "local")
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    assert json.loads(line)["results"][0]["plate"] == expected
    assert "reader.url: local" not in done.stderr, "an explicit --url needs no note"

    done = plate_bridge("recognize", str(image), "--regions", "gb")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["results"][0]["plate"] == expected
    assert "no reader.url and no token: plates are read offline (reader.url: local)" in done.stderr


def test_an_explicit_cloud_url_without_a_token_is_still_refused(tmp_path: Path) -> None:
    image = tmp_path / "car.jpg"
    image.write_bytes(jpeg())
    done = plate_bridge("recognize", str(image), "--url", CLOUD_URL)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "plate-bridge: the cloud URL needs a token: set reader.token or PLATE_RECOGNIZER_TOKEN, "
        "or point reader.url at an SDK"
    )


# --- 2. check-config builds what run builds -------------------------------------------------------


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ("{type: fliter}", "unknown node 'fliter'"),
        ("{type: filter, min_scor: 0.8}", "routes[cameras/+/image].nodes.filter.min_scor: Extra inputs"),
    ],
)
def test_check_config_fails_on_a_bad_node_exactly_as_run_does(
    tmp_path: Path, node: str, message: str
) -> None:
    config = write(
        tmp_path,
        "bridge.yaml",
        f"mqtt: {{host: embedded, port: 0}}\nreader: {{url: '{SDK}'}}\n"
        f"routes: [{{topic: cameras/+/image, nodes: [{node}]}}]\n",
    )
    checked = plate_bridge("check-config", str(config))
    ran = plate_bridge("run", "--config", str(config), timeout=60)
    assert checked.returncode == 2 and ran.returncode == 2, (checked.stderr, ran.stderr)
    assert message in checked.stderr
    assert checked.stderr == ran.stderr, "the same one-line message, and run starts nothing first"
    assert "embedded MQTT broker" not in ran.stderr and "Traceback" not in ran.stderr


def test_check_config_fails_on_a_missing_tls_key_file_naming_it(tmp_path: Path) -> None:
    certificate = tmp_path / "client.pem"
    certificate.write_text("not yet a certificate")
    missing = tmp_path / "keys" / "client.key"
    config = write(
        tmp_path,
        "bridge.yaml",
        f"reader: {{url: '{SDK}'}}\nmqtt: {{tls: {{certfile: '{certificate}', keyfile: '{missing}'}}}}\n",
    )
    done = plate_bridge("check-config", str(config))
    assert done.returncode == 2
    assert done.stderr.strip() == f"plate-bridge: mqtt.tls: keyfile {missing}: no such file"


# --- 3. the example configuration works out of the box --------------------------------------------


def test_the_example_configuration_passes_check_config_and_says_which_reader() -> None:
    example = str(EXAMPLES / "config.yaml")
    done = plate_bridge("check-config", example)
    assert done.returncode == 0, done.stderr
    assert "url: local" in done.stdout
    assert "plates are read offline (reader.url: local)" in done.stderr

    with_token = plate_bridge("check-config", example, PLATE_RECOGNIZER_TOKEN=TOKEN)
    assert with_token.returncode == 0, with_token.stderr
    # What is shown of a URL is its scheme, host and port (bridge/core/redact.py): the cloud's, here.
    assert f"url: {shown_url(CLOUD_URL)}" in with_token.stdout and TOKEN not in with_token.stdout
    assert "the token is used with the Plate Recognizer cloud" in with_token.stderr


@needs_local
def test_the_example_configuration_runs_reads_a_frame_and_says_how_it_stops(tmp_path: Path) -> None:
    broker = EmbeddedBroker("127.0.0.1", free_port())
    broker.start()
    collector = Collector("127.0.0.1", broker.port, ["plate-bridge/#"])
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "run", "-v", "--config", str(EXAMPLES / "config.yaml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(PLATE_BRIDGE__MQTT__HOST="127.0.0.1", PLATE_BRIDGE__MQTT__PORT=str(broker.port)),
        cwd=ROOT,
    )
    try:
        collector.wait_for("plate-bridge/bridge/state", timeout=60)
        # `online` comes before the bridge's subscription is acknowledged: the first frames may go
        # unheard, so the non-image is sent until its error event proves the route is listening.
        sent = 0
        give_up = time.monotonic() + 60
        while not collector.on("plate-bridge/porch/error") and time.monotonic() < give_up:
            collector.publish("cameras/porch/image", b"hello, this is not a picture")
            sent += 1
            with contextlib.suppress(AssertionError):
                collector.wait_for("plate-bridge/porch/error", timeout=1)
        error = collector.wait_for("plate-bridge/porch/error", timeout=1)[0]
        assert error["code"] == "payload_not_image"
        assert "28 bytes of text starting b'hello, this '" in error["message"], error["message"]
        image = EXAMPLES / "images" / "gb_rear_yellow.jpg"
        collector.publish("cameras/drive/image", image.read_bytes())
        [event] = collector.wait_for("plate-bridge/drive/result", timeout=90)
        schemas.validate("plate-event", event)
        assert event["results"][0]["plate"] == LABELS[image.name]
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        collector.close()
        broker.stop()
    assert process.returncode == 0, stderr[-3000:]
    assert "DEBUG" in stderr, "run -v logs debug messages"
    assert "plates are read offline (reader.url: local)" in stderr
    assert "plate-bridge: stopping: finishing 0 queued frame(s)" in stderr
    assert f"then publishing offline and disconnecting from 127.0.0.1:{broker.port}" in stderr
    [stopped] = [line for line in stderr.splitlines() if line.startswith("plate-bridge: stopped at ")]
    received, read, dropped = map(int, re.findall(r"(\d+) (?:frame\(s\) received|read|dropped)", stopped))
    assert received == read and dropped == 0 and 1 < read <= sent + 1, stopped


def test_without_the_offline_reader_installed_check_config_says_what_to_do(tmp_path: Path) -> None:
    # As if the [local] extra were not installed: a None in sys.modules makes it unimportable.
    write(tmp_path, "sitecustomize.py", "import sys\nsys.modules['onnxruntime'] = None\n")
    done = plate_bridge("check-config", str(EXAMPLES / "config.yaml"), PYTHONPATH=str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "plate-bridge: reader.url: local (chosen because no token is set): the offline reader is not "
        "installed (onnxruntime missing): pip install 'plate-bridge[local]', or set PLATE_RECOGNIZER_TOKEN "
        "for the Plate Recognizer cloud"
    )
    assert plate_bridge("check-config", str(EXAMPLES / "config.yaml"), PYTHONPATH=str(tmp_path),
                        PLATE_RECOGNIZER_TOKEN=TOKEN).returncode == 0  # fmt: skip


# --- 4. the demo after a normal, non-editable install ---------------------------------------------


@pytest.mark.slow
@needs_local
def test_demo_works_after_a_non_editable_install(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        # hatchling (a test dependency) from this environment: no index needed, so it works offline.
        [*PIP_WHEEL, "-w", str(wheels), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = wheels.glob("plate_bridge-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    # The dependencies come from this environment's site-packages, appended after the new venv's
    # own: the installed wheel is found first, and the source tree is nowhere on the path.
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    elsewhere = tmp_path / "somewhere"
    elsewhere.mkdir()
    located = subprocess.run(
        [str(python), "-c", "import bridge, pathlib; print(pathlib.Path(bridge.__file__).resolve())"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=environment(),
        check=True,
    )
    assert Path(located.stdout.strip()).is_relative_to(venv.resolve()), located.stdout
    done = subprocess.run(
        [str(venv / "bin" / "plate-bridge"), "demo", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=elsewhere,
        env=environment(),
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{len(LABELS)} frame(s) published, {len(LABELS)} plate event(s), 0 error event(s)" in done.stdout
    assert "no token: plates are read offline" in done.stderr
    licence = subprocess.run(
        [
            str(python),
            "-c",
            "from importlib.metadata import distribution as d;"
            "print(d('plate-bridge').read_text('licenses/LICENSE'))",
        ],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=environment(),
        check=True,
    ).stdout
    assert "Permission is hereby granted, free of charge" in licence


# --- 5 and 6. progress on stderr, one CSV row per image -------------------------------------------


def test_recognize_csv_on_a_terminal_keeps_rows_off_the_progress_line(
    secured: ReaderEmulator, tmp_path: Path
) -> None:
    names = ["one.jpg", "two.jpg", "three.jpg"]
    for index, name in enumerate(names):
        (tmp_path / name).write_bytes(jpeg(text=f"AB{index}"))
    empty = jpeg(text="AB2")
    secured.set_response(empty, {"processing_time": 5.0, "results": []})
    status, shown = on_a_terminal(
        "recognize", str(tmp_path), "--url", secured.url, "--format", "csv", PLATE_RECOGNIZER_TOKEN=TOKEN
    )
    assert status == 0, shown
    # What the terminal shows: each line's last carriage-return segment is what stays on screen.
    segments = [segment for line in shown.split("\n") for segment in line.split("\r")]
    rows = [segment for segment in segments if segment.startswith(str(tmp_path))]
    assert len(rows) == 3, shown
    assert not any(str(tmp_path) in segment and "/3" in segment for segment in segments), "a row on the bar"
    by_name = {Path(row.split(",")[0]).name: row.split(",")[1] for row in rows}
    assert by_name["three.jpg"] == "" and by_name["one.jpg"] and by_name["two.jpg"], shown
    assert "3/3" in shown
    last_row = max(shown.rindex(row) for row in rows)
    assert shown.rindex("3/3") > last_row, "the bar reaches 3/3 when the last image is done"
    assert shown.index("3/3") > last_row, "not when the last image starts"


def test_recognize_piped_prints_no_progress_and_one_row_per_image(
    secured: ReaderEmulator, tmp_path: Path
) -> None:
    for name, text in (("a.jpg", "AB1"), ("b.jpg", "AB2")):
        (tmp_path / name).write_bytes(jpeg(text=text))
    secured.set_response(jpeg(text="AB2"), {"processing_time": 5.0, "results": []})
    done = plate_bridge(
        "recognize", str(tmp_path), "--url", secured.url, "--token", TOKEN, "--format", "csv",
        "--regions", "gb,fr", "--regions", "de",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", "nothing but the CSV when not on a terminal"
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [Path(row["filename"]).name for row in rows] == ["a.jpg", "b.jpg"]
    assert rows[0]["plate"] and rows[1]["plate"] == "", "b.jpg has no plate and still its row"
    assert all(request.fields["regions"] == ["gb", "fr", "de"] for request in secured.requests)


def test_evaluate_shows_progress_on_a_terminal(secured: ReaderEmulator, tmp_path: Path) -> None:
    (tmp_path / "set").mkdir()
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / "set" / name).write_bytes(jpeg())
    labels = write(tmp_path, "labels.tsv", "image\tplate\nset/a.jpg\tAB12CDE\nset/b.jpg\tXY99ZZZ\n")
    status, shown = on_a_terminal("evaluate", str(labels), "--url", secured.url, PLATE_RECOGNIZER_TOKEN=TOKEN)
    assert status == 0, shown
    assert "2/2" in shown and shown.index("2/2") < shown.index("total"), shown


# --- 8. non-images are refused before any call ----------------------------------------------------


def test_recognize_refuses_a_non_image_before_calling_the_reader(
    secured: ReaderEmulator, tmp_path: Path
) -> None:
    (tmp_path / "notes.jpg").write_text("shopping list: milk, eggs")
    (tmp_path / "clip.png").write_bytes(b"GIF89a\x01\x00\x01\x00" + bytes(40))
    (tmp_path / "car.jpg").write_bytes(jpeg())
    done = plate_bridge("recognize", str(tmp_path), "--url", secured.url, "--token", TOKEN)
    assert done.returncode == 1
    assert len(secured.requests) == 1, "only the real image reached the (paid) reader"
    lines = done.stderr.splitlines()
    assert (
        f"{tmp_path / 'notes.jpg'}: payload_not_image: not a JPEG or PNG image: it is 25 bytes of text "
        "starting b'shopping lis'" in lines
    )
    assert any("clip.png: payload_not_image" in line and "a GIF image" in line for line in lines), lines
    assert lines[-1] == "2 of 3 image(s) could not be read"


# --- 9. the command line itself -------------------------------------------------------------------


def test_help_reads_for_users_and_shows_defaults() -> None:
    top = plate_bridge("--help")
    assert top.returncode == 0
    assert "reads the license plates of camera frames that arrive over MQTT" in top.stdout
    assert "plate-bridge demo" in top.stdout
    recognize = plate_bridge("recognize", "--help").stdout
    assert "(default: 30.0)" in recognize and "comma list" in recognize
    serve = plate_bridge("serve", "--help").stdout
    assert "(default: 8080)" in serve and "PLATE_BRIDGE_SERVE_TOKEN" in serve and "--token-file" in serve


def test_run_with_a_taken_embedded_broker_port_range_is_one_line_and_exit_2(tmp_path: Path) -> None:
    held = _hold_consecutive_ports(20)
    try:
        config = write(
            tmp_path, "bridge.yaml", f"mqtt: {{host: embedded, port: {held[0].getsockname()[1]}}}\n"
        )
        done = plate_bridge("run", "--config", str(config), timeout=60)
    finally:
        for sock in held:
            sock.close()
    assert done.returncode == 2, done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("plate-bridge: ")]
    assert line.startswith("plate-bridge: the embedded broker found no free port in ")
    assert "Traceback" not in done.stderr


def test_an_embedded_broker_that_cannot_bind_is_a_one_line_config_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        broker = EmbeddedBroker("127.0.0.1", taken.getsockname()[1])
        with pytest.raises(ConfigError) as caught:
            broker.start()
    assert "could not listen on 127.0.0.1:" in str(caught.value)
    assert "the address is already in use" in str(caught.value)
    assert not any(record.exc_info for record in caplog.records), "no traceback in the log"


def _hold_consecutive_ports(count: int) -> list[socket.socket]:
    """Bind `count` consecutive free ports on 127.0.0.1 (what a port race leaves the broker)."""
    for _ in range(50):
        start = free_port()
        held: list[socket.socket] = []
        try:
            for port in range(start, start + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return held
        except OSError:
            for sock in held:
                sock.close()
    pytest.skip(f"no {count} consecutive free ports")


def test_serve_reads_its_token_from_a_file_or_the_environment(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn", reason="the [serve] extra is not installed")
    pytest.importorskip("onnxruntime", reason="the [local] extra is not installed")
    secret = "serve-secret-5150"
    token_file = tmp_path / "token"
    token_file.write_text(secret + "\n")
    for args, env in (
        (["--token-file", str(token_file)], {}),
        ([], {"PLATE_BRIDGE_SERVE_TOKEN": secret}),
    ):
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "bridge.cli", "serve", "--port", str(port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment(**env),
        )
        try:
            wait_for_port(port, timeout=60)
            # /v1/statistics/ always needs the token; the SDK paths refuse a wrong one (a request
            # without any is answered there, as an on-premise SDK answers it).
            url = f"http://127.0.0.1:{port}/v1/statistics/"
            # The port is bound before the engine loads: the first answer may take the load time.
            assert requests.get(url, timeout=60).status_code == 403
            assert (
                requests.get(url, headers={"Authorization": f"Token {secret}"}, timeout=60).status_code == 200
            )
            info = f"http://127.0.0.1:{port}/info/"
            assert requests.get(info, headers={"Authorization": "Token wrong"}, timeout=60).status_code == 403
            command_line = Path(f"/proc/{process.pid}/cmdline").read_bytes()
            assert secret.encode() not in command_line
        finally:
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=30)


# --- 7. the licence ---------------------------------------------------------------------------------


def test_the_licence_is_the_whole_mit_text() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 plate-bridge contributors\n")
    for words in ("Permission is hereby granted, free of charge", 'THE SOFTWARE IS PROVIDED "AS IS"'):
        assert words in text
