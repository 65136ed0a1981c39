"""The Plate Recognizer API emulator, exercised over real HTTP on 127.0.0.1 with requests."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from tests.emulator import DEFAULT_SHARED_DIR, ReaderEmulator

SHARED = DEFAULT_SHARED_DIR
RESPONSES = SHARED / "data" / "responses"
IMAGES_TSV = RESPONSES / "images" / "IMAGES.tsv"
EMULATOR_SCRIPT = Path(__file__).with_name("emulator.py")
TOKEN = "test-token"
TIMEOUT = 5.0  # every request is bounded, so no test can hang on the emulator
THROTTLED = {"detail": "Request was throttled. Expected available in 1 second.", "status_code": 429}
SDK_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}$")

needs_shared = pytest.mark.skipif(
    not IMAGES_TSV.is_file(), reason=f"the shared payloads are missing ({IMAGES_TSV} not found)"
)


def make_jpeg(color: str = "gray") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buffer, "JPEG")
    return buffer.getvalue()


JPEG = make_jpeg()


@pytest.fixture
def emulator() -> Iterator[ReaderEmulator]:
    with ReaderEmulator(token=TOKEN) as running:
        yield running


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as authorized:
        authorized.headers["Authorization"] = f"Token {TOKEN}"
        yield authorized


def post_image(
    session: requests.Session, url: str, image: bytes = JPEG, filename: str = "car.jpg", **data: Any
) -> requests.Response:
    return session.post(url, files={"upload": (filename, image, "image/jpeg")}, data=data, timeout=TIMEOUT)


def test_file_upload_is_recorded_and_answered(emulator: ReaderEmulator, session: requests.Session) -> None:
    response = post_image(
        session,
        emulator.url,
        regions=["gb", "it", "us-ca"],
        camera_id="gate-1",
        timestamp="2024-05-01T10:00:00Z",
        mmc="false",
        config='{"mode": "fast"}',
    )

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["filename"] == "car.jpg"
    assert body["camera_id"] == "gate-1"
    assert body["timestamp"] == "2024-05-01T10:00:00Z"
    assert body["results"] and isinstance(body["results"][0]["plate"], str)
    [record] = emulator.requests
    assert (record.method, record.path, record.status) == ("POST", "/v1/plate-reader/", 200)
    assert record.headers["authorization"] == f"Token {TOKEN}"
    assert record.fields["regions"] == ["gb", "it", "us-ca"]
    assert record.fields["config"] == ['{"mode": "fast"}']
    assert (record.upload, record.upload_kind, record.upload_filename) == (JPEG, "file", "car.jpg")
    assert record.upload_content_type == "image/jpeg"
    assert emulator.calls == 1


def test_unknown_image_without_camera_or_timestamp_gets_generated_values(
    emulator: ReaderEmulator, session: requests.Session
) -> None:
    response = session.post(emulator.url, data={"upload": base64.b64encode(JPEG).decode()}, timeout=TIMEOUT)

    body = response.json()
    assert body["camera_id"] is None
    assert re.fullmatch(r"\d{4}_\w{5}_upload\.jpg", body["filename"])
    assert datetime.fromisoformat(body["timestamp"]).tzinfo == UTC
    assert body["timestamp"].endswith("Z")


@pytest.mark.parametrize(
    "how",
    ["multipart text part", "urlencoded data URI", "multipart data URI", "json body"],
)
def test_base64_uploads_are_decoded(emulator: ReaderEmulator, session: requests.Session, how: str) -> None:
    text = base64.b64encode(JPEG).decode()
    regions = ["fr", "gb"]
    if how == "multipart text part":
        response = session.post(
            emulator.url, files={"upload": (None, text)}, data={"regions": regions}, timeout=TIMEOUT
        )
    elif how == "urlencoded data URI":
        data = {"upload": "data:image/jpeg;base64," + text, "regions": regions}
        response = session.post(emulator.url, data=data, timeout=TIMEOUT)
    elif how == "multipart data URI":
        files = {"upload": (None, "data:image/jpeg;base64," + text)}
        response = session.post(emulator.url, files=files, data={"regions": regions}, timeout=TIMEOUT)
    else:
        response = session.post(emulator.url, json={"upload": text, "regions": regions}, timeout=TIMEOUT)

    assert response.status_code == 200, response.text
    [record] = emulator.requests
    assert (record.upload, record.upload_kind, record.upload_filename) == (JPEG, "base64", None)
    assert record.fields["regions"] == regions


@pytest.mark.parametrize("transfer", ["content-length", "chunked"])
def test_multipart_boundary_and_part_headers_are_honoured(
    emulator: ReaderEmulator, session: requests.Session, transfer: str
) -> None:
    boundary = "x-- tricky:=boundary"
    # Image bytes that hold a prefix of the delimiter and a blank line must come back unchanged.
    image = JPEG + b"\r\n--x-- tricky:=bound\r\n\r\nmore"
    body = b"".join(
        [
            b"a preamble that must be ignored\r\n",
            f"--{boundary}\r\n".encode(),
            b'Content-Disposition: form-data; name="camera_id"\r\n',
            b"Content-Type: text/plain; charset=latin-1\r\n\r\n",
            "café".encode("latin-1"),
            f"\r\n--{boundary}  \r\n".encode(),  # transport padding after a delimiter is allowed
            b"Content-Disposition: form-data; name=\"upload\"; filename*=UTF-8''voiture%C3%A9.jpg\r\n",
            b"Content-Type: image/jpeg\r\n\r\n",
            image,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    headers = {"Content-Type": f'multipart/form-data; boundary="{boundary}"'}
    data: bytes | Iterator[bytes] = body if transfer == "content-length" else iter([body[:100], body[100:]])

    response = session.post(emulator.url, data=data, headers=headers, timeout=TIMEOUT)

    assert response.status_code == 200, response.text
    assert response.json()["filename"] == "voitureé.jpg"
    assert response.json()["camera_id"] == "café"
    [record] = emulator.requests
    assert record.upload == image
    assert record.upload_filename == "voitureé.jpg"


@pytest.mark.parametrize(
    ("authorization", "expected"),
    [
        (None, {"detail": "Authentication credentials were not provided."}),
        ("Bearer test-token", {"detail": "Authentication credentials were not provided."}),
        ("Token wrong", {"detail": "Invalid token.", "status_code": 403}),
        ("Token", {"detail": "Invalid token header. No credentials provided.", "status_code": 403}),
    ],
)
def test_token_is_checked_on_every_endpoint(
    emulator: ReaderEmulator, authorization: str | None, expected: dict[str, Any]
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    files = {"upload": ("car.jpg", JPEG)}

    answers = [
        requests.post(emulator.url, files=files, headers=headers, timeout=TIMEOUT),
        requests.post(emulator.sdk_url, files=files, headers=headers, timeout=TIMEOUT),
        requests.get(emulator.base_url + "/info/", headers=headers, timeout=TIMEOUT),
        requests.get(emulator.base_url + "/v1/statistics/", headers=headers, timeout=TIMEOUT),
    ]

    assert [answer.status_code for answer in answers] == [403] * 4
    assert all(answer.json() == expected for answer in answers)
    assert emulator.billed_calls == 0


def test_no_token_configured_accepts_any_client() -> None:
    with ReaderEmulator() as open_emulator:
        response = requests.post(open_emulator.url, files={"upload": ("a.jpg", JPEG)}, timeout=TIMEOUT)
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("files", "data", "expected"),
    [
        (None, {"regions": "gb"}, {"upload": ["No file was submitted."]}),
        ({"upload": ("empty.jpg", b"")}, None, {"upload": ["The submitted file is empty."]}),
        ({"upload": ("car.jpg", JPEG)}, {"config": "{not json"}, {"config": ["Value must be valid JSON."]}),
        ({"upload": ("car.jpg", JPEG)}, {"mmc": "maybe"}, {"mmc": ["Must be a valid boolean."]}),
    ],
)
def test_invalid_requests_get_400_field_errors(
    emulator: ReaderEmulator,
    session: requests.Session,
    files: dict[str, Any] | None,
    data: dict[str, str] | None,
    expected: dict[str, Any],
) -> None:
    response = session.post(emulator.url, files=files, data=data, timeout=TIMEOUT)

    assert response.status_code == 400
    assert response.json() == expected
    assert emulator.requests[0].status == 400


@pytest.mark.parametrize("upload", ["file", "base64", "bad base64"])
def test_bytes_that_are_not_an_image_get_400_detail(
    emulator: ReaderEmulator, session: requests.Session, upload: str
) -> None:
    gif = b"GIF89a" + bytes(100)
    if upload == "file":
        response = session.post(emulator.url, files={"upload": ("a.gif", gif)}, timeout=TIMEOUT)
    else:
        text = base64.b64encode(gif).decode() if upload == "base64" else "not*base64!"
        response = session.post(emulator.url, data={"upload": text}, timeout=TIMEOUT)

    assert response.status_code == 400
    assert response.json()["detail"].startswith("Upload a valid image.")


@pytest.mark.parametrize("size", [5_000, 400_000])  # parsed, then drained without being kept
def test_oversized_upload_gets_413_and_the_connection_stays_usable(
    session: requests.Session, size: int
) -> None:
    with ReaderEmulator(token=TOKEN, max_upload_bytes=4096) as small:
        too_large = post_image(session, small.url, image=JPEG[:3] + bytes(size))
        then = post_image(session, small.url)

    assert too_large.status_code == 413
    body = too_large.json()
    assert body["status_code"] == 413
    assert "4096" in body["detail"]
    assert then.status_code == 200


def test_scripted_429_with_and_without_retry_after(
    emulator: ReaderEmulator, session: requests.Session
) -> None:
    emulator.fail_next(429, retry_after=3)
    emulator.fail_next(429)

    with_header = post_image(session, emulator.url)
    without_header = post_image(session, emulator.url)
    recovered = post_image(session, emulator.url)

    assert with_header.status_code == 429
    assert with_header.headers["Retry-After"] == "3"
    assert with_header.json() == {
        "detail": "Request was throttled. Expected available in 3 seconds.",
        "status_code": 429,
    }
    assert without_header.status_code == 429
    assert "Retry-After" not in without_header.headers
    assert without_header.json() == THROTTLED
    assert recovered.status_code == 200


@pytest.mark.parametrize(
    ("status", "expected_json", "expected_text"),
    [
        (403, {"detail": "Invalid token.", "status_code": 403}, None),
        (413, {"detail": "Upload too large.", "status_code": 413}, None),
        (500, None, "<h1>Server Error (500)</h1>"),
        (502, None, "<h1>502 Bad Gateway</h1>"),
        (503, None, "<h1>503 Service Temporarily Unavailable</h1>"),
    ],
)
def test_scripted_failures_use_the_real_bodies(
    emulator: ReaderEmulator,
    session: requests.Session,
    status: int,
    expected_json: dict[str, Any] | None,
    expected_text: str | None,
) -> None:
    emulator.fail_next(status, times=2)

    answers = [post_image(session, emulator.url) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [status, status, 200]
    if expected_json is not None:
        assert answers[0].json() == expected_json
    else:
        assert answers[0].headers["Content-Type"].startswith("text/html")
        assert expected_text in answers[0].text
    assert [record.status for record in emulator.requests] == [status, status, 200]
    assert emulator.calls == 3


def test_scripted_custom_body(emulator: ReaderEmulator, session: requests.Session) -> None:
    emulator.fail_next(400, body={"detail": "custom"})
    assert post_image(session, emulator.url).json() == {"detail": "custom"}


def test_delay_makes_the_client_time_out(emulator: ReaderEmulator, session: requests.Session) -> None:
    emulator.delay_next(1.0)

    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.post(emulator.url, files={"upload": ("car.jpg", JPEG)}, timeout=0.25)
    assert time.monotonic() - started < 0.9

    assert post_image(session, emulator.url).status_code == 200


def test_drop_closes_the_connection_without_an_answer(
    emulator: ReaderEmulator, session: requests.Session
) -> None:
    emulator.drop_next()

    with pytest.raises(requests.exceptions.ConnectionError):
        post_image(session, emulator.url)
    recovered = post_image(session, emulator.url)

    assert recovered.status_code == 200
    assert [record.status for record in emulator.requests] == [None, 200]


def test_rate_limit_answers_429_past_the_calls_per_second(session: requests.Session) -> None:
    with ReaderEmulator(token=TOKEN, max_calls_per_second=4) as limited:
        burst = [post_image(session, limited.url) for _ in range(6)]
        throttled = burst[-1]
        time.sleep(float(throttled.headers["Retry-After"]) + 0.05)
        after_waiting = post_image(session, limited.url)

    assert [answer.status_code for answer in burst] == [200] * 4 + [429] * 2
    assert throttled.json() == THROTTLED
    assert throttled.headers["Retry-After"] == "1"
    assert after_waiting.status_code == 200


@needs_shared
def test_paired_images_replay_their_real_response(
    emulator: ReaderEmulator, session: requests.Session
) -> None:
    with IMAGES_TSV.open(encoding="utf-8", newline="") as table:
        rows = list(csv.DictReader(table, delimiter="\t"))
    assert rows

    for row in rows:
        image = (IMAGES_TSV.parent / row["file"]).read_bytes()
        expected = json.loads((RESPONSES / row["paired_response"]).read_text(encoding="utf-8"))

        body = post_image(session, emulator.url, image=image, filename=row["file"], camera_id="cam-7").json()

        assert body["results"] == expected["results"]
        assert body["filename"] == row["file"]
        assert body["camera_id"] == "cam-7"
        assert body["timestamp"] != expected["timestamp"]
    assert emulator.uses_shared_data


@needs_shared
def test_mmc_true_replays_the_make_model_colour_payload(
    emulator: ReaderEmulator, session: requests.Session
) -> None:
    body = post_image(session, emulator.url, mmc="true").json()
    assert "model_make" in body["results"][0]
    assert "color" in body["results"][0]


def test_without_shared_data_a_built_in_response_is_served(tmp_path: Path, session: requests.Session) -> None:
    with ReaderEmulator(token=TOKEN, shared_dir=tmp_path) as bare:
        response = post_image(session, bare.url, camera_id="c")
        assert not bare.uses_shared_data

    assert response.status_code == 200
    assert response.json()["results"][0]["plate"]
    assert response.json()["camera_id"] == "c"


def test_set_response_overrides_one_image(emulator: ReaderEmulator, session: requests.Session) -> None:
    other = make_jpeg("red")
    emulator.set_response(JPEG, {"processing_time": 1.0, "results": [], "version": 1})
    emulator.set_response(other, "not json at all")

    empty = post_image(session, emulator.url, camera_id="x").json()
    raw = post_image(session, emulator.url, image=other)

    assert empty["results"] == []
    assert (empty["camera_id"], empty["filename"]) == ("x", "car.jpg")
    assert raw.status_code == 200
    assert raw.text == "not json at all"


def test_sdk_endpoint_adds_usage_and_an_sdk_timestamp(
    emulator: ReaderEmulator, session: requests.Session
) -> None:
    first = post_image(session, emulator.sdk_url).json()
    second = post_image(session, emulator.sdk_url, timestamp="2025-05-30 13:59:09.481824").json()

    assert SDK_TIMESTAMP.match(first["timestamp"])
    assert first["usage"]["calls"] == 1
    assert second["usage"]["calls"] == 2
    assert second["timestamp"] == "2025-05-30 13:59:09.481824"
    assert "usage" not in post_image(session, emulator.url).json()


def test_sdk_mode_answers_the_plate_reader_path_the_sdk_way(session: requests.Session) -> None:
    with ReaderEmulator(token=TOKEN, sdk=True) as sdk:
        body = post_image(session, sdk.url).json()

    assert body["usage"]["calls"] == 1
    assert SDK_TIMESTAMP.match(body["timestamp"])


def test_info_and_statistics_count_the_recognitions(
    emulator: ReaderEmulator, session: requests.Session
) -> None:
    emulator.fail_next(500)
    for _ in range(4):
        post_image(session, emulator.url)

    info = session.get(emulator.base_url + "/info/", timeout=TIMEOUT).json()
    statistics = session.get(emulator.base_url + "/v1/statistics/", timeout=TIMEOUT).json()

    assert emulator.calls == 4
    assert emulator.billed_calls == 3
    assert info["total_calls"] == info["usage"]["calls"] == 3
    assert {"version", "license_key", "webhooks"} <= info.keys()
    now = datetime.now(UTC)
    assert statistics["usage"]["calls"] == 3
    assert (statistics["usage"]["month"], statistics["usage"]["year"]) == (now.month, now.year)
    assert statistics["total_calls"] == 2500


def test_unknown_paths_and_wrong_methods(emulator: ReaderEmulator, session: requests.Session) -> None:
    wrong_method = session.get(emulator.url, timeout=TIMEOUT)
    missing = session.post(emulator.base_url + "/v1/plate-reader", timeout=TIMEOUT)

    assert wrong_method.status_code == 405
    assert wrong_method.json() == {"detail": 'Method "GET" not allowed.'}
    assert missing.status_code == 404
    assert emulator.calls == 0


def test_reset_forgets_records_scripts_and_counts(
    emulator: ReaderEmulator, session: requests.Session
) -> None:
    post_image(session, emulator.url)
    emulator.fail_next(500)
    emulator.reset()

    assert (emulator.requests, emulator.calls, emulator.billed_calls) == ([], 0, 0)
    assert post_image(session, emulator.url).status_code == 200


def test_concurrent_requests_from_8_threads_are_all_answered(emulator: ReaderEmulator) -> None:
    def client(worker: int) -> list[tuple[str, str | None]]:
        seen = []
        with requests.Session() as own:
            own.headers["Authorization"] = f"Token {TOKEN}"
            for index in range(12):
                camera = f"cam-{worker}-{index}"
                response = post_image(
                    own, emulator.url, camera_id=camera, regions=[f"r{worker}", f"s{index}"]
                )
                assert response.status_code == 200
                seen.append((camera, response.json()["camera_id"]))
        return seen

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = [pair for pairs in pool.map(client, range(8)) for pair in pairs]

    assert all(sent == answered for sent, answered in results)
    assert emulator.calls == 96
    records = emulator.requests
    assert len(records) == 96
    for record in records:
        _, worker, index = record.fields["camera_id"][0].split("-")
        assert record.fields["regions"] == [f"r{worker}", f"s{index}"]
        assert record.status == 200


def test_fast_mode_answers_one_precomputed_response() -> None:
    with ReaderEmulator(token=TOKEN, fast=True) as fast, requests.Session() as client:
        refused = client.post(fast.url, data=b"anything", timeout=TIMEOUT)
        client.headers["Authorization"] = f"Token {TOKEN}"
        first = client.post(fast.url, data=b"not even multipart", timeout=TIMEOUT)
        second = post_image(client, fast.url, camera_id="ignored")
        records = fast.requests

    assert refused.status_code == 403
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert first.json()["results"]
    assert [record.upload for record in records] == [None] * 3
    assert records[0].received_at <= records[1].received_at <= records[2].received_at


def test_service_time_slows_every_recognition(session: requests.Session) -> None:
    with ReaderEmulator(token=TOKEN, service_time=0.3) as slow:
        started = time.monotonic()
        response = post_image(session, slow.url)
        elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert 0.3 <= elapsed < 2.0


def test_stop_is_prompt_with_keep_alive_and_sleeping_handlers(session: requests.Session) -> None:
    running = ReaderEmulator(token=TOKEN).start()
    post_image(session, running.url)  # leaves a keep-alive connection open
    running.delay_next(30)
    outcome: list[object] = []

    def slow_request() -> None:
        try:
            with requests.Session() as own:
                outcome.append(post_image(own, running.url).status_code)
        except requests.RequestException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=slow_request)
    worker.start()
    deadline = time.monotonic() + 2
    while running.calls < 2 and time.monotonic() < deadline:
        time.sleep(0.01)

    started = time.monotonic()
    running.stop()
    worker.join(2)

    assert time.monotonic() - started < 1.5
    assert not worker.is_alive()
    assert outcome
    with pytest.raises(RuntimeError):
        _ = running.base_url


def test_script_mode_prints_ready_and_exits_on_sigterm() -> None:
    command = [sys.executable, str(EMULATOR_SCRIPT), "--port", "0", "--token", TOKEN, "--fast"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            ready, _, _ = select.select([process.stdout], [], [], 10)
            assert ready, "the emulator printed nothing within 10 s"
            line = process.stdout.readline().strip()
            match = re.fullmatch(r"READY (http://127\.0\.0\.1:\d+)", line)
            assert match, line

            response = requests.post(
                match.group(1) + "/v1/plate-reader/",
                files={"upload": ("car.jpg", JPEG)},
                headers={"Authorization": f"Token {TOKEN}"},
                timeout=TIMEOUT,
            )
            assert response.status_code == 200

            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=5) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=5)
