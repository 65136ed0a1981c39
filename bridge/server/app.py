"""The application: `create_app` puts the endpoints, the body limit and the error answers together
over an engine, and loads the engine once at start-up."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from bridge.imaging.images import MAX_IMAGE_PIXELS
from bridge.server.compat import CLOUD_PATH, INFO_PATH, SDK_PATH, STATISTICS_PATH
from bridge.server.endpoints import (
    Engine,
    State,
    cloud_plate_reader,
    http_error,
    info,
    sdk_plate_reader,
    server_error,
    statistics,
    streamed_too_large,
)
from bridge.server.limits import DEFAULT_MAX_UPLOAD_BYTES, BodyLimit, BodyTooLarge, body_limit

__all__ = ["Engine", "create_app"]

log = logging.getLogger(__name__)


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
    state = State(
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
            ((CLOUD_PATH, CLOUD_PATH.rstrip("/")), cloud_plate_reader, "POST"),
            ((SDK_PATH, SDK_PATH + "/"), sdk_plate_reader, "POST"),
            ((INFO_PATH, INFO_PATH.rstrip("/")), info, "GET"),
            ((STATISTICS_PATH, STATISTICS_PATH.rstrip("/")), statistics, "GET"),
        )
        for path in paths
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(BodyLimit, limit=body_limit(max_upload_bytes))],
        exception_handlers={
            HTTPException: http_error,
            BodyTooLarge: streamed_too_large,
            Exception: server_error,
        },
        lifespan=lifespan,
    )
    app.state.serve = state
    return app
