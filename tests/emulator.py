"""Plate Recognizer API emulator: a real HTTP server on 127.0.0.1 that tests and benchmarks talk to."""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import copy
import csv
import hashlib
import json
import logging
import math
import os
import secrets
import signal
import socket
import socketserver
import string
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.parser import HeaderParser
from email.utils import collapse_rfc2231_value
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs

__all__ = ["DEFAULT_SHARED_DIR", "ReaderEmulator", "RecordedRequest", "main"]

log = logging.getLogger(__name__)

CLOUD_PATH = "/v1/plate-reader/"
SDK_PATH = "/alpr"
INFO_PATH = "/info/"
STATISTICS_PATH = "/v1/statistics/"
PLATE_READER_PATHS = (CLOUD_PATH, SDK_PATH)

# The repo sits beside shared/ (…/main and …/shared); read in place, never copied. A checkout elsewhere (a
# git worktree, a CI workspace) names it in PLATE_BRIDGE_SHARED.
DEFAULT_SHARED_DIR = Path(
    os.environ.get("PLATE_BRIDGE_SHARED") or Path(__file__).resolve().parents[1].parent / "shared"
)

# Real bodies: the 403 and 429 ones are captured payloads; the missing-header one is DRF's wording.
INVALID_TOKEN = {"detail": "Invalid token.", "status_code": 403}
NO_CREDENTIALS = {"detail": "Authentication credentials were not provided."}
NO_FILE = {"upload": ["No file was submitted."]}
EMPTY_FILE = {"upload": ["The submitted file is empty."]}
NOT_AN_IMAGE = "Upload a valid image. The file you uploaded was either not an image or a corrupted image."
# Django and nginx answer 5xx with HTML, so clients must cope with error bodies that are not JSON.
HTML_ERRORS = {
    500: '<!doctype html>\n<html lang="en">\n<head>\n  <title>Server Error (500)</title>\n</head>\n'
    "<body>\n  <h1>Server Error (500)</h1><p></p>\n</body>\n</html>\n",
    502: "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
    503: "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
    "<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n",
    504: "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n"
    "<center><h1>504 Gateway Time-out</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
}

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BOOLEAN_VALUES = {"true": True, "1": True, "false": False, "0": False}
# Bodies past this are drained without being kept, and past the hard cap the connection is closed.
BODY_HARD_CAP = 64 * 1024 * 1024
STOP_JOIN_SECONDS = 2.0

# Used only when shared/ is missing: hand-written, same shape as a cloud plate-reader answer.
BUILT_IN_RESPONSE: dict[str, Any] = {
    "processing_time": 61.25,
    "results": [
        {
            "box": {"xmin": 210, "ymin": 402, "xmax": 356, "ymax": 447},
            "plate": "ab12cde",
            "region": {"code": "gb", "score": 0.912},
            "vehicle": {
                "type": "Sedan",
                "score": 0.804,
                "box": {"xmin": 80, "ymin": 150, "xmax": 690, "ymax": 560},
            },
            "score": 0.905,
            "candidates": [{"plate": "ab12cde", "score": 0.905}, {"plate": "ab12cdf", "score": 0.711}],
            "dscore": 0.867,
        }
    ],
    "filename": "0000_emula_car.jpg",
    "version": 1,
    "camera_id": None,
    "timestamp": "2024-01-01T00:00:00.000000Z",
}
BUILT_IN_SDK_INFO: dict[str, Any] = {
    "version": "1.3.8",
    "license_key": "EMULATOR",
    "total_calls": 0,
    "usage": {"calls": 0},
    "webhooks": [],
}
BUILT_IN_STATISTICS: dict[str, Any] = {
    "usage": {"month": 1, "calls": 0, "year": 2024, "resets_on": "2024-02-01T00:00:00Z"},
    "total_calls": 2500,
}


@dataclass
class RecordedRequest:
    """One request as the emulator received it, kept for assertions."""

    method: str
    path: str
    headers: dict[str, str]
    fields: dict[str, list[str]] = field(default_factory=dict)
    upload: bytes | None = field(default=None, repr=False)  # images make reprs unreadable
    upload_kind: Literal["file", "base64"] | None = None
    upload_filename: str | None = None
    upload_content_type: str | None = None
    received_at: float = 0.0
    status: int | None = None  # None: the connection was dropped without an answer
    body_size: int = 0
    client_port: int = 0  # the client's TCP port: one port for many requests means keep-alive


@dataclass(frozen=True)
class _Scripted:
    """One scripted reaction, consumed by the next plate-reader request."""

    kind: Literal["fail", "delay", "drop"]
    status: int = 0
    retry_after: float | None = None
    body: Any = None
    seconds: float = 0.0


@dataclass
class _Answer:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop: bool = False


@dataclass
class _Form:
    fields: dict[str, list[str]] = field(default_factory=dict)
    upload: bytes | None = None
    upload_text: str | None = None
    upload_kind: Literal["file", "base64"] | None = None
    upload_filename: str | None = None
    upload_content_type: str | None = None


@dataclass(frozen=True)
class _Payloads:
    default: dict[str, Any]
    default_mmc: dict[str, Any]
    paired: dict[str, dict[str, Any]]  # SHA-256 of an image → its real response
    sdk_info: dict[str, Any]
    statistics: dict[str, Any]
    from_shared: bool


class _Rejected(Exception):
    """The request is refused with this status and JSON body (the way DRF answers)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


def _json_bytes(body: Any) -> bytes:
    # DRF's JSONRenderer answers compact JSON.
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _json_answer(status: int, body: Any, headers: list[tuple[str, str]] | None = None) -> _Answer:
    return _Answer(status, _json_bytes(body), headers=headers or [])


def _detail(status: int, text: str) -> dict[str, Any]:
    return {"detail": text, "status_code": status}


def _throttled_detail(seconds: float) -> dict[str, Any]:
    wait = math.ceil(seconds)
    return _detail(
        429, f"Request was throttled. Expected available in {wait} second{'' if wait == 1 else 's'}."
    )


def _cloud_timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _sdk_timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def _read_json(path: Path) -> dict[str, Any]:
    body = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(body, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return body


def load_payloads(shared_dir: Path) -> _Payloads:
    """The real payloads of shared/ (responses and the two paired images), or built-in stand-ins."""
    responses = shared_dir / "data" / "responses"
    try:
        default = _read_json(responses / "parkpow_platerec-documentation_gb_2019.json")
    except (OSError, ValueError):
        return _Payloads(
            BUILT_IN_RESPONSE, BUILT_IN_RESPONSE, {}, BUILT_IN_SDK_INFO, BUILT_IN_STATISTICS, False
        )

    def optional(name: str, fallback: dict[str, Any]) -> dict[str, Any]:
        try:
            return _read_json(responses / name)
        except (OSError, ValueError):
            return fallback

    paired: dict[str, dict[str, Any]] = {}
    images = responses / "images"
    try:
        with (images / "IMAGES.tsv").open(encoding="utf-8", newline="") as table:
            for row in csv.DictReader(table, delimiter="\t"):
                digest = hashlib.sha256((images / row["file"]).read_bytes()).hexdigest()
                paired[digest] = _read_json(responses / row["paired_response"])
    except (OSError, ValueError, KeyError) as exc:
        log.warning("emulator: no paired responses from %s: %s", images, exc)
    return _Payloads(
        default=default,
        default_mmc=optional("parkpow_platerec-documentation_gb_mmc_2020.json", default),
        paired=paired,
        sdk_info=optional("parkpow_platerec-documentation_sdk_info.json", BUILT_IN_SDK_INFO),
        statistics=optional("parkpow_platerec-documentation_statistics.json", BUILT_IN_STATISTICS),
        from_shared=True,
    )


# --- request bodies -------------------------------------------------------------------------------


def parse_form(content_type: str | None, body: bytes) -> _Form:
    """The fields and upload of a request body, whichever encoding the client chose."""
    if not content_type:
        # DRF reads no data from a body without a media type: the upload is then simply missing.
        return _Form()
    media = Message()
    media["content-type"] = content_type
    kind = media.get_content_type()
    if kind == "multipart/form-data":
        return _parse_multipart(media, body)
    if kind == "application/x-www-form-urlencoded":
        pairs = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return _form_from_texts(pairs)
    if kind == "application/json":
        return _parse_json_form(body)
    raise _Rejected(415, _detail(415, f'Unsupported media type "{content_type}" in request.'))


def _form_from_texts(pairs: dict[str, list[str]]) -> _Form:
    form = _Form()
    for name, values in pairs.items():
        if name == "upload":
            form.upload_text = values[-1]
        else:
            form.fields[name] = values
    return form


def _parse_json_form(body: bytes) -> _Form:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise _Rejected(400, _detail(400, f"JSON parse error - {exc}")) from None
    if not isinstance(data, dict):
        raise _Rejected(400, _detail(400, "JSON parse error - expected an object"))

    def as_text(value: Any) -> str:
        return value if isinstance(value, str) else json.dumps(value)

    pairs = {
        name: [as_text(item) for item in value] if isinstance(value, list) else [as_text(value)]
        for name, value in data.items()
    }
    return _form_from_texts(pairs)


def _split_multipart(boundary: str, body: bytes) -> list[bytes]:
    """The raw parts (headers + content) between the boundary delimiters, per RFC 2046."""
    delimiter = b"--" + boundary.encode("latin-1")
    if body.startswith(delimiter):
        position = len(delimiter)
    else:
        # A preamble is allowed before the first delimiter; every delimiter starts a line.
        found = body.find(b"\r\n" + delimiter)
        if found < 0:
            raise _Rejected(400, _detail(400, "Multipart form parse error - the boundary never appears"))
        position = found + 2 + len(delimiter)
    parts: list[bytes] = []
    while not body.startswith(b"--", position):
        line_end = body.find(b"\r\n", position)
        # Only transport padding may follow a delimiter on its line.
        if line_end < 0 or body[position:line_end].strip(b" \t"):
            raise _Rejected(400, _detail(400, "Multipart form parse error - malformed delimiter line"))
        start = line_end + 2
        end = body.find(b"\r\n" + delimiter, start)
        if end < 0:
            raise _Rejected(400, _detail(400, "Multipart form parse error - the closing boundary is missing"))
        parts.append(body[start:end])
        position = end + 2 + len(delimiter)
    return parts


def _parse_multipart(media: Message, body: bytes) -> _Form:
    boundary = media.get_boundary()
    if not boundary:
        raise _Rejected(400, _detail(400, "Multipart form parse error - Invalid boundary in multipart: None"))
    form = _Form()
    for part in _split_multipart(boundary, body):
        if part.startswith(b"\r\n"):
            raw_headers, content = b"", part[2:]
        else:
            raw_headers, separator, content = part.partition(b"\r\n\r\n")
            if not separator:
                raise _Rejected(400, _detail(400, "Multipart form parse error - a part has no header end"))
        # Browsers send raw UTF-8 in filenames; RFC 2231 `filename*=` is decoded by get_filename().
        headers = HeaderParser().parsestr(raw_headers.decode("utf-8", "replace") + "\r\n\r\n")
        if headers.get_content_disposition() != "form-data":
            continue
        name = headers.get_param("name", header="content-disposition")
        if not name:
            continue
        name = collapse_rfc2231_value(name)
        if str(headers.get("content-transfer-encoding", "")).strip().lower() == "base64":
            try:
                content = base64.b64decode(content)
            except binascii.Error:
                raise _Rejected(400, _detail(400, "Multipart form parse error - bad base64 part")) from None
        filename = headers.get_filename()
        # Django's rule: a part is a file exactly when it has a non-empty filename.
        if filename:
            if name == "upload":
                form.upload = content
                form.upload_kind = "file"
                form.upload_filename = filename
                form.upload_content_type = headers.get_content_type() if headers["content-type"] else None
            continue
        charset = headers.get_content_charset() or "utf-8"
        try:
            text = content.decode(charset, "replace")
        except LookupError:
            text = content.decode("utf-8", "replace")
        if name == "upload":
            form.upload_text = text
        else:
            form.fields.setdefault(name, []).append(text)
    return form


def decode_base64_upload(text: str) -> bytes:
    """The image bytes of a base64 `upload`, possibly a data URI and possibly line-wrapped."""
    text = text.strip()
    if text.startswith("data:"):
        header, separator, text = text.partition(",")
        if not separator or not header.endswith(";base64"):
            raise _Rejected(400, _detail(400, "The upload data URI is not base64."))
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise _Rejected(400, _detail(400, NOT_AN_IMAGE)) from None


def _image_suffix(image: bytes) -> str | None:
    if image.startswith(JPEG_MAGIC):
        return ".jpg"
    if image.startswith(PNG_MAGIC):
        return ".png"
    return None


def _check_parameters(fields: dict[str, list[str]]) -> None:
    """DRF-style field errors for the text parameters the service validates."""
    errors: dict[str, list[str]] = {}
    if "mmc" in fields and fields["mmc"][-1].strip().lower() not in BOOLEAN_VALUES:
        errors["mmc"] = ["Must be a valid boolean."]
    if "config" in fields:
        try:
            json.loads(fields["config"][-1])
        except ValueError:
            errors["config"] = ["Value must be valid JSON."]
    if "timestamp" in fields:
        try:
            datetime.fromisoformat(fields["timestamp"][-1])
        except ValueError:
            errors["timestamp"] = [
                "Datetime has wrong format. Use one of these formats instead: "
                "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
            ]
    if errors:
        raise _Rejected(400, errors)


# --- the emulator ---------------------------------------------------------------------------------


class ReaderEmulator:
    """A Plate Recognizer (cloud and SDK) stand-in on 127.0.0.1 that records requests and fails on demand.

    `calls` counts every plate-reader request received; the usage it reports (`/info/`,
    `/v1/statistics/`, the SDK's `usage`) counts the recognitions it answered with 200, as the
    service bills them. With `sdk=True`, `POST /v1/plate-reader/` answers the SDK way too.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        sdk: bool = False,
        max_upload_bytes: int = 3 * 1024 * 1024,
        service_time: float = 0.0,
        max_calls_per_second: float | None = None,
        fast: bool = False,
        shared_dir: str | Path | None = None,
        port: int = 0,
        max_records: int | None = None,
    ) -> None:
        self.token = token
        self.sdk = sdk
        self.max_upload_bytes = max_upload_bytes
        self.service_time = service_time
        self.max_calls_per_second = max_calls_per_second
        self.fast = fast
        self.port = port
        self._payloads = load_payloads(Path(shared_dir) if shared_dir is not None else DEFAULT_SHARED_DIR)
        self._lock = threading.Lock()
        self._called = threading.Condition(self._lock)
        # Bounded for long benchmark runs where nobody reads them; unbounded for tests.
        self._records: deque[RecordedRequest] = deque(maxlen=max_records)
        self._script: deque[_Scripted] = deque()
        self._overrides: dict[str, tuple[Any, bool]] = {}
        self._recent: deque[float] = deque()  # arrival times inside the rate-limit window
        self._calls = 0
        self._billed = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._fast_bodies: dict[bool, bytes] = {}

    def answer_plates(self, *, mmc: bool = False) -> set[str]:
        """The plates of the answer to an image it has no paired response for: the captured payload's
        when `shared/` is there, else the built-in stand-in's (so tests need not know which)."""
        answer = self._payloads.default_mmc if mmc else self._payloads.default
        return {result["plate"] for result in answer["results"]}

    # lifecycle

    def start(self) -> ReaderEmulator:
        if self._server is not None:
            return self
        self._stopping = threading.Event()
        now = datetime.now(UTC)
        for sdk_style in (False, True):
            # Precomputed once: in fast mode the SDK's `usage` stays at 0.
            body = copy.deepcopy(self._payloads.default)
            self._fill(body, "fast.jpg", None, None, 0 if sdk_style else None, now)
            self._fast_bodies[sdk_style] = _json_bytes(body)
        self._server = _Server(("127.0.0.1", self.port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},  # shutdown() waits at most one poll; idle cost is negligible
            name=f"reader-emulator-{self._server.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut keep-alive connections and wake sleeping handlers; bounded in time."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        # Handlers wait on keep-alive sockets; shutting those down wakes them at once.
        server.close_connections()
        thread.join(STOP_JOIN_SECONDS)
        server.join_handlers(time.monotonic() + STOP_JOIN_SECONDS)
        self._server = None
        self._thread = None

    def open_connections(self, wait: float = 0.0) -> int:
        """Connections clients hold open to the emulator, once their handlers have had up to `wait`
        seconds to see the ones already closed."""
        server = self._server
        if server is None:
            return 0
        server.join_handlers(time.monotonic() + wait)
        with server._open_lock:
            return len(server._open)

    def __enter__(self) -> ReaderEmulator:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return self.base_url + CLOUD_PATH

    @property
    def sdk_url(self) -> str:
        return self.base_url + SDK_PATH

    @property
    def uses_shared_data(self) -> bool:
        """Whether the replayed payloads come from shared/ (False: the built-in stand-ins)."""
        return self._payloads.from_shared

    # what was received

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._records)

    @property
    def calls(self) -> int:
        with self._lock:
            return self._calls

    def wait_for_calls(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until `count` plate-reader requests have arrived (answered or not); False on timeout."""
        with self._called:
            return self._called.wait_for(lambda: self._calls >= count, timeout)

    @property
    def billed_calls(self) -> int:
        with self._lock:
            return self._billed

    def reset(self) -> None:
        """Forget records, counts, scripted answers, overrides and the rate-limit window."""
        with self._lock:
            self._records.clear()
            self._script.clear()
            self._overrides.clear()
            self._recent.clear()
            self._calls = 0
            self._billed = 0

    # scripted answers

    def set_response(
        self, image: bytes, response: dict[str, Any] | str | bytes, *, verbatim: bool = False
    ) -> None:
        """Answer `response` for this image; a dict still gets filename/camera_id/timestamp unless verbatim.

        A str or bytes response is sent as is (status 200), e.g. to test a body that is not JSON.
        """
        self.set_response_for_digest(hashlib.sha256(image).hexdigest(), response, verbatim=verbatim)

    def set_response_for_digest(
        self, digest: str, response: dict[str, Any] | str | bytes, *, verbatim: bool = False
    ) -> None:
        """`set_response` for the image whose SHA-256 is `digest` (hex): a process that made the images
        registers their answers without sending the images over (benchmarks/live.py)."""
        with self._lock:
            self._overrides[digest] = (copy.deepcopy(response), verbatim or not isinstance(response, dict))

    def fail_next(
        self,
        status: int,
        times: int = 1,
        retry_after: float | None = None,
        body: dict[str, Any] | str | bytes | None = None,
    ) -> None:
        """The next `times` plate-reader requests get `status` with the service's body for it."""
        self._add_script(_Scripted("fail", status=status, retry_after=retry_after, body=body), times)

    def delay_next(self, seconds: float, times: int = 1) -> None:
        """The next `times` plate-reader requests are answered normally after `seconds`."""
        self._add_script(_Scripted("delay", seconds=seconds), times)

    def drop_next(self, times: int = 1) -> None:
        """The next `times` plate-reader requests have their connection closed without an answer."""
        self._add_script(_Scripted("drop"), times)

    def _add_script(self, action: _Scripted, times: int) -> None:
        with self._lock:
            self._script.extend([action] * times)

    # answering

    def _pause(self, seconds: float) -> None:
        # An event wait, not time.sleep: stop() wakes every sleeping handler at once.
        if seconds > 0:
            self._stopping.wait(seconds)

    def _answer(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes | None,
        size: int,
        arrived: float,
        client_port: int = 0,
    ) -> _Answer:
        """The answer to one request (called by the handler thread; `body` is None when oversized)."""
        record = RecordedRequest(
            method, path, headers, received_at=arrived, body_size=size, client_port=client_port
        )
        route = path.split("?", 1)[0]
        with self._lock:
            self._records.append(record)
            if route in PLATE_READER_PATHS and method == "POST":
                self._calls += 1
                self._called.notify_all()
        try:
            answer = self._route(record, route, headers, body)
        except Exception:
            log.exception("emulator: failed to answer %s %s", method, path)
            answer = _Answer(500, HTML_ERRORS[500].encode(), content_type="text/html; charset=utf-8")
        # Set before the answer is written, so a client that got it sees the status recorded.
        record.status = None if answer.drop else answer.status
        return answer

    def _route(
        self, record: RecordedRequest, route: str, headers: dict[str, str], body: bytes | None
    ) -> _Answer:
        allowed = {CLOUD_PATH: "POST", SDK_PATH: "POST", INFO_PATH: "GET", STATISTICS_PATH: "GET"}.get(route)
        if allowed is None:
            return _json_answer(404, {"detail": "Not found."})
        # DRF authenticates before it looks at the method.
        denied = self._check_token(headers)
        if denied is not None:
            return denied
        if record.method != allowed:
            return _json_answer(
                405,
                {"detail": f'Method "{record.method}" not allowed.'},
                headers=[("Allow", f"{allowed}, OPTIONS")],
            )
        if route == INFO_PATH:
            return _json_answer(200, self._sdk_info())
        if route == STATISTICS_PATH:
            return _json_answer(200, self._statistics())
        return self._plate_reader(record, route, headers, body)

    def _check_token(self, headers: dict[str, str]) -> _Answer | None:
        """DRF TokenAuthentication's answers, in its order."""
        if self.token is None:
            return None
        words = headers.get("authorization", "").split()
        if not words or words[0].lower() != "token":
            return _json_answer(403, NO_CREDENTIALS)
        if len(words) == 1:
            return _json_answer(403, _detail(403, "Invalid token header. No credentials provided."))
        if len(words) > 2:
            return _json_answer(
                403, _detail(403, "Invalid token header. Token string should not contain spaces.")
            )
        if not secrets.compare_digest(words[1].encode(), self.token.encode()):
            return _json_answer(403, INVALID_TOKEN)
        return None

    def _plate_reader(
        self, record: RecordedRequest, route: str, headers: dict[str, str], body: bytes | None
    ) -> _Answer:
        with self._lock:
            action = self._script.popleft() if self._script else None
        if action is not None and action.kind == "drop":
            return _Answer(0, drop=True)
        if action is not None and action.kind == "fail":
            return self._failure(action)
        if action is not None:
            self._pause(action.seconds)
        throttled = self._throttle()
        if throttled is not None:
            return throttled
        sdk_style = route == SDK_PATH or self.sdk
        if self.fast:
            self._bill()
            return _Answer(200, self._fast_bodies[sdk_style])
        if body is None:
            return self._too_large(record.body_size)
        try:
            form = parse_form(headers.get("content-type"), body)
            record.fields = form.fields
            self._take_upload(record, form)
            _check_parameters(form.fields)
        except _Rejected as exc:
            return _json_answer(exc.status, exc.body)
        calls = self._bill()
        return _Answer(200, self._recognition(record, sdk_style, calls))

    def _take_upload(self, record: RecordedRequest, form: _Form) -> None:
        """Put the decoded upload on the record, or reject it as the service does."""
        if form.upload is not None:
            upload = form.upload
            record.upload_kind = "file"
            record.upload_filename = form.upload_filename
            record.upload_content_type = form.upload_content_type
        elif form.upload_text:
            record.upload_kind = "base64"
            upload = decode_base64_upload(form.upload_text)
        else:
            raise _Rejected(400, NO_FILE)
        record.upload = upload
        if not upload:
            raise _Rejected(400, EMPTY_FILE)
        if len(upload) > self.max_upload_bytes:
            raise _Rejected(413, self._too_large_body(len(upload)))
        if _image_suffix(upload) is None:
            raise _Rejected(400, _detail(400, NOT_AN_IMAGE))

    def _too_large_body(self, size: int) -> dict[str, Any]:
        return _detail(413, f"Upload too large: {size} bytes, the limit is {self.max_upload_bytes} bytes.")

    def _too_large(self, size: int) -> _Answer:
        return _json_answer(413, self._too_large_body(size))

    def _failure(self, action: _Scripted) -> _Answer:
        status = action.status
        headers: list[tuple[str, str]] = []
        if action.retry_after is not None:
            headers.append(("Retry-After", f"{action.retry_after:g}"))
        body = action.body
        if body is None:
            if status in HTML_ERRORS:
                body = HTML_ERRORS[status]
            elif status == 403:
                body = INVALID_TOKEN
            elif status == 413:
                body = _detail(413, "Upload too large.")
            elif status == 429:
                body = _throttled_detail(action.retry_after if action.retry_after is not None else 1)
            else:
                try:
                    body = _detail(status, HTTPStatus(status).phrase)
                except ValueError:
                    body = _detail(status, "Error.")
        if isinstance(body, dict | list):
            return _json_answer(status, body, headers)
        raw = body.encode("utf-8") if isinstance(body, str) else body
        content_type = "text/html; charset=utf-8" if raw.lstrip().startswith(b"<") else "application/json"
        return _Answer(status, raw, content_type=content_type, headers=headers)

    def _throttle(self) -> _Answer | None:
        """429 when the last second already holds `max_calls_per_second` requests (DRF's sliding window)."""
        if self.max_calls_per_second is None:
            return None
        now = time.monotonic()
        with self._lock:
            while self._recent and self._recent[0] <= now - 1.0:
                self._recent.popleft()
            if len(self._recent) < self.max_calls_per_second:
                self._recent.append(now)
                return None
            wait = self._recent[0] + 1.0 - now
        seconds = max(1, math.ceil(wait))
        return _json_answer(429, _throttled_detail(seconds), headers=[("Retry-After", str(seconds))])

    def _bill(self) -> int:
        """Spend the service time of one recognition and count it; the count, this one included."""
        self._pause(self.service_time)
        with self._lock:
            self._billed += 1
            return self._billed

    def _recognition(self, record: RecordedRequest, sdk_style: bool, calls: int) -> bytes:
        upload = record.upload or b""
        digest = hashlib.sha256(upload).hexdigest()
        fields = record.fields
        mmc = BOOLEAN_VALUES.get(fields.get("mmc", ["false"])[-1].strip().lower(), False)
        with self._lock:
            override = self._overrides.get(digest)
        if override is not None:
            response, verbatim = override
            if verbatim:
                return _as_bytes(response)
            template = response
        else:
            paired = self._payloads.paired.get(digest)
            template = paired or (self._payloads.default_mmc if mmc else self._payloads.default)
        filename = record.upload_filename or _generated_filename(_image_suffix(upload) or ".jpg")
        camera_id = fields["camera_id"][-1] if fields.get("camera_id") else None
        timestamp = fields["timestamp"][-1] if fields.get("timestamp") else None
        body = copy.deepcopy(template)
        self._fill(body, filename, camera_id, timestamp, calls if sdk_style else None, datetime.now(UTC))
        return _json_bytes(body)

    def _fill(
        self,
        body: dict[str, Any],
        filename: str,
        camera_id: str | None,
        timestamp: str | None,
        sdk_calls: int | None,
        now: datetime,
    ) -> None:
        """Set what the service sets per request; `sdk_calls` (SDK answers only) becomes `usage`."""
        body["filename"] = filename
        body["camera_id"] = camera_id
        sdk_style = sdk_calls is not None
        body["timestamp"] = timestamp or (_sdk_timestamp(now) if sdk_style else _cloud_timestamp(now))
        if sdk_style:
            body["usage"] = {"calls": sdk_calls, "max_calls": self._plan_calls()}

    def _plan_calls(self) -> int:
        total = self._payloads.statistics.get("total_calls")
        return total if isinstance(total, int) else 2500

    def _sdk_info(self) -> dict[str, Any]:
        info = copy.deepcopy(self._payloads.sdk_info)
        calls = self.billed_calls
        info["total_calls"] = calls
        usage = info.get("usage")
        info["usage"] = {**(usage if isinstance(usage, dict) else {}), "calls": calls}
        return info

    def _statistics(self) -> dict[str, Any]:
        statistics = copy.deepcopy(self._payloads.statistics)
        now = datetime.now(UTC)
        resets = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
        usage = statistics.get("usage")
        statistics["usage"] = {
            **(usage if isinstance(usage, dict) else {}),
            "month": now.month,
            "year": now.year,
            "calls": self.billed_calls,
            "resets_on": resets.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        statistics["total_calls"] = self._plan_calls()
        return statistics


def _as_bytes(response: Any) -> bytes:
    if isinstance(response, bytes):
        return response
    return response.encode("utf-8") if isinstance(response, str) else _json_bytes(response)


def _generated_filename(suffix: str) -> str:
    # The service's own naming: HHMM, five random characters, then the name.
    letters = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(5))
    return f"{datetime.now(UTC):%H%M}_{letters}_upload{suffix}"


# --- HTTP plumbing --------------------------------------------------------------------------------


class _BadFraming(Exception):
    """The body cannot be read as HTTP framed it (or is beyond any limit): answer and close."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "PlateRecognizerEmulator/1.0"
    sys_version = ""
    timeout = 30  # an idle keep-alive connection ends on its own
    # Headers and body go out in one write, and small answers must not wait for delayed ACKs.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, message_format: str, *args: Any) -> None:
        log.debug("emulator: " + message_format, *args)

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        arrived = time.monotonic()
        emulator = self.server.emulator
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            body, size = self._read_body(emulator)
        except _BadFraming as exc:
            self.close_connection = True
            self._write(_json_answer(exc.status, _detail(exc.status, str(exc))))
            return
        answer = emulator._answer(
            self.command, self.path, headers, body, size, arrived, client_port=self.client_address[1]
        )
        if answer.drop:
            self.close_connection = True
            return
        try:
            self._write(answer)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a timeout after a scripted delay): nothing left to answer.
            self.close_connection = True

    def _read_body(self, emulator: ReaderEmulator) -> tuple[bytes | None, int]:
        """The request body, or None when it is larger than any acceptable upload (then drained)."""
        keep_limit = 0 if emulator.fast else emulator.max_upload_bytes * 4 // 3 + 256 * 1024
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            return self._read_chunked(keep_limit)
        try:
            length = int(self.headers.get("content-length") or 0)
        except ValueError:
            raise _BadFraming(400, "Content-Length is not a number") from None
        if length < 0:
            raise _BadFraming(400, f"Content-Length {length} is negative")
        if length > BODY_HARD_CAP:
            raise _BadFraming(413, f"Request body too large: {length} bytes.")
        if length <= keep_limit:
            return self.rfile.read(length), length
        self._drain(length)
        # Fast mode never looks at the body; otherwise None says "too large to be an upload".
        return (b"" if emulator.fast else None), length

    def _drain(self, length: int) -> None:
        # Reading what was sent keeps the keep-alive connection usable for the next request.
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1024 * 1024))
            if not chunk:
                raise _BadFraming(400, "the body ended before Content-Length")
            remaining -= len(chunk)

    def _read_chunked(self, keep_limit: int) -> tuple[bytes | None, int]:
        chunks: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(65537)
            try:
                chunk_size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadFraming(400, "malformed chunk size") from None
            if chunk_size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            size += chunk_size
            if size > BODY_HARD_CAP:
                raise _BadFraming(413, "Request body too large.")
            data = self.rfile.read(chunk_size)
            self.rfile.readline()
            if size <= keep_limit:
                chunks.append(data)
        return (b"".join(chunks) if size <= keep_limit else None), size

    def _write(self, answer: _Answer) -> None:
        try:
            phrase = HTTPStatus(answer.status).phrase
        except ValueError:
            phrase = ""
        lines = [
            f"{self.protocol_version} {answer.status} {phrase}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {answer.content_type}",
            f"Content-Length: {len(answer.body)}",
            *(f"{name}: {value}" for name, value in answer.headers),
        ]
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + answer.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # benchmarks open many connections at once

    def __init__(self, address: tuple[str, int], emulator: ReaderEmulator) -> None:
        self.emulator = emulator
        self._open: set[socket.socket] = set()
        self._handlers: set[threading.Thread] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name, which can stall without DNS; loopback needs none.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def track(self, connection: socket.socket) -> None:
        with self._open_lock:
            self._open.add(connection)
            self._handlers.add(threading.current_thread())

    def untrack(self, connection: socket.socket) -> None:
        with self._open_lock:
            self._open.discard(connection)
            self._handlers.discard(threading.current_thread())

    def close_connections(self) -> None:
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its handler
                connection.shutdown(socket.SHUT_RDWR)

    def join_handlers(self, deadline: float) -> None:
        with self._open_lock:
            handlers = list(self._handlers)
        for handler in handlers:
            handler.join(max(0.0, deadline - time.monotonic()))

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            log.debug("emulator: connection from %s ended: %s", client_address, error)
        else:
            log.exception("emulator: error while serving %s", client_address)


# --- script mode ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT, for benchmarks that run the emulator as its own process."""
    parser = argparse.ArgumentParser(description="Plate Recognizer API emulator on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one")
    parser.add_argument("--token", default=None, help="require 'Authorization: Token T'")
    parser.add_argument("--sdk", action="store_true", help="answer /v1/plate-reader/ the SDK way too")
    parser.add_argument("--service-time", type=float, default=0.0, help="seconds each recognition takes")
    parser.add_argument("--fast", action="store_true", help="one precomputed answer, bodies not parsed")
    parser.add_argument("--max-calls-per-second", type=float, default=None, help="answer 429 above this rate")
    parser.add_argument("--max-upload-bytes", type=int, default=3 * 1024 * 1024)
    parser.add_argument("--shared-dir", default=None, help="the shared/ folder with the real payloads")
    parser.add_argument("--max-records", type=int, default=10_000, help="requests kept in memory (newest)")
    options = parser.parse_args(argv)

    stop = threading.Event()

    def request_stop(_signal: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    emulator = ReaderEmulator(
        token=options.token,
        sdk=options.sdk,
        max_upload_bytes=options.max_upload_bytes,
        service_time=options.service_time,
        max_calls_per_second=options.max_calls_per_second,
        fast=options.fast,
        shared_dir=options.shared_dir,
        port=options.port,
        max_records=options.max_records,
    )
    with emulator:
        print(f"READY {emulator.base_url}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
