"""How the web page answers: headers every answer carries, JSON and refusals."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from bridge.extensions.httpserver import ListenerRequestHandler

REQUEST_DEADLINE = 15.0
"""Seconds for a whole request and its answer (a live-feed stream: for each write)."""
HTML = "text/html; charset=utf-8"
NO_STORE = {"Cache-Control": "no-store"}
SECURITY_HEADERS = {
    # Scripts and styles from the page's own files only; frames only by the same origin (Home
    # Assistant's ingress panel is served from Home Assistant's origin, which proxies this page).
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class HTTPError(Exception):
    """Raised by a handler to answer `status` with `detail` (JSON) and stop."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def store_refusal(exc: Exception) -> tuple[int, str] | None:
    """The store's own refusals (bad input, a read-only list) as an HTTP status and message."""
    code = getattr(exc, "code", None)
    if code == "watchlist_read_only":
        return HTTPStatus.CONFLICT, str(exc)
    if code == "history_error":
        return HTTPStatus.BAD_REQUEST, str(exc)
    return None


def send(
    request: ListenerRequestHandler,
    status: int,
    content_type: str,
    body: bytes,
    headers: dict[str, str] | None = None,
) -> None:
    request.send_response(status)
    request.send_header("Content-Type", content_type)
    request.send_header("Content-Length", str(len(body)))
    for name, value in {**SECURITY_HEADERS, **(headers or {})}.items():
        request.send_header(name, value)
    request.end_headers()
    if request.command != "HEAD":
        request.wfile.write(body)


def send_json(request: ListenerRequestHandler, status: int, document: Any, **headers: str) -> None:
    body = json.dumps(document, separators=(",", ":")).encode()
    send(request, status, "application/json", body, {"Cache-Control": "no-store", **headers})
