"""`plate-bridge serve` under a real uvicorn on loopback, driven by the clients that will point at it."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import re
import resource
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

pytest.importorskip("starlette", reason="plate-bridge serve needs the [serve] extra: starlette is missing")
uvicorn = pytest.importorskip(
    "uvicorn", reason="plate-bridge serve needs the [serve] extra: uvicorn is missing"
)
if importlib.util.find_spec("python_multipart") is None and importlib.util.find_spec("multipart") is None:
    pytest.skip(
        "plate-bridge serve needs the [serve] extra: python-multipart is missing", allow_module_level=True
    )

from bridge.core import schemas  # noqa: E402
from bridge.core.errors import (  # noqa: E402
    PayloadNotImage,
    ReaderForbidden,
    ReaderPayloadTooLarge,
    ReaderRateLimited,
    ReaderRejected,
)
from bridge.imaging.images import MAX_IMAGE_PIXELS, sniff_format  # noqa: E402
from bridge.reader import PlateReader  # noqa: E402
from bridge.server import create_app  # noqa: E402
from bridge.server.compat import NO_MMC, NO_UPLOAD_URL  # noqa: E402
from bridge.server.runner import (  # noqa: E402
    SERVE_HELP,
    TOKEN_HELP,
    startup_banner,
    uvicorn_config,
)
from tests import images  # noqa: E402
from tests.conftest import EXAMPLES, free_port, loaded_local_engine  # noqa: E402

TOKEN = "serve-test-token"
NO_CREDENTIALS = {"detail": "Authentication credentials were not provided."}
MAX_UPLOAD_BYTES = 256 * 1024  # the example images (~100 KiB) fit; noisy_jpeg() does not
ENGINE_THREADS = 4
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
REQUEST_TIMEOUT = 10.0
SDK_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
CLOUD_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


class RecordingEngine:
    """A deterministic engine: one plate whose text echoes the camera id, region echoing the first asked.

    It says it reads make, model and colour, so `mmc=true` reaches it (the offline engine does not).
    """

    supports_mmc = True

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[dict[str, Any]] = []
        self.loads = 0
        self.running = 0
        self.most_running = 0
        self.release = threading.Event()
        self.release.set()  # tests that need a stuck engine clear it
        self._lock = threading.Lock()

    def load(self) -> None:
        self.loads += 1

    def read(
        self,
        image: bytes,
        *,
        regions: Sequence[str] = (),
        camera_id: str | None = None,
        timestamp: str | None = None,
        mmc: bool = False,
        config: Mapping[str, Any] | None = None,
        filename: str | None = None,
    ) -> dict[str, Any]:
        if sniff_format(image) is None:
            raise PayloadNotImage("not a JPEG or PNG")
        with self._lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            self.calls.append(
                {
                    "size": len(image),
                    "regions": tuple(regions),
                    "camera_id": camera_id,
                    "timestamp": timestamp,
                    "mmc": mmc,
                    "config": config,
                    "filename": filename,
                    "thread": threading.get_ident(),
                }
            )
        try:
            time.sleep(self.delay)
            self.release.wait(STOP_TIMEOUT)
        finally:
            with self._lock:
                self.running -= 1
        plate = re.sub(r"[^a-z0-9]", "", (camera_id or "nocamera").lower())
        return {
            "processing_time": 1.5,
            "results": [
                {
                    "box": {"xmin": 10, "ymin": 20, "xmax": 110, "ymax": 50},
                    "plate": plate,
                    "score": 0.9,
                    "dscore": 0.8,
                    "region": {"code": regions[0] if regions else "unknown", "score": 0.7},
                    "candidates": [{"plate": plate, "score": 0.9}],
                }
            ],
            "filename": filename,
            "version": 1,
            "camera_id": camera_id,
            "timestamp": timestamp,
        }


@dataclass
class Served:
    """The app running under uvicorn in a thread of the test, on 127.0.0.1."""

    engine: Any
    server: Any
    thread: threading.Thread
    port: int
    app: Any

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.base_url + "/v1/plate-reader/"

    @property
    def sdk_url(self) -> str:
        return self.base_url + "/alpr"


def start(engine: Any, **options: Any) -> Served:
    port = free_port()
    app = create_app(engine, **options)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    # uvicorn installs no signal handlers outside the main thread, so it can live in this one.
    thread = threading.Thread(target=server.run, name=f"serve-test-{port}", daemon=True)
    thread.start()
    give_up = time.monotonic() + START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > give_up:
            server.should_exit = True
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
        time.sleep(0.02)
    return Served(engine, server, thread, port, app)


def stop(served: Served) -> None:
    release = getattr(served.engine, "release", None)
    if release is not None:
        release.set()  # a blocked test engine would hold uvicorn's graceful shutdown
    served.server.should_exit = True
    served.thread.join(STOP_TIMEOUT)
    assert not served.thread.is_alive(), "uvicorn did not stop"


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    running = start(
        RecordingEngine(delay=0.05),
        token=TOKEN,
        max_upload_bytes=MAX_UPLOAD_BYTES,
        engine_threads=ENGINE_THREADS,
    )
    try:
        yield running
    finally:
        stop(running)


@pytest.fixture
def reader(served: Served) -> Iterator[PlateReader]:
    with PlateReader(served.url, token=TOKEN, timeout=REQUEST_TIMEOUT) as client:
        yield client


@pytest.fixture(scope="module")
def photo() -> bytes:
    example = EXAMPLES / "images" / "gb_rear_yellow.jpg"
    return example.read_bytes() if example.is_file() else images.jpeg(640, 480)


def peak_rss_mb() -> float:
    """The most memory this process has held so far (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


def last_call(served: Served, camera_id: str) -> dict[str, Any]:
    found = [call for call in served.engine.calls if call["camera_id"] == camera_id]
    assert found, f"the engine was not called for camera {camera_id!r}"
    return found[-1]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- (a) the project's own client -------------------------------------------------------------------


def test_plate_reader_multipart_file(served: Served, reader: PlateReader, photo: bytes) -> None:
    camera = unique("gate")
    body = reader.read(
        photo,
        regions=["gb", "IT", "gb"],
        camera_id=camera,
        timestamp="2024-03-01T08:15:00Z",
        mmc=True,
        config={"mode": "fast", "region": "strict"},
        filename="gate.jpg",
    )
    schemas.validate("plate-reader-response", body)
    assert body["camera_id"] == camera
    assert body["results"][0]["plate"] == camera.replace("-", "")
    assert body["results"][0]["region"]["code"] == "gb"
    assert body["timestamp"] == "2024-03-01T08:15:00.000000Z"
    # The cloud names the stored upload HHMM_xxxxx_<client name>.
    assert re.fullmatch(r"\d{4}_[A-Za-z0-9]{5}_gate\.jpg", body["filename"])
    assert "usage" not in body
    call = last_call(served, camera)
    assert call["size"] == len(photo)
    assert call["regions"] == ("gb", "it")
    assert call["mmc"] is True
    assert call["config"] == {"mode": "fast", "region": "strict"}


def test_plate_reader_base64_upload_to_sdk_endpoint(served: Served) -> None:
    camera = unique("yard")
    png = images.png()
    with PlateReader(served.sdk_url, token=TOKEN, upload_base64=True, timeout=REQUEST_TIMEOUT) as client:
        body = client.read(png, regions=["us-ca"], camera_id=camera, mmc=False)
    schemas.validate("plate-reader-response", body)
    assert body["camera_id"] == camera
    assert body["results"][0]["region"]["code"] == "us-ca"
    # The SDK's answer: its timestamp format, the client's file name, and the calls used.
    assert SDK_TIMESTAMP.match(body["timestamp"])
    assert body["filename"] == "upload.png"
    assert body["usage"]["calls"] >= 1
    assert last_call(served, camera)["size"] == len(png)


def test_plate_reader_info_and_statistics(reader: PlateReader) -> None:
    assert reader.info()["version"]
    assert reader.statistics()["usage"]["calls"] >= 0


def test_a_token_sent_must_be_right_and_sdk_clients_send_none(served: Served, photo: bytes) -> None:
    calls = len(served.engine.calls)
    with (
        PlateReader(served.url, token="not-the-token", timeout=REQUEST_TIMEOUT) as client,
        pytest.raises(ReaderForbidden) as wrong,
    ):
        client.read(photo)
    assert wrong.value.status_code == 403
    response = requests.post(
        served.url, files={"upload": photo}, headers=auth("wrong"), timeout=REQUEST_TIMEOUT
    )
    assert (response.status_code, response.json()) == (403, {"detail": "Invalid token.", "status_code": 403})
    for path in ("/alpr", "/info/", "/v1/statistics/"):
        method = requests.post if path == "/alpr" else requests.get
        refused = method(served.base_url + path, headers=auth("wrong"), timeout=REQUEST_TIMEOUT)
        assert refused.status_code == 403
    assert len(served.engine.calls) == calls, "a refused request reached the engine"
    # Without an Authorization header a request is an SDK client's, and an SDK asks for no token.
    camera = unique("sdk")
    for path in ("/v1/plate-reader/", "/alpr"):
        response = requests.post(
            served.base_url + path,
            files={"upload": photo},
            data={"camera_id": camera},
            timeout=REQUEST_TIMEOUT,
        )
        assert response.status_code == 200, response.text
    assert requests.get(served.base_url + "/info/", timeout=REQUEST_TIMEOUT).status_code == 200
    # The cloud-only path keeps the cloud's rule.
    statistics = requests.get(served.base_url + "/v1/statistics/", timeout=REQUEST_TIMEOUT)
    assert (statistics.status_code, statistics.json()) == (403, NO_CREDENTIALS)


def test_the_token_can_be_required_everywhere(photo: bytes) -> None:
    running = start(RecordingEngine(), token=TOKEN, open_sdk_paths=False)
    try:
        for path in ("/v1/plate-reader/", "/alpr"):
            response = requests.post(
                running.base_url + path, files={"upload": photo}, timeout=REQUEST_TIMEOUT
            )
            assert (response.status_code, response.json()) == (403, NO_CREDENTIALS)
        assert requests.get(running.base_url + "/info/", timeout=REQUEST_TIMEOUT).status_code == 403
        assert running.engine.calls == []
    finally:
        stop(running)


def test_upload_over_the_limit_is_413(served: Served, reader: PlateReader) -> None:
    calls = len(served.engine.calls)
    # Inside the body limit, but the image itself is over max_upload_bytes.
    just_over = images.jpeg() + bytes(MAX_UPLOAD_BYTES)
    with pytest.raises(ReaderPayloadTooLarge) as image_too_large:
        reader.read(just_over)
    assert image_too_large.value.status_code == 413
    # Far over: refused on Content-Length before the body is read; the client still gets the 413.
    huge = images.noisy_jpeg()
    assert len(huge) > 4 * MAX_UPLOAD_BYTES
    with pytest.raises(ReaderPayloadTooLarge):
        reader.read(huge)
    with (
        PlateReader(served.url, token=TOKEN, upload_base64=True, timeout=REQUEST_TIMEOUT) as client,
        pytest.raises(ReaderPayloadTooLarge),
    ):
        client.read(huge)
    # The same connection keeps working after a refused body.
    assert reader.read(images.jpeg(), camera_id="after-413")["camera_id"] == "after-413"
    assert len(served.engine.calls) == calls + 1


def test_streamed_body_over_the_limit_is_413(served: Served) -> None:
    # A chunked body has no Content-Length: the limit is enforced as the chunks arrive.
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="upload"; filename="big.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    chunk = b"\xff\xd8\xff" + bytes(64 * 1024 - 3)

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(16):  # 1 MiB, four times the limit
            yield chunk
        yield tail

    response = requests.post(
        served.url,
        data=body(),
        headers={**auth(), "Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=REQUEST_TIMEOUT,
    )
    assert response.status_code == 413
    schemas.validate("error-response", response.json())


def test_an_image_claiming_too_many_pixels_is_413_before_the_engine(served: Served) -> None:
    bomb = images.png_bomb(30000, 30000)  # ~100 kB on the wire, 2.7 GB decoded
    camera = unique("bomb")
    before = peak_rss_mb()
    for url in (served.url, served.sdk_url):
        response = requests.post(
            url,
            files={"upload": ("bomb.png", bomb)},
            data={"camera_id": camera},
            headers=auth(),
            timeout=REQUEST_TIMEOUT,
        )
        assert response.status_code == 413, response.text
        schemas.validate("error-response", response.json())
        assert response.json()["detail"] == (
            f"Image too large: 30000x30000 pixels, the limit is {MAX_IMAGE_PIXELS} pixels."
        )
    # A JPEG's frame header is read the same way.
    response = requests.post(
        served.url,
        files={"upload": images.jpeg_claiming(65000, 60000)},
        headers=auth(),
        timeout=REQUEST_TIMEOUT,
    )
    assert response.status_code == 413 and "65000x60000 pixels" in response.json()["detail"]
    assert not [call for call in served.engine.calls if call["camera_id"] == camera]
    assert peak_rss_mb() - before < 200


def test_bad_requests_are_400_with_field_errors(served: Served, reader: PlateReader, photo: bytes) -> None:
    calls = len(served.engine.calls)

    def post(headers: Mapping[str, str] | None = None, **kwargs: Any) -> requests.Response:
        return requests.post(
            served.url, headers={**auth(), **(headers or {})}, timeout=REQUEST_TIMEOUT, **kwargs
        )

    missing = post(data={"regions": "gb"})
    assert (missing.status_code, missing.json()) == (400, {"upload": ["No file was submitted."]})
    nothing = requests.post(served.url, headers=auth(), timeout=REQUEST_TIMEOUT)
    assert (nothing.status_code, nothing.json()) == (400, {"upload": ["No file was submitted."]})
    empty = post(files={"upload": ("empty.jpg", b"", "image/jpeg")})
    assert (empty.status_code, empty.json()) == (400, {"upload": ["The submitted file is empty."]})
    not_image = post(files={"upload": ("notes.txt", b"plain text, not a picture", "text/plain")})
    assert not_image.status_code == 400
    assert not_image.json()["detail"].startswith("Upload a valid image.")
    schemas.validate("error-response", not_image.json())
    bad_base64 = post(data={"upload": "this is not base64!"})
    assert bad_base64.status_code == 400
    bad_region = post(files={"upload": photo}, data={"regions": ["gb", "zz"]})
    assert bad_region.status_code == 400
    assert "zz" in bad_region.json()["regions"][0]
    bad_config = post(files={"upload": photo}, data={"config": "{not json"})
    assert (bad_config.status_code, bad_config.json()) == (400, {"config": ["Value must be valid JSON."]})
    not_object = post(files={"upload": photo}, data={"config": "[1, 2]"})
    assert not_object.json() == {"config": ["Value must be a JSON object."]}
    bad_mmc = post(files={"upload": photo}, data={"mmc": "maybe"})
    assert bad_mmc.json() == {"mmc": ["Must be a valid boolean."]}
    bad_time = post(files={"upload": photo}, data={"timestamp": "yesterday"})
    assert list(bad_time.json()) == ["timestamp"]
    several = post(data={"regions": "zz", "mmc": "maybe"})
    assert set(several.json()) == {"upload", "regions", "mmc"}
    wrong_type = post(data=b"upload=x", headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415
    with pytest.raises(ReaderRejected) as rejected:
        reader.read(b"GIF89a not supported")
    assert rejected.value.status_code == 400
    assert len(served.engine.calls) == calls, "an invalid request reached the engine"


def test_unknown_paths_and_methods_answer_json(served: Served) -> None:
    missing = requests.get(served.base_url + "/nowhere/", timeout=REQUEST_TIMEOUT)
    assert (missing.status_code, missing.json()["detail"]) == (404, "Not found.")
    wrong = requests.get(served.url, headers=auth(), timeout=REQUEST_TIMEOUT)
    assert wrong.status_code == 405
    assert wrong.json()["detail"] == 'Method "GET" not allowed.'


# --- (b) the official plate_recognition.py, (c) a urlencoded form -----------------------------------


def test_official_script_request_shape(served: Served, tmp_path: Path, photo: bytes) -> None:
    """Built exactly as parkpow's plate_recognition.py builds it (the cloud branch, with a session)."""
    path = tmp_path / "car.jpg"
    path.write_bytes(photo)
    camera = unique("official")
    data = dict(regions=["gb", "it"], config=json.dumps({"mode": "fast"}))
    data["camera_id"] = camera
    data["mmc"] = True  # the script passes the bool: requests sends "True"
    session = requests.Session()
    session.headers.update({"Authorization": "Token " + TOKEN})
    with path.open("rb") as fp, session:
        fp.seek(0)
        response = session.post(served.url, files=dict(upload=fp), data=data, timeout=REQUEST_TIMEOUT)
    assert response.status_code == 200, response.text
    body = response.json()
    schemas.validate("plate-reader-response", body)
    assert body["camera_id"] == camera
    assert CLOUD_TIMESTAMP.match(body["timestamp"])
    assert body["filename"].endswith("_car.jpg")
    call = last_call(served, camera)
    assert (call["regions"], call["mmc"], call["config"]) == (("gb", "it"), True, {"mode": "fast"})
    # The script's SDK branch: sdk_url + "/v1/plate-reader/", no token header: answered as an SDK does.
    with path.open("rb") as fp:
        answered = requests.post(served.url, files=dict(upload=fp), data=data, timeout=REQUEST_TIMEOUT)
    assert answered.status_code == 200, answered.text


def test_urlencoded_base64_upload(served: Served) -> None:
    camera = unique("form")
    jpeg = images.jpeg()
    encoded = base64.b64encode(jpeg).decode()
    for upload in (encoded, "data:image/jpeg;base64," + encoded):
        response = requests.post(
            served.sdk_url,
            data={"upload": upload, "regions": ["fr", "de"], "camera_id": camera},
            headers=auth(),
            timeout=REQUEST_TIMEOUT,
        )
        assert response.status_code == 200, response.text
        assert response.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        body = response.json()
        schemas.validate("plate-reader-response", body)
        assert body["camera_id"] == camera
        assert last_call(served, camera)["regions"] == ("fr", "de")
        assert last_call(served, camera)["size"] == len(jpeg)
    # A client that forgot to escape `+` sends spaces; the image still decodes.
    careless = f"upload={encoded}&camera_id={camera}-raw"
    response = requests.post(
        served.url,
        data=careless,
        headers={**auth(), "Content-Type": "application/x-www-form-urlencoded"},
        timeout=REQUEST_TIMEOUT,
    )
    assert response.status_code == 200, response.text
    # And the JSON body DRF also accepts.
    response = requests.post(
        served.url,
        json={"upload": encoded, "regions": ["gb"], "camera_id": camera, "mmc": True, "config": {"a": 1}},
        headers=auth(),
        timeout=REQUEST_TIMEOUT,
    )
    assert response.status_code == 200, response.text
    assert last_call(served, camera)["config"] == {"a": 1}


# --- (d) concurrency, (e) counts --------------------------------------------------------------------


def test_concurrent_requests_each_get_their_own_answer(served: Served) -> None:
    served.engine.most_running = 0
    cameras = [unique(f"cam{index:02d}") for index in range(16)]

    def one(index: int) -> dict[str, Any]:
        with PlateReader(served.url, token=TOKEN, timeout=REQUEST_TIMEOUT) as client:
            return client.read(images.jpeg(text=f"N{index}"), camera_id=cameras[index], regions=["gb"])

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(16)))
    for camera, body in zip(cameras, answers, strict=True):
        assert body["camera_id"] == camera
        assert body["results"][0]["plate"] == camera.replace("-", "")
    # The engine ran in parallel, but never in more threads than the limiter allows.
    assert 1 < served.engine.most_running <= ENGINE_THREADS


def test_info_and_statistics_count_recognitions(served: Served, reader: PlateReader) -> None:
    def counts() -> tuple[int, int]:
        info = requests.get(served.base_url + "/info/", headers=auth(), timeout=REQUEST_TIMEOUT).json()
        statistics = requests.get(
            served.base_url + "/v1/statistics/", headers=auth(), timeout=REQUEST_TIMEOUT
        ).json()
        schemas.validate("sdk-info", info)
        schemas.validate("statistics", statistics)
        assert statistics["usage"]["month"] == time.gmtime().tm_mon
        return info["usage"]["calls"], statistics["usage"]["calls"]

    before = counts()
    for _ in range(3):
        reader.read(images.jpeg())
    with pytest.raises(ReaderRejected):
        reader.read(b"not an image")  # a refused request is not a recognition
    after = counts()
    assert (after[0] - before[0], after[1] - before[1]) == (3, 3)
    sdk = requests.post(
        served.sdk_url, files={"upload": images.jpeg()}, headers=auth(), timeout=REQUEST_TIMEOUT
    )
    assert sdk.json()["usage"]["calls"] == after[0] + 1


def test_engine_loaded_once_at_startup(served: Served) -> None:
    assert served.engine.loads == 1


def test_requests_past_max_pending_are_throttled() -> None:
    engine = RecordingEngine()
    engine.release.clear()  # every read blocks until released
    running = start(engine, engine_threads=1, max_pending=2)
    try:
        with ThreadPoolExecutor(2) as pool:
            held = [
                pool.submit(
                    requests.post, running.url, files={"upload": images.jpeg()}, timeout=REQUEST_TIMEOUT
                )
                for _ in range(2)
            ]
            # Both are counted as pending (one in the engine, one queued for it) once the server says so.
            state = running.app.state.serve
            give_up = time.monotonic() + START_TIMEOUT
            while (engine.running < 1 or state.pending < 2) and time.monotonic() < give_up:
                time.sleep(0.01)
            assert (engine.running, state.pending) == (1, 2)
            with (
                PlateReader(running.url, timeout=REQUEST_TIMEOUT) as client,
                pytest.raises(ReaderRateLimited) as throttled,
            ):
                client.read(images.jpeg())
            assert throttled.value.retry_after == 1
            engine.release.set()
            assert [future.result().status_code for future in held] == [200, 200]
    finally:
        stop(running)


def test_a_request_past_max_pending_is_throttled_before_its_body_is_read() -> None:
    engine = RecordingEngine()
    engine.release.clear()
    running = start(engine, engine_threads=1, max_pending=1)
    try:
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(
                requests.post, running.url, files={"upload": images.jpeg()}, timeout=REQUEST_TIMEOUT
            )
            give_up = time.monotonic() + START_TIMEOUT
            while engine.running < 1 and time.monotonic() < give_up:
                time.sleep(0.01)
            # A second upload announces 2 MB and sends a few bytes: it is answered at once, its body
            # never waited for (nor buffered) while no slot is free.
            with socket.create_connection(("127.0.0.1", running.port)) as sender:
                sender.sendall(
                    b"POST /v1/plate-reader/ HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 2000000\r\n\r\n--b\r\n"
                )
                sender.settimeout(REQUEST_TIMEOUT / 2)
                try:
                    answer = sender.recv(4096)
                except TimeoutError:
                    answer = b"(no answer while the body was incomplete)"
            assert answer.startswith(b"HTTP/1.1 429"), answer
            engine.release.set()
            assert held.result().status_code == 200
    finally:
        stop(running)


def test_connections_past_the_limit_are_answered_503() -> None:
    engine = RecordingEngine()
    config = uvicorn_config(create_app(engine, max_pending=1), host="127.0.0.1", port=free_port())
    limit = config.limit_concurrency
    assert limit is not None
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="serve-test-limit", daemon=True)
    thread.start()
    running = Served(engine, server, thread, config.port, config.app)
    give_up = time.monotonic() + START_TIMEOUT
    while not server.started and time.monotonic() < give_up:
        time.sleep(0.02)
    idle = []
    try:
        idle = [socket.create_connection(("127.0.0.1", running.port)) for _ in range(limit)]
        # uvicorn counts a connection once it is accepted: wait until it has taken them all.
        while len(server.server_state.connections) < limit and time.monotonic() < give_up:
            time.sleep(0.01)
        answer = requests.get(running.base_url + "/info/", timeout=REQUEST_TIMEOUT)
        assert answer.status_code == 503
    finally:
        for sock in idle:
            sock.close()
        stop(running)


# --- the real engine --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_served() -> Iterator[Served]:
    """`serve` as it ships: the offline engine, with a token."""
    engine = loaded_local_engine()
    running = start(engine, token=TOKEN)
    try:
        yield running
    finally:
        stop(running)


@pytest.fixture(scope="module")
def example() -> Path:
    examples = sorted((EXAMPLES / "images").glob("*.jpg"))
    if not examples:
        pytest.skip(f"no example image in {EXAMPLES / 'images'}")
    return examples[0]


def test_local_engine_behind_the_server(local_served: Served, example: Path) -> None:
    with PlateReader(local_served.url, token=TOKEN, timeout=120) as client:
        body = client.read(example.read_bytes(), camera_id="real", filename=example.name)
    schemas.validate("plate-reader-response", body)
    assert body["camera_id"] == "real"
    with PlateReader(local_served.sdk_url, token=TOKEN, timeout=120) as client, pytest.raises(ReaderRejected):
        client.read(b"\xff\xd8\xff not really a jpeg")
    # A decompression bomb against the real engine: refused from its header, nothing decoded.
    before = peak_rss_mb()
    with (
        PlateReader(local_served.url, token=TOKEN, timeout=120) as client,
        pytest.raises(ReaderPayloadTooLarge, match="30000x30000 pixels"),
    ):
        client.read(images.png_bomb(30000, 30000))
    assert peak_rss_mb() - before < 200


# --- the official plate_recognition.py against `serve --token` ---------------------------------------
# Its requests as parkpow/deep-license-plate-recognition's plate_recognition.py (MIT) sends them in SDK
# mode (`-s/--sdk-url BASE`), read from its source: recognition_api() posts to BASE + "/v1/plate-reader/"
# with requests, no Authorization header, `files=dict(upload=fp)` and
# `data=dict(regions=[...], config=json.dumps(engine_config))`, plus `camera_id` and `mmc` (the bool
# True, which requests sends as "True") when given; it exits on any status outside 200..300.


def official_script_call(
    sdk_url: str,
    image: Any,
    *,
    regions: Sequence[str] = (),
    engine_config: Mapping[str, Any] | None = None,
    camera_id: str | None = None,
    mmc: bool = False,
) -> requests.Response:
    data: dict[str, Any] = {"regions": list(regions), "config": json.dumps(dict(engine_config or {}))}
    if camera_id:
        data["camera_id"] = camera_id
    if mmc:
        data["mmc"] = mmc
    image.seek(0)
    return requests.post(
        sdk_url + "/v1/plate-reader/", files={"upload": image}, data=data, timeout=REQUEST_TIMEOUT * 6
    )


def test_the_official_scripts_documented_invocations(local_served: Served, example: Path) -> None:
    base = local_served.base_url  # what the start-up banner tells its users to pass as --sdk-url
    assert f"--sdk-url {base} " in startup_banner("127.0.0.1", local_served.port, token=TOKEN)

    def run(**options: Any) -> requests.Response:
        with example.open("rb") as fp:
            return official_script_call(base, fp, **options)

    # `-s URL car.jpg`, `--camera-id Camera1 -r us-ca -r th-37`, `--engine-config '{"region":"strict"}'`
    # and the json or csv output of their answers.
    answers = [
        run(),
        run(camera_id="Camera1", regions=["us-ca", "th-37"]),
        run(engine_config={"region": "strict"}),
        run(engine_config={"detection_mode": "plate"}),
    ]
    for response in answers:
        assert response.status_code == 200, response.text
        body = response.json()
        schemas.validate("plate-reader-response", body)
        # --format csv flattens the answer and each result; --annotate-images draws every result's
        # box and plate; --crop-vehicle and --split-image read each result's vehicle and score.
        assert isinstance(body["results"], list) and body["results"], "the example's plate was read"
        for result in body["results"]:
            assert {"xmin", "ymin", "xmax", "ymax"} <= set(result["box"]) and isinstance(result["plate"], str)
            assert isinstance(result["vehicle"], dict) and isinstance(result["score"], float)
        # --split-image reads these of every answer.
        assert {"camera_id", "timestamp", "processing_time"} <= set(body)
    assert answers[1].json()["camera_id"] == "Camera1"
    # --split-image sends each window as an in-memory JPEG, named "upload" by requests.
    window = io.BytesIO(images.jpeg(320, 240))
    assert official_script_call(base, window).status_code == 200

    # What the offline engine cannot do is a 400 naming the option; the script prints it and exits,
    # instead of crashing on an answer in the wrong shape or without the fields it asked for.
    vehicles = run(engine_config={"detection_mode": "vehicle"})
    assert vehicles.status_code == 400
    assert "detection_mode 'vehicle' is not supported" in vehicles.json()["config"][0]
    makes = run(mmc=True)
    assert (makes.status_code, makes.json()) == (400, {"mmc": [NO_MMC]})


def test_what_the_engine_cannot_do_is_a_400_naming_the_option(served: Served, photo: bytes) -> None:
    plates_only = start(PlatesOnlyEngine(), token=TOKEN)
    try:
        with PlateReader(plates_only.url, token=TOKEN, timeout=REQUEST_TIMEOUT) as client:
            with pytest.raises(ReaderRejected, match="mmc is not supported"):
                client.read(photo, mmc=True)
            assert client.read(photo, mmc=False, camera_id="fine")["camera_id"] == "fine"
        assert [call["camera_id"] for call in plates_only.engine.calls] == ["fine"]
    finally:
        stop(plates_only)
    calls = len(served.engine.calls)
    with (
        PlateReader(served.url, token=TOKEN, timeout=REQUEST_TIMEOUT) as client,
        pytest.raises(ReaderRejected, match="detection_mode 'vehicle' is not supported"),
    ):
        client.read(photo, config={"detection_mode": "vehicle", "region": "strict"})
    # upload_url instead of an upload: refused for what it is, not as a missing file.
    for where in (served.url, served.sdk_url):
        response = requests.post(
            where,
            data={"upload_url": "http://169.254.169.254/latest/"},
            headers=auth(),
            timeout=REQUEST_TIMEOUT,
        )
        assert (response.status_code, response.json()) == (400, {"upload_url": [NO_UPLOAD_URL]})
    with_upload = requests.post(
        served.url,
        files={"upload": photo},
        data={"upload_url": "http://example.com/car.jpg"},
        headers=auth(),
        timeout=REQUEST_TIMEOUT,
    )
    assert with_upload.status_code == 400 and "upload_url" in with_upload.json()
    assert len(served.engine.calls) == calls, "a refused request reached the engine"


class PlatesOnlyEngine(RecordingEngine):
    """Reads plates only, as the offline engine: no make, model or colour."""

    supports_mmc = False


def test_the_banner_tells_each_client_what_it_needs() -> None:
    banner = startup_banner("0.0.0.0", 8080, token="s3cr3t")
    assert "--sdk-url http://0.0.0.0:8080 " in banner
    assert "http://0.0.0.0:8080/v1/plate-reader/" in banner
    assert "http://0.0.0.0:8080/alpr" in banner
    assert "anyone who can reach 0.0.0.0 can read plates" in banner
    assert "s3cr3t" not in banner  # the token itself is never printed
    loopback = startup_banner("127.0.0.1", 8080, token="s3cr3t", open_sdk_paths=False)
    assert "every request needs it" in loopback and "anyone" not in loopback and "s3cr3t" not in loopback
    assert "SDK" in SERVE_HELP and "/v1/statistics/" in TOKEN_HELP


class FaultyEngine(RecordingEngine):
    """Fails the way a broken engine can: by raising, or by answering something that is no response."""

    def read(self, image: bytes, **options: Any) -> dict[str, Any]:
        camera_id = options.get("camera_id")
        if camera_id == "crash":
            raise RuntimeError("the model fell over")
        if camera_id == "invalid":
            return {"results": [{"plate": "ab12cde", "score": 7}]}
        return super().read(image, **options)


def test_engine_failures_are_500_and_not_counted() -> None:
    running = start(FaultyEngine())
    try:
        with PlateReader(running.url, timeout=REQUEST_TIMEOUT) as client:
            for camera_id in ("crash", "invalid"):
                response = requests.post(
                    running.url,
                    files={"upload": images.jpeg()},
                    data={"camera_id": camera_id},
                    timeout=REQUEST_TIMEOUT,
                )
                assert response.status_code == 500
                schemas.validate("error-response", response.json())
            assert client.read(images.jpeg(), camera_id="fine")["camera_id"] == "fine"
            assert client.info()["usage"]["calls"] == 1
    finally:
        stop(running)


def test_a_taken_port_moves_to_the_next_free_one() -> None:
    from bridge.server.runner import _listen

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        listener = _listen("127.0.0.1", port)
        try:
            assert listener.getsockname()[1] > port
        finally:
            listener.close()
