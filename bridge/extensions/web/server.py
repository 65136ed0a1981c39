"""The web page's HTTP server: the page and its assets, logins, CSRF checks, and the way to the
JSON API and the live feed (bridge/extensions/web/api.py).

The bridge's bounded standard-library listener (bridge/extensions/httpserver.py), not Starlette and
uvicorn: a page of a dozen small JSON endpoints needs no framework, `plate-bridge run` keeps a single
HTTP stack with one deadline rule (uvicorn has none on reading headers), and the page works in a base
install and in the add-on without the [serve] extra. A live-feed stream is the one long answer: its
deadline is renewed at each write, and the streams are counted apart (`web.live_clients`) so that
followers never take the slots the page's other requests need.

Every URL the page uses is relative, so it works at `/`, under `web.base_path`, behind a proxy that
strips a prefix, and under Home Assistant's ingress (`X-Ingress-Path`, trusted from
`web.trusted_proxies` only, sets the cookie's path).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from bridge.extensions.httpserver import HTTPListener, ListenerRequestHandler
from bridge.extensions.web import params
from bridge.extensions.web.api import ROUTES
from bridge.extensions.web.auth import SESSION_COOKIE, Gate, Session, csrf_ok
from bridge.extensions.web.feed import LiveFeed
from bridge.extensions.web.params import BadRequest
from bridge.extensions.web.responses import (
    HTML,
    NO_STORE,
    REQUEST_DEADLINE,
    HTTPError,
    send,
    send_json,
    store_refusal,
)

if TYPE_CHECKING:
    from bridge.extensions.web.config import WebConfig

log = logging.getLogger(__name__)

CONCURRENT_REQUESTS = 32
"""Connections served at once (live-feed streams included); more are answered 503."""
MAX_JSON_BODY = 16 * 1024
DRAIN_BYTES = 16 * 1024 * 1024
"""Bytes of a too-large body read and dropped, so the client hears the 413 rather than a reset."""
STATIC_TYPES = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
_INGRESS_PATH = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")
_LOOPBACK_NAMES = {"localhost"}


def _asset(name: str) -> bytes:
    return resources.files("bridge.extensions.web").joinpath("static", name).read_bytes()


def _host_name(host_header: str) -> str:
    """`example.org:8099` -> example.org; `[::1]:8099` -> ::1."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _loopback_name(name: str) -> bool:
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class WebServer:
    """Serves the page for `store` (a `HistoryStore`) on `settings.host:settings.port`."""

    def __init__(
        self, settings: WebConfig, store: Any, on_watch_change: Callable[[], None] | None = None
    ) -> None:
        """`on_watch_change` is called after the page edits a watch list (the running bridge applies
        it to the next frame at once; without it, the history extension finds it at its next look)."""
        self.settings = settings
        self.store = store
        self.on_watch_change = on_watch_change or (lambda: None)
        self.gate = Gate(settings.password, settings.token, settings.session_hours * 3600)
        self.feed = LiveFeed(lambda limit: store.search(limit=limit))
        self.streams = threading.BoundedSemaphore(settings.live_clients)
        self._trusted = frozenset(settings.trusted_proxies)
        self._assets = {name: _asset(name) for name in STATIC_TYPES}
        self._index = _asset("index.html").decode()
        self._login = _asset("login.html").decode()
        self._http = HTTPListener(
            "web",
            settings.host,
            settings.port,
            self._handler(),
            thread_name="web-http",
            max_concurrent=CONCURRENT_REQUESTS,
            deadline=REQUEST_DEADLINE,
        )
        self.counts = {"requests": 0, "refused": 0, "errors": 0}

    @property
    def port(self) -> int:
        return self._http.port

    @property
    def url(self) -> str:
        host = self.settings.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}{self.settings.base_path}/"

    def start(self) -> None:
        self.feed.start()
        self._http.start()

    def stop(self) -> None:
        self.feed.stop()
        self._http.stop()

    # -- requests ------------------------------------------------------------------------------

    def _handler(self) -> type[ListenerRequestHandler]:
        server = self

        class Handler(ListenerRequestHandler):
            def do_GET(self) -> None:
                server.handle(self, "GET")

            def do_HEAD(self) -> None:
                server.handle(self, "HEAD")

            def do_POST(self) -> None:
                server.handle(self, "POST")

            def do_DELETE(self) -> None:
                server.handle(self, "DELETE")

        return Handler

    def handle(self, request: ListenerRequestHandler, method: str) -> None:
        self.counts["requests"] += 1
        try:
            Request(self, request, method).dispatch()
        except HTTPError as error:
            self.counts["refused"] += 1
            send_json(request, error.status, {"detail": error.detail})
        except BadRequest as error:
            self.counts["refused"] += 1
            send_json(request, HTTPStatus.BAD_REQUEST, {"detail": str(error)})
        except (TimeoutError, ConnectionError):
            raise  # the listener closes quietly
        except Exception as exc:
            refusal = store_refusal(exc)
            if refusal is not None:
                self.counts["refused"] += 1
                send_json(request, refusal[0], {"detail": refusal[1]})
                return
            self.counts["errors"] += 1
            log.exception("web: %s %s failed", method, request.path.split("?", 1)[0][:100])
            send_json(request, HTTPStatus.INTERNAL_SERVER_ERROR, {"detail": "internal error (see the log)"})


class Request:
    """One request: where it is going, who sent it, and its answer."""

    def __init__(self, server: WebServer, raw: ListenerRequestHandler, method: str) -> None:
        self.server = server
        self.raw = raw
        self.method = method
        self.settings = server.settings
        parts = urlsplit(raw.path)
        path = parts.path
        base = self.settings.base_path
        if base:
            if path != base and not path.startswith(base + "/"):
                raise HTTPError(HTTPStatus.NOT_FOUND, f"not found: the page is under {base}/")
            path = path[len(base) :] or "/"
        self.path = unquote(path)
        self.query = parts.query
        self.peer = raw.client_address[0]
        self.trusted = self.peer in server._trusted

    # -- who -----------------------------------------------------------------------------------

    @property
    def prefix(self) -> str:
        """The path the browser sees the page under (for the cookie's path)."""
        ingress = self.raw.headers.get("X-Ingress-Path", "") if self.trusted else ""
        if ingress and _INGRESS_PATH.match(ingress.rstrip("/")):
            return ingress.rstrip("/")
        return self.settings.base_path

    def _cookie(self) -> str | None:
        header = self.raw.headers.get("Cookie")
        if not header:
            return None
        try:
            morsel = SimpleCookie(header).get(SESSION_COOKIE)
        except CookieError:
            return None
        return morsel.value if morsel else None

    def who(self) -> tuple[str, Session | None] | None:
        """How the request is allowed: ("open"|"proxy"|"token"|"session", its session), or None."""
        gate = self.server.gate
        if self.trusted:
            return "proxy", None
        if gate.bearer(self.raw.headers.get("Authorization")):
            return "token", None
        if not gate.needs_login:
            if self.settings.trusted_proxies and not _loopback_name(self.peer):
                return None  # off loopback with only a proxy allowed: through the proxy
            return "open", None
        session = gate.session(self._cookie())
        return ("session", session) if session else None

    def _check_host(self) -> None:
        # Without a login, a page elsewhere that points its own name at 127.0.0.1 (DNS rebinding)
        # would be same-origin with this one: only loopback names and the allowed hosts are served.
        name = _host_name(self.raw.headers.get("Host", ""))
        allowed = {h.lower() for h in self.settings.allowed_hosts} | {self.settings.host.lower()}
        if not (_loopback_name(name) or name in allowed):
            raise HTTPError(HTTPStatus.FORBIDDEN, f"host {name[:60]!r} is not in web.allowed_hosts")

    def _check_origin(self) -> None:
        # An edit from another site's page carries that site's Origin: refused whatever else it has.
        origin = self.raw.headers.get("Origin")
        if origin is None:
            return
        host = self.raw.headers.get("X-Forwarded-Host") if self.trusted else None
        host = host or self.raw.headers.get("Host", "")
        if origin == "null" or urlsplit(origin).netloc.lower() != host.strip().lower():
            raise HTTPError(HTTPStatus.FORBIDDEN, "cross-site request refused (its Origin is not the page's)")

    # -- dispatch ------------------------------------------------------------------------------

    def dispatch(self) -> None:
        path, method = self.path, self.method
        if path.startswith("/static/") and method in ("GET", "HEAD"):
            return self.static(path.removeprefix("/static/"))
        if path == "/login" and method == "POST":
            return self.login()
        who = self.who()
        if who is None:
            if self.settings.trusted_proxies and not self.server.gate.needs_login:
                raise HTTPError(HTTPStatus.FORBIDDEN, "this page is served through its proxy only")
            if path == "/" and method in ("GET", "HEAD"):
                return self.login_page(HTTPStatus.OK, "")
            raise HTTPError(HTTPStatus.UNAUTHORIZED, "log in first (or send Authorization: Bearer <token>)")
        kind, session = who
        if kind == "open":
            self._check_host()
        csrf = session.csrf if session else self.server.gate.open_csrf
        if path == "/logout" and method == "POST":
            # The page's plain form: its Origin is checked; a forged logout would only log out.
            self._check_origin()
            return self.logout()
        if method in ("POST", "DELETE"):
            self._check_origin()
            if kind != "token" and not csrf_ok(csrf, self.raw.headers.get("X-CSRF-Token")):
                raise HTTPError(HTTPStatus.FORBIDDEN, "missing or wrong X-CSRF-Token (reload the page)")
        if path == "/" and method in ("GET", "HEAD"):
            page = self.server._index.replace("__CSRF__", csrf).replace(
                "__LOGOUT__", "" if kind == "session" else "hidden"
            )
            return send(
                self.raw,
                HTTPStatus.OK,
                "text/html; charset=utf-8",
                page.encode(),
                {"Cache-Control": "no-store"},
            )
        for pattern, allowed, handler in ROUTES:
            match = pattern.fullmatch(path)
            if match:
                if method not in allowed:
                    raise HTTPError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed here")
                return handler(self, *match.groups())
        raise HTTPError(HTTPStatus.NOT_FOUND, f"not found: {path[:100]}")

    # -- pages and assets ----------------------------------------------------------------------

    def static(self, name: str) -> None:
        if name not in STATIC_TYPES:
            raise HTTPError(HTTPStatus.NOT_FOUND, "no such file")
        send(
            self.raw,
            HTTPStatus.OK,
            STATIC_TYPES[name],
            self.server._assets[name],
            {"Cache-Control": "max-age=300"},
        )

    def login_page(self, status: int, error: str) -> None:
        page = self.server._login.replace("__ERROR__", error).replace("__HIDDEN__", "" if error else "hidden")
        send(self.raw, status, HTML, page.encode(), NO_STORE)

    def login(self) -> None:
        self._check_origin()
        gate = self.server.gate
        if not gate.needs_login:
            self.redirect_home()
            return
        if gate.throttled(self.peer):
            self.login_page(HTTPStatus.TOO_MANY_REQUESTS, "Too many failed logins from here: wait a minute.")
            return
        body = self.body(1024, "application/x-www-form-urlencoded")
        try:
            form = parse_qs(body.decode(), max_num_fields=2)
        except (UnicodeDecodeError, ValueError):
            raise BadRequest("the login form is malformed") from None
        session_id = gate.login((form.get("password") or [""])[0], self.peer)
        if session_id is None:
            self.login_page(HTTPStatus.UNAUTHORIZED, "Wrong password.")
            return
        secure = "; Secure" if self.raw.headers.get("X-Forwarded-Proto", "") == "https" else ""
        cookie = (
            f"{SESSION_COOKIE}={session_id}; Path={self.prefix}/; Max-Age={gate.session_seconds}; "
            f"HttpOnly; SameSite=Strict{secure}"
        )
        self.redirect_home(cookie)

    def logout(self) -> None:
        self.server.gate.logout(self._cookie())
        self.redirect_home(f"{SESSION_COOKIE}=; Path={self.prefix}/; Max-Age=0; HttpOnly; SameSite=Strict")

    def redirect_home(self, cookie: str | None = None) -> None:
        self.raw.send_response(HTTPStatus.SEE_OTHER)
        self.raw.send_header("Location", "./")  # relative: right under any prefix
        if cookie:
            self.raw.send_header("Set-Cookie", cookie)
        self.raw.send_header("Content-Length", "0")
        self.raw.end_headers()

    def body(self, limit: int, content_type: str) -> bytes:
        """The request's body: at most `limit` bytes, of `content_type`."""
        given = self.raw.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if given != content_type:
            raise HTTPError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"the body must be {content_type}")
        length_text = self.raw.headers.get("Content-Length")
        if length_text is None:
            raise HTTPError(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
        try:
            length = int(length_text)
        except ValueError:
            raise BadRequest("Content-Length is not a number") from None
        if length < 0:
            raise BadRequest("Content-Length is negative")
        if length > limit:
            self.raw.close_connection = True
            # Read (and drop) a body of a few times the limit, so that the client hears the 413 rather
            # than a reset; a larger one is cut off unread.
            if length <= DRAIN_BYTES:
                while length > 0:
                    length -= len(self.raw.rfile.read(min(length, 64 * 1024)) or b"\0" * length)
            raise HTTPError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body is larger than {limit:,} bytes")
        return self.raw.rfile.read(length)

    def json_body(self) -> Any:
        try:
            return json.loads(self.body(MAX_JSON_BODY, "application/json"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise BadRequest("the body is not JSON (or nested too deep)") from None

    def send(self, document: Any) -> None:
        send_json(self.raw, HTTPStatus.OK, document)

    def no_query(self) -> None:
        params.query(self.query, set())
