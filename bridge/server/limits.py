"""The server's limits: the size of a request body (checked from Content-Length before it is read, and
while a chunked body streams), the form's fields and files, and the connections past the engine's queue.
The number of requests running in or queued for the engine (`max_pending`) is checked by the endpoints."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_UPLOAD_BYTES = 3 * 1024 * 1024
# Base64 makes an image 4/3 larger, and the other form fields and multipart framing add a little.
FORM_OVERHEAD_BYTES = 64 * 1024
MAX_FORM_FIELDS = 256
MAX_FORM_FILES = 4
# Connections uvicorn serves beyond `max_pending` (uploads that hold a slot) before answering 503.
SPARE_CONNECTIONS = 16


class BodyTooLarge(Exception):
    """Raised from `receive` once a streamed body passes the limit (no Content-Length to check)."""

    def __init__(self, received: int, limit: int) -> None:
        super().__init__(received, limit)
        self.received = received
        self.limit = limit


def too_large_body(size: int, limit: int, what: str) -> dict[str, Any]:
    return {"detail": f"{what} too large: {size} bytes, the limit is {limit} bytes.", "status_code": 413}


def body_limit(max_upload_bytes: int) -> int:
    return max_upload_bytes * 4 // 3 + FORM_OVERHEAD_BYTES


class BodyLimit:
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
            response = JSONResponse(too_large_body(declared, self.limit, "Request body"), status_code=413)
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(received, self.limit)
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
