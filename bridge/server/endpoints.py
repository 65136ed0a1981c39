"""The endpoints: the plate reader (cloud and SDK styles), /info/ and /v1/statistics/, and the JSON
answers to errors outside them. They run the engine in worker threads, at most `engine_threads` at once,
with at most `max_pending` requests running in or queued for it."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import anyio
import anyio.to_thread
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from bridge import __version__
from bridge.core import schemas
from bridge.core.errors import PayloadError, PayloadNotImage, SchemaViolation
from bridge.imaging.images import MAX_IMAGE_PIXELS
from bridge.server.compat import (
    LICENSE_KEY,
    NOT_AN_IMAGE,
    UNLIMITED_CALLS,
    Parameters,
    Rejected,
    check_token,
    cloud_timestamp,
    default_filename,
    error,
    json_response,
    read_parameters,
    sdk_timestamp,
    stored_filename,
)
from bridge.server.limits import BodyTooLarge, too_large_body

log = logging.getLogger(__name__)


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


@dataclass
class Usage:
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
class State:
    """What the endpoints share (`app.state.serve`): the engine, the settings and the counts."""

    engine: Engine
    token: str | None
    max_upload_bytes: int
    engine_threads: int
    max_pending: int
    max_image_pixels: int = MAX_IMAGE_PIXELS
    supports_mmc: bool = False
    open_sdk_paths: bool = True
    usage: Usage = field(default_factory=Usage)
    pending: int = 0  # requests running in or queued for the engine
    limiter: anyio.CapacityLimiter | None = None

    def engine_limiter(self) -> anyio.CapacityLimiter:
        # Made inside the event loop (lifespan or first request): anyio binds it to the running backend.
        if self.limiter is None:
            self.limiter = anyio.CapacityLimiter(self.engine_threads)
        return self.limiter


async def _plate_reader(request: Request, *, sdk_style: bool) -> Response:
    state: State = request.app.state.serve
    try:
        check_token(request, state.token, open_sdk_paths=state.open_sdk_paths)
        # A slot before the body: past `max_pending` (running in or queued for the engine) a request
        # is turned away the way the service throttles, before its upload is read, so a burst cannot
        # pile up images in memory without bound.
        if state.pending >= state.max_pending:
            raise Rejected(
                429,
                error(429, "Request was throttled. Expected available in 1 second."),
                {"Retry-After": "1"},
            )
        state.pending += 1
        try:
            request_parameters = await read_parameters(
                request,
                max_upload_bytes=state.max_upload_bytes,
                max_image_pixels=state.max_image_pixels,
                supports_mmc=state.supports_mmc,
            )
            body = await _recognize(state, request_parameters, sdk_style=sdk_style)
        finally:
            state.pending -= 1
    except Rejected as rejected:
        return json_response(rejected.status, rejected.body, rejected.headers)
    except ClientDisconnect:
        # The client hung up before its body arrived: there is no one to answer.
        log.debug("serve: client disconnected during upload")
        return Response(status_code=400)
    return json_response(200, body)


async def _recognize(state: State, parameters: Parameters, *, sdk_style: bool) -> dict[str, Any]:
    now = datetime.now(UTC)
    moment = parameters.moment or now
    # The SDK answers with the client's file name, the cloud with the name it stored the upload under.
    filename = (
        parameters.filename or default_filename(parameters.image)
        if sdk_style
        else stored_filename(parameters.filename, parameters.image, now)
    )
    read = functools.partial(
        state.engine.read,
        parameters.image,
        regions=parameters.regions,
        camera_id=parameters.camera_id,
        timestamp=cloud_timestamp(moment),
        mmc=parameters.mmc,
        config=parameters.config,
        filename=filename,
    )
    # Requests queue for the engine's threads (their slot in `pending` was taken before their body).
    started = time.perf_counter()
    try:
        answer = await anyio.to_thread.run_sync(read, limiter=state.engine_limiter())
    except PayloadNotImage:
        raise Rejected(400, error(400, NOT_AN_IMAGE)) from None
    except PayloadError as exc:
        raise Rejected(400, error(400, str(exc))) from None
    except Exception:
        log.exception("serve: the engine failed on a %d-byte image", len(parameters.image))
        raise Rejected(500, error(500, "The engine failed to read the image.")) from None
    if not isinstance(answer, dict):
        log.error("serve: the engine answered a %s, not a dict", type(answer).__name__)
        raise Rejected(500, error(500, "The engine's answer is not a plate-reader response."))
    # The request's own values win over whatever the engine echoed, so every answer says what was asked.
    body = dict(answer)
    body.setdefault("processing_time", round((time.perf_counter() - started) * 1000, 3))
    body["filename"] = filename
    body.setdefault("version", 1)
    body["camera_id"] = parameters.camera_id
    body["timestamp"] = sdk_timestamp(moment) if sdk_style else cloud_timestamp(moment)
    try:
        schemas.validate("plate-reader-response", body)
    except SchemaViolation as exc:
        log.error("serve: the engine's answer does not match plate-reader-response: %s", exc.problems)
        raise Rejected(500, error(500, "The engine's answer is not a plate-reader response.")) from None
    calls = state.usage.count(now)
    if sdk_style:
        body["usage"] = {"calls": calls, "max_calls": UNLIMITED_CALLS}
    return body


async def cloud_plate_reader(request: Request) -> Response:
    return await _plate_reader(request, sdk_style=False)


async def sdk_plate_reader(request: Request) -> Response:
    return await _plate_reader(request, sdk_style=True)


async def info(request: Request) -> Response:
    state: State = request.app.state.serve
    try:
        check_token(request, state.token, open_sdk_paths=state.open_sdk_paths)
    except Rejected as rejected:
        return json_response(rejected.status, rejected.body)
    return json_response(
        200,
        {
            "version": __version__,
            "license_key": LICENSE_KEY,
            "total_calls": UNLIMITED_CALLS,
            "usage": {"calls": state.usage.total},
            "webhooks": [],
        },
    )


async def statistics(request: Request) -> Response:
    state: State = request.app.state.serve
    try:
        check_token(
            request, state.token, open_sdk_paths=state.open_sdk_paths, sdk_path=False
        )  # a cloud-only path: the cloud wants the token
    except Rejected as rejected:
        return json_response(rejected.status, rejected.body)
    now = datetime.now(UTC)
    resets = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return json_response(
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


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        detail = "Not found."
    elif exc.status_code == 405:
        detail = f'Method "{request.method}" not allowed.'
    else:
        detail = str(exc.detail)
    return json_response(exc.status_code, error(exc.status_code, detail), exc.headers)


async def streamed_too_large(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BodyTooLarge)
    return json_response(413, too_large_body(exc.received, exc.limit, "Request body"))


async def server_error(request: Request, exc: Exception) -> Response:
    # Starlette logs the traceback; the client gets JSON, as from the service, never the trace.
    return json_response(500, error(500, "A server error occurred."))
