"""`plate-bridge serve`: a Plate-Recognizer-compatible HTTP API (cloud and SDK endpoints) over an engine.

It answers as an on-premise SDK does, so the clients people already run can point at it: the SDK
paths (`/v1/plate-reader/`, `/alpr`, `/info/`) take requests without an Authorization header, as
the SDK does (the official `plate_recognition.py --sdk-url` sends none). `--token` is checked on
every request that carries one (the cloud's way: this bridge, the Node-RED node) and guards the
cloud-only `/v1/statistics/`; it does not keep token-less SDK clients out. What the offline engine
cannot do is refused with a 400 naming the option: `mmc=true` (no make, model or colour),
`config.detection_mode` other than "plate" (no vehicle detection), `upload_url` (fetching a URL for
anyone who asks would be a request-forgery hole).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import functools
import ipaddress
import json
import logging
import secrets
import socket
import string
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, Protocol

from bridge import __version__
from bridge.core import schemas
from bridge.core.errors import (
    BridgeError,
    ConfigError,
    PayloadError,
    PayloadNotImage,
    PayloadTooLarge,
    SchemaViolation,
)
from bridge.core.regions import normalize_region
from bridge.imaging.images import MAX_IMAGE_PIXELS, check_pixels, sniff_format

try:
    import anyio
    import anyio.to_thread
    from starlette.applications import Starlette
    from starlette.datastructures import FormData, UploadFile
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError as exc:  # pragma: no cover - depends on the installed extra
    raise ImportError(
        f"plate-bridge serve needs starlette, uvicorn and python-multipart ({exc.name} is missing):"
        " pip install 'plate-bridge[serve]'"
    ) from exc

__all__ = ["SERVE_HELP", "TOKEN_HELP", "Engine", "create_app", "serve", "startup_banner"]

log = logging.getLogger(__name__)

CLOUD_PATH = "/v1/plate-reader/"
SDK_PATH = "/alpr"
INFO_PATH = "/info/"
STATISTICS_PATH = "/v1/statistics/"

DEFAULT_MAX_UPLOAD_BYTES = 3 * 1024 * 1024
# Base64 makes an image 4/3 larger, and the other form fields and multipart framing add a little.
FORM_OVERHEAD_BYTES = 64 * 1024
# There is no licence to count down: the statistics report an allowance no deployment reaches, so
# clients that compute "calls remaining" (total - used) never see it run out.
UNLIMITED_CALLS = 2**31 - 1
# Connections uvicorn serves beyond `max_pending` (uploads that hold a slot) before answering 503.
SPARE_CONNECTIONS = 16
NEXT_PORT_TRIES = 20
LICENSE_KEY = "plate-bridge-local"

# DRF's bodies and wording, so clients written against the service recognise them.
INVALID_TOKEN = {"detail": "Invalid token.", "status_code": 403}
NO_CREDENTIALS = {"detail": "Authentication credentials were not provided."}
NO_FILE = {"upload": ["No file was submitted."]}
EMPTY_FILE = {"upload": ["The submitted file is empty."]}
NOT_AN_IMAGE = "Upload a valid image. The file you uploaded was either not an image or a corrupted image."
BAD_TIMESTAMP = (
    "Datetime has wrong format. Use one of these formats instead: "
    "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
)
NO_MMC = (
    "mmc is not supported: plate-bridge serve's offline engine reads plates only, without make, model"
    " or colour. Send mmc=false or leave it out."
)
NO_UPLOAD_URL = (
    "upload_url is not supported: plate-bridge serve does not fetch images from URLs (it would fetch any"
    " address for anyone who can reach it). Send the image itself as upload."
)
PLATE_DETECTION = "plate"

# Text for `plate-bridge serve --help` (bridge/cli.py), kept beside what it describes.
SERVE_HELP = (
    "Answer the Plate Recognizer API (cloud paths and on-premise SDK paths) with the offline engine, so"
    " clients written for the service or an SDK can use it: give the official plate_recognition.py"
    " --sdk-url http://HOST:PORT, and clients that take a full URL (plate-bridge's reader.url, the"
    " Node-RED node) http://HOST:PORT/v1/plate-reader/. Differences from the service: no make, model or"
    " colour (mmc=true is a 400), no vehicle detection (config detection_mode 'vehicle' is a 400), no"
    " upload_url (a 400)."
)
TOKEN_HELP = (
    "a request that sends 'Authorization: Token ...' (the cloud's way) must send this token, and"
    " /v1/statistics/ requires it; requests without the header are answered on the SDK paths"
    " (/v1/plate-reader/, /alpr, /info/) as an on-premise SDK answers them, so the token does not keep"
    " SDK clients out: listen on 127.0.0.1 (the default) or behind a firewall to do that"
)
BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
MAX_FORM_FIELDS = 256
MAX_FORM_FILES = 4


class Engine(Protocol):
    """What the server needs of an engine: `LocalEngine`, or a test's stand-in (`load()` is optional;
    an engine that reads make, model and colour says so with `supports_mmc = True`)."""

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
    ) -> dict[str, Any]: ...


class _Rejected(Exception):
    """The request is answered with this status and JSON body instead of a reading."""

    def __init__(self, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


class _BodyTooLarge(Exception):
    """Raised from `receive` once a streamed body passes the limit (no Content-Length to check)."""

    def __init__(self, received: int, limit: int) -> None:
        super().__init__(received, limit)
        self.received = received
        self.limit = limit


@dataclass
class _Parameters:
    """The plate-reader parameters of one request, validated."""

    image: bytes
    filename: str | None
    regions: tuple[str, ...] = ()
    camera_id: str | None = None
    moment: datetime | None = None
    mmc: bool = False
    config: dict[str, Any] | None = None


@dataclass
class _Usage:
    """Recognitions answered with 200, since start and in the current calendar month (UTC)."""

    total: int = 0
    month: tuple[int, int] = (0, 0)
    month_calls: int = 0

    def count(self, now: datetime) -> int:
        if (now.year, now.month) != self.month:
            self.month, self.month_calls = (now.year, now.month), 0
        self.total += 1
        self.month_calls += 1
        return self.total

    def this_month(self, now: datetime) -> int:
        return self.month_calls if (now.year, now.month) == self.month else 0


@dataclass
class _State:
    engine: Engine
    token: str | None
    max_upload_bytes: int
    engine_threads: int
    max_pending: int
    max_image_pixels: int = MAX_IMAGE_PIXELS
    supports_mmc: bool = False
    open_sdk_paths: bool = True
    usage: _Usage = field(default_factory=_Usage)
    pending: int = 0  # requests running in or queued for the engine
    limiter: anyio.CapacityLimiter | None = None

    def engine_limiter(self) -> anyio.CapacityLimiter:
        # Made inside the event loop (lifespan or first request): anyio binds it to the running backend.
        if self.limiter is None:
            self.limiter = anyio.CapacityLimiter(self.engine_threads)
        return self.limiter


def _error(status: int, detail: str) -> dict[str, Any]:
    return {"detail": detail, "status_code": status}


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _too_large_body(size: int, limit: int, what: str) -> dict[str, Any]:
    return _error(413, f"{what} too large: {size} bytes, the limit is {limit} bytes.")


def _cloud_timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _sdk_timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


# --- the request body limit -------------------------------------------------------------------------


class _BodyLimit:
    """413 before the body is read when Content-Length is over `limit`; and while a chunked body streams.

    After an early 413 the server (uvicorn) reads and drops the rest of the body, so a client that sends
    its whole body before reading the answer (requests does) gets the 413 rather than a reset connection.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            response = _json(413, _too_large_body(declared, self.limit, "Request body"))
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _BodyTooLarge(received, self.limit)
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP server rejects a malformed length before the app sees it
    return None


# --- reading the request ----------------------------------------------------------------------------


def _check_token(request: Request, state: _State, *, sdk_path: bool = True) -> None:
    """DRF TokenAuthentication's answers, in its order; on an SDK path a request without an
    Authorization header is an SDK client's, and the SDK asks for no token."""
    token = state.token
    if token is None:
        return
    header = request.headers.get("authorization")
    if header is None and sdk_path and state.open_sdk_paths:
        return
    words = (header or "").split()
    if not words or words[0].lower() != "token":
        raise _Rejected(403, NO_CREDENTIALS)
    if len(words) == 1:
        raise _Rejected(403, _error(403, "Invalid token header. No credentials provided."))
    if len(words) > 2:
        raise _Rejected(403, _error(403, "Invalid token header. Token string should not contain spaces."))
    if not secrets.compare_digest(words[1].encode(), token.encode()):
        raise _Rejected(403, INVALID_TOKEN)


async def _read_fields(request: Request, body_limit: int) -> tuple[dict[str, list[Any]], UploadFile | None]:
    """The text fields (name -> values, in order) and the uploaded file of a request, by content type."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if not media_type:
        # DRF reads no data from a body without a media type: the upload is then simply missing.
        return {}, None
    if media_type == "application/json":
        return _json_fields(await request.body()), None
    if media_type not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise _Rejected(415, _error(415, f'Unsupported media type "{content_type}" in request.'))
    # A base64 `upload` is a text field as large as the body, past Starlette's 1 MiB per-field default.
    form: FormData = await request.form(
        max_files=MAX_FORM_FILES, max_fields=MAX_FORM_FIELDS, max_part_size=body_limit
    )
    fields: dict[str, list[Any]] = {}
    upload: UploadFile | None = None
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            # Django's rule: a part is a file exactly when it has a filename; only `upload` is kept.
            if name == "upload":
                upload = value
            continue
        fields.setdefault(name, []).append(value)
    return fields, upload


def _json_fields(body: bytes) -> dict[str, list[Any]]:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise _Rejected(400, _error(400, f"JSON parse error - {exc}")) from None
    if not isinstance(data, dict):
        raise _Rejected(400, _error(400, "JSON parse error - expected an object"))
    return {name: value if isinstance(value, list) else [value] for name, value in data.items()}


def _decode_base64_upload(text: str) -> bytes:
    """The bytes of a base64 `upload`: plain, line-wrapped, or a `data:...;base64,` URI."""
    text = text.strip()
    if text.startswith("data:"):
        header, separator, text = text.partition(",")
        if not separator or not header.lower().endswith(";base64"):
            raise _Rejected(400, _error(400, "The upload data URI is not base64."))
    # A urlencoded form whose client forgot to escape `+` arrives with spaces in its place; base64 has
    # no spaces of its own, so they are put back before line breaks are dropped.
    text = "".join(text.replace(" ", "+").split())
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _Rejected(400, _error(400, NOT_AN_IMAGE)) from None


async def _parameters(request: Request, state: _State) -> _Parameters:
    """Validate a plate-reader request the way the service does: field errors, then the image."""
    fields, upload = await _read_fields(request, _body_limit(state.max_upload_bytes))
    errors: dict[str, list[str]] = {}

    def last(name: str) -> Any:
        values = fields.get(name) or [None]
        return values[-1]

    regions: list[str] = []
    for value in fields.get("regions", []):
        try:
            code = normalize_region(value)
        except ValueError as exc:
            errors.setdefault("regions", []).append(f"{exc}.")
            continue
        if code not in regions:
            regions.append(code)

    mmc = last("mmc")
    if isinstance(mmc, str):
        mmc = BOOLEANS.get(mmc.strip().lower(), mmc)
    if mmc is not None and not isinstance(mmc, bool):
        errors["mmc"] = ["Must be a valid boolean."]
    elif mmc and not state.supports_mmc:
        # Answering without model_make and color would break clients that asked for them.
        errors["mmc"] = [NO_MMC]

    config = last("config")
    if isinstance(config, str):
        try:
            config = json.loads(config) if config.strip() else None
        except ValueError:
            errors["config"] = ["Value must be valid JSON."]
            config = None
    if config is not None and not isinstance(config, dict) and "config" not in errors:
        errors["config"] = ["Value must be a JSON object."]
    if isinstance(config, dict) and config.get("detection_mode", PLATE_DETECTION) != PLATE_DETECTION:
        # The vehicle mode answers in another shape; the plate shape would crash clients that asked.
        errors["config"] = [
            f"detection_mode {config['detection_mode']!r} is not supported: plate-bridge serve's offline"
            f" engine detects plates only. Leave detection_mode out or set it to {PLATE_DETECTION!r}."
        ]
    if fields.get("upload_url"):
        errors["upload_url"] = [NO_UPLOAD_URL]

    moment = None
    timestamp = last("timestamp")
    if timestamp not in (None, ""):
        try:
            moment = datetime.fromisoformat(str(timestamp).strip())
        except ValueError:
            errors["timestamp"] = [BAD_TIMESTAMP]
        else:
            moment = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)

    camera_id = last("camera_id")
    camera_id = str(camera_id) if camera_id not in (None, "") else None

    try:
        image, filename = await _upload(fields, upload)
    except _Rejected as rejected:
        # DRF reports every field's errors together; a missing or empty upload is one of them, unless
        # the client sent upload_url in its place: then that is the one thing to say.
        if "upload_url" in errors and "detail" not in rejected.body:
            raise _Rejected(400, errors) from None
        if errors and "detail" not in rejected.body:
            raise _Rejected(400, {**rejected.body, **errors}) from None
        raise
    if errors:
        raise _Rejected(400, errors)
    if len(image) > state.max_upload_bytes:
        raise _Rejected(413, _too_large_body(len(image), state.max_upload_bytes, "Upload"))
    if sniff_format(image) is None:
        raise _Rejected(400, _error(400, NOT_AN_IMAGE))
    # The pixels the header claims, before any engine decodes them: a small PNG can claim gigabytes.
    try:
        check_pixels(image, state.max_image_pixels)
    except PayloadTooLarge as exc:
        width, height = exc.context["width"], exc.context["height"]
        detail = f"Image too large: {width}x{height} pixels, the limit is {state.max_image_pixels} pixels."
        raise _Rejected(413, _error(413, detail)) from None
    except PayloadNotImage:
        raise _Rejected(400, _error(400, NOT_AN_IMAGE)) from None
    return _Parameters(
        image=image,
        filename=filename,
        regions=tuple(regions),
        camera_id=camera_id,
        moment=moment,
        mmc=bool(mmc),
        config=config,
    )


async def _upload(fields: dict[str, list[Any]], upload: UploadFile | None) -> tuple[bytes, str | None]:
    if upload is not None:
        image = await upload.read()
        await upload.close()
        name = PurePosixPath((upload.filename or "").replace("\\", "/")).name or None
    else:
        text = (fields.get("upload") or [None])[-1]
        if not isinstance(text, str) or not text.strip():
            raise _Rejected(400, NO_FILE)
        image, name = _decode_base64_upload(text), None
    if not image:
        raise _Rejected(400, EMPTY_FILE)
    return image, name


def _body_limit(max_upload_bytes: int) -> int:
    return max_upload_bytes * 4 // 3 + FORM_OVERHEAD_BYTES


def _default_filename(image: bytes) -> str:
    """The name of an upload that came without one (base64)."""
    return "upload.png" if sniff_format(image) == "png" else "upload.jpg"


def _stored_filename(name: str | None, image: bytes, now: datetime) -> str:
    """The cloud's naming of an upload: HHMM, five random characters, then the client's file name."""
    letters = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(5))
    return f"{now:%H%M}_{letters}_{name or _default_filename(image)}"


# --- the endpoints ----------------------------------------------------------------------------------


async def _plate_reader(request: Request, *, sdk_style: bool) -> Response:
    state: _State = request.app.state.serve
    try:
        _check_token(request, state)
        # A slot before the body: past `max_pending` (running in or queued for the engine) a request
        # is turned away the way the service throttles, before its upload is read, so a burst cannot
        # pile up images in memory without bound.
        if state.pending >= state.max_pending:
            raise _Rejected(
                429,
                _error(429, "Request was throttled. Expected available in 1 second."),
                {"Retry-After": "1"},
            )
        state.pending += 1
        try:
            parameters = await _parameters(request, state)
            body = await _recognize(state, parameters, sdk_style=sdk_style)
        finally:
            state.pending -= 1
    except _Rejected as rejected:
        return _json(rejected.status, rejected.body, rejected.headers)
    except ClientDisconnect:
        # The client hung up before its body arrived: there is no one to answer.
        log.debug("serve: client disconnected during upload")
        return Response(status_code=400)
    return _json(200, body)


async def _recognize(state: _State, parameters: _Parameters, *, sdk_style: bool) -> dict[str, Any]:
    now = datetime.now(UTC)
    moment = parameters.moment or now
    # The SDK answers with the client's file name, the cloud with the name it stored the upload under.
    filename = (
        parameters.filename or _default_filename(parameters.image)
        if sdk_style
        else _stored_filename(parameters.filename, parameters.image, now)
    )
    read = functools.partial(
        state.engine.read,
        parameters.image,
        regions=parameters.regions,
        camera_id=parameters.camera_id,
        timestamp=_cloud_timestamp(moment),
        mmc=parameters.mmc,
        config=parameters.config,
        filename=filename,
    )
    # Requests queue for the engine's threads (their slot in `pending` was taken before their body).
    started = time.perf_counter()
    try:
        answer = await anyio.to_thread.run_sync(read, limiter=state.engine_limiter())
    except PayloadNotImage:
        raise _Rejected(400, _error(400, NOT_AN_IMAGE)) from None
    except PayloadError as exc:
        raise _Rejected(400, _error(400, str(exc))) from None
    except Exception:
        log.exception("serve: the engine failed on a %d-byte image", len(parameters.image))
        raise _Rejected(500, _error(500, "The engine failed to read the image.")) from None
    if not isinstance(answer, dict):
        log.error("serve: the engine answered a %s, not a dict", type(answer).__name__)
        raise _Rejected(500, _error(500, "The engine's answer is not a plate-reader response."))
    # The request's own values win over whatever the engine echoed, so every answer says what was asked.
    body = dict(answer)
    body.setdefault("processing_time", round((time.perf_counter() - started) * 1000, 3))
    body["filename"] = filename
    body.setdefault("version", 1)
    body["camera_id"] = parameters.camera_id
    body["timestamp"] = _sdk_timestamp(moment) if sdk_style else _cloud_timestamp(moment)
    try:
        schemas.validate("plate-reader-response", body)
    except SchemaViolation as exc:
        log.error("serve: the engine's answer does not match plate-reader-response: %s", exc.problems)
        raise _Rejected(500, _error(500, "The engine's answer is not a plate-reader response.")) from None
    calls = state.usage.count(now)
    if sdk_style:
        body["usage"] = {"calls": calls, "max_calls": UNLIMITED_CALLS}
    return body


async def _cloud_plate_reader(request: Request) -> Response:
    return await _plate_reader(request, sdk_style=False)


async def _sdk_plate_reader(request: Request) -> Response:
    return await _plate_reader(request, sdk_style=True)


async def _info(request: Request) -> Response:
    state: _State = request.app.state.serve
    try:
        _check_token(request, state)
    except _Rejected as rejected:
        return _json(rejected.status, rejected.body)
    return _json(
        200,
        {
            "version": __version__,
            "license_key": LICENSE_KEY,
            "total_calls": UNLIMITED_CALLS,
            "usage": {"calls": state.usage.total},
            "webhooks": [],
        },
    )


async def _statistics(request: Request) -> Response:
    state: _State = request.app.state.serve
    try:
        _check_token(request, state, sdk_path=False)  # a cloud-only path: the cloud wants the token
    except _Rejected as rejected:
        return _json(rejected.status, rejected.body)
    now = datetime.now(UTC)
    resets = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return _json(
        200,
        {
            "usage": {
                "month": now.month,
                "calls": state.usage.this_month(now),
                "year": now.year,
                "resets_on": resets.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            "total_calls": UNLIMITED_CALLS,
        },
    )


# --- errors outside the endpoints -------------------------------------------------------------------


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        detail = "Not found."
    elif exc.status_code == 405:
        detail = f'Method "{request.method}" not allowed.'
    else:
        detail = str(exc.detail)
    return _json(exc.status_code, _error(exc.status_code, detail), exc.headers)


async def _streamed_too_large(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, _BodyTooLarge)
    return _json(413, _too_large_body(exc.received, exc.limit, "Request body"))


async def _server_error(request: Request, exc: Exception) -> Response:
    # Starlette logs the traceback; the client gets JSON, as from the service, never the trace.
    return _json(500, _error(500, "A server error occurred."))


# --- the application --------------------------------------------------------------------------------


def create_app(
    engine: Engine,
    *,
    token: str | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    engine_threads: int = 1,
    max_pending: int = 32,
    max_image_pixels: int = MAX_IMAGE_PIXELS,
    open_sdk_paths: bool = True,
) -> Starlette:
    """The Plate Recognizer API over `engine` (anything with `read(image, *, regions, ...) -> dict`).

    `engine_threads` bounds the engine calls running at once (the engine is blocking and CPU-bound, so
    it runs in worker threads and the event loop keeps answering); `max_pending` (at least
    `engine_threads`) bounds the requests running in or queued for the engine, past which the answer
    is 429. `open_sdk_paths` (the SDK's way): requests without an Authorization header need no
    `token` on the SDK paths; False requires it everywhere. An image whose header claims more than
    `max_image_pixels` is refused (413) before the engine sees it. `engine.load()`, when present,
    runs once at start-up so no request pays for loading models.
    """
    if engine_threads < 1:
        raise ValueError(f"engine_threads must be at least 1, not {engine_threads}")
    if max_upload_bytes < 1:
        raise ValueError(f"max_upload_bytes must be positive, not {max_upload_bytes}")
    state = _State(
        engine=engine,
        token=token or None,
        max_upload_bytes=max_upload_bytes,
        engine_threads=engine_threads,
        max_pending=max(engine_threads, max_pending),
        max_image_pixels=max_image_pixels,
        supports_mmc=bool(getattr(engine, "supports_mmc", False)),
        open_sdk_paths=open_sdk_paths,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.engine_limiter()
        load: Callable[[], object] | None = getattr(engine, "load", None)
        if callable(load):
            started = time.perf_counter()
            await anyio.to_thread.run_sync(load)
            log.info("serve: engine loaded in %.1f s", time.perf_counter() - started)
        yield

    routes = [
        Route(path, endpoint, methods=[method])
        for paths, endpoint, method in (
            ((CLOUD_PATH, CLOUD_PATH.rstrip("/")), _cloud_plate_reader, "POST"),
            ((SDK_PATH, SDK_PATH + "/"), _sdk_plate_reader, "POST"),
            ((INFO_PATH, INFO_PATH.rstrip("/")), _info, "GET"),
            ((STATISTICS_PATH, STATISTICS_PATH.rstrip("/")), _statistics, "GET"),
        )
        for path in paths
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(_BodyLimit, limit=_body_limit(max_upload_bytes))],
        exception_handlers={
            HTTPException: _http_error,
            _BodyTooLarge: _streamed_too_large,
            Exception: _server_error,
        },
        lifespan=lifespan,
    )
    app.state.serve = state
    return app


# --- serving ----------------------------------------------------------------------------------------


def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    token: str | None = None,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    engine_threads: int = 1,
    max_image_pixels: int = MAX_IMAGE_PIXELS,
    open_sdk_paths: bool = True,
    log_level: str = "info",
) -> None:
    """Serve the API with the offline `LocalEngine` under uvicorn until SIGINT/SIGTERM.

    A taken `port` is replaced by the next free one (announced on stdout); raises ConfigError when the
    extras are missing or no port is free, BridgeError when start-up failed (uvicorn logged why). After
    a graceful shutdown on SIGINT uvicorn re-raises it, so the caller sees KeyboardInterrupt.
    """
    try:
        import uvicorn
    except ImportError as exc:
        raise ConfigError("plate-bridge serve needs uvicorn: pip install 'plate-bridge[serve]'") from exc
    try:
        from bridge.engines.local import LocalEngine
    except ImportError as exc:
        raise ConfigError(f"plate-bridge serve reads plates with the local engine: {exc}") from exc
    listener = _listen(host, port)
    bound = listener.getsockname()[1]
    if port and bound != port:
        print(f"plate-bridge serve: port {port} on {host} is taken; using {bound} instead", flush=True)
    print(startup_banner(host, bound, token=token, open_sdk_paths=open_sdk_paths), flush=True)
    app = create_app(
        LocalEngine(max_pixels=max_image_pixels),
        token=token,
        max_upload_bytes=max_upload_bytes,
        engine_threads=engine_threads,
        max_image_pixels=max_image_pixels,
        open_sdk_paths=open_sdk_paths,
    )
    config = uvicorn_config(app, log_level=log_level)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[listener])
    finally:
        listener.close()
    if not server.started:
        # uvicorn has logged why (most often the engine's models failed to load in the lifespan).
        raise BridgeError("plate-bridge serve did not start; see the log above")


def uvicorn_config(app: Starlette, *, log_level: str = "info", **options: Any) -> Any:
    """uvicorn's settings for `app` (`options`: host, port, ... for tests): connections past
    MAX_CONNECTIONS are answered 503 by uvicorn before the app sees them, so open connections (and
    the tasks serving them) stay bounded whatever arrives."""
    import uvicorn

    state: _State = app.state.serve
    return uvicorn.Config(
        app,
        log_level=log_level,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=5,
        # Room beyond the engine's queue, so /info, /statistics and 429s are still answered while it
        # is full.
        limit_concurrency=state.max_pending + SPARE_CONNECTIONS,
        **options,
    )


def startup_banner(host: str, port: int, *, token: str | None = None, open_sdk_paths: bool = True) -> str:
    """What `serve` prints at start-up: the URL each kind of client needs, and who can get in."""
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    lines = [
        f"plate-bridge serve: loading the engine, then listening on {base}",
        f"  the official plate_recognition.py:  --sdk-url {base}   (it adds {CLOUD_PATH} itself)",
        f"  clients that take the full URL (plate-bridge reader.url, Node-RED):  {base}{CLOUD_PATH}",
        f"  SDK-style clients:  {base}{SDK_PATH};  usage:  {base}{INFO_PATH} and {base}{STATISTICS_PATH}",
    ]
    if token is not None:
        kept_out = (
            "requests without one are answered on the SDK paths, as an SDK does"
            if open_sdk_paths
            else "every request needs it"
        )
        lines.append(f"  --token: a request that sends 'Authorization: Token ...' must send it; {kept_out}")
    if not _is_loopback(host) and (token is None or open_sdk_paths):
        lines.append(f"plate-bridge serve: anyone who can reach {host} can read plates with this server")
    return "\n".join(lines)


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on `port`, else the next free port above it (0: any free port).

    Bound here, not probed: nothing can take the port between the check and uvicorn starting.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    candidates = [0] if port == 0 else range(port, min(port + NEXT_PORT_TRIES, 65536))
    last_error: OSError | None = None
    for candidate in candidates:
        listener = socket.socket(family, socket.SOCK_STREAM)
        # Reuse a port left in TIME_WAIT by a previous run; a port someone listens on still fails.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((host, candidate))
            listener.listen(2048)
        except OSError as exc:
            listener.close()
            last_error = exc
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                continue
            raise ConfigError(f"cannot listen on {host}:{candidate}: {exc.strerror or exc}") from exc
        listener.setblocking(False)
        return listener
    tried = f"{port}..{port + len(candidates) - 1}" if len(candidates) > 1 else str(port)
    reason = last_error.strerror if last_error is not None and last_error.strerror else "in use"
    raise ConfigError(f"cannot listen on {host}: ports {tried} are all taken ({reason}); pass another --port")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
