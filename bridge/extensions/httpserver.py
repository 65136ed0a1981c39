"""A bounded HTTP server on a thread of its own, for the extensions that listen (metrics, webhooks).

Named `httpserver`, not `http`, so nothing run from this folder can shadow the standard library's `http`.

Bounded twice: at most `max_concurrent` connections are served at once (more are answered 503 by the
accepting thread before anything of them is read, so threads and memory stay bounded whatever
arrives), and each request has `deadline` seconds in all, from its first byte to the last byte of its
answer — not per `recv`, so a client trickling a byte every few seconds (a slowloris) is cut off at the
deadline like one that sends nothing. The standard library's server rather than an ASGI stack: uvicorn
has no deadline on reading a request's headers (only keep-alive and graceful-shutdown timeouts), so it
would need the same work, and starlette/uvicorn are the optional [serve] extra.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bridge.core.errors import ConfigError

log = logging.getLogger(__name__)

# Seconds stop() waits for the serving thread after shutdown(); it is a daemon, so a stuck one
# cannot hold the process at exit either.
STOP_WAIT = 5.0
# What an over-limit connection is answered, whole, by the accepting thread.
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b'Connection: close\r\nContent-Length: 30\r\n\r\n{"detail": "busy: try again"}\n'
)
# Bytes of an over-limit request read (and thrown away) before closing, so the close does not reset the
# connection before the client reads the 503.
_DRAIN_BYTES = 64 * 1024


class _DeadlineReader(io.RawIOBase):
    """The socket's reading side, each `recv` given only what is left of the request's deadline."""

    def __init__(self, sock: socket.socket, handler: ListenerRequestHandler) -> None:
        self._sock = sock
        self._handler = handler

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._sock.settimeout(self._handler.time_left())
        return self._sock.recv_into(buffer)


class _DeadlineWriter(io.BufferedIOBase):
    """The socket's writing side: `sendall` bounded by what is left of the deadline (its timeout is
    the whole call's since Python 3.5)."""

    def __init__(self, sock: socket.socket, handler: ListenerRequestHandler) -> None:
        self._sock = sock
        self._handler = handler

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._sock.settimeout(self._handler.time_left())
        self._sock.sendall(data)
        with memoryview(data) as view:
            return view.nbytes


class ListenerRequestHandler(BaseHTTPRequestHandler):
    """Base of the listeners' handlers: every request must be read and answered within the server's
    deadline, counted from the moment the server starts waiting for it."""

    server: BoundedHTTPServer
    _deadline = 0.0

    def setup(self) -> None:
        # StreamRequestHandler.setup's files read and write with the socket's one timeout: these
        # ask the deadline before each call.
        self.connection = self.request
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self))
        self.wfile = _DeadlineWriter(self.connection, self)

    def time_left(self) -> float:
        """Seconds left of this request's deadline; TimeoutError once it has passed."""
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request's deadline has passed")
        return left

    def handle_one_request(self) -> None:
        # Reset for each request on a kept-alive connection (waiting for it counts, so an idle
        # connection is closed at the deadline too).
        self._deadline = time.monotonic() + self.server.deadline
        super().handle_one_request()

    def handle(self) -> None:
        try:
            super().handle()
        except (TimeoutError, ConnectionError) as exc:
            # Too slow or gone: close without a traceback; the client hears nothing more.
            self.close_connection = True
            log.debug("%s: connection from %s closed: %s", self.server.name, self.client_address[0], exc)

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines may carry secrets (?token=): nothing of them is logged.
        pass


class BoundedHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server serving at most `max_concurrent` connections at once, each request
    within `deadline` seconds; more connections get 503 from the accepting thread."""

    daemon_threads = True  # a stalled client never delays shutdown

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[ListenerRequestHandler],
        *,
        name: str,
        max_concurrent: int,
        deadline: float,
    ) -> None:
        super().__init__(address, handler)
        self.name = name
        self.deadline = deadline
        self._slots = threading.BoundedSemaphore(max_concurrent)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Called in the accepting thread, one connection after the other.
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(_BUSY)
                request.setblocking(False)  # what already arrived only: never blocks the accepting thread
                request.recv(_DRAIN_BYTES)
            self.shutdown_request(request)
            return
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"{self.name}-request",
            daemon=True,
        )
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: the slot goes back, the connection is closed
            self._slots.release()
            self.shutdown_request(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class HTTPListener:
    """Binds `host:port` on `start()`, serves from a daemon thread, and closes the socket on `stop()`.

    Both listening extensions need the same lifecycle — a port taken by something else must be a
    configuration error naming the setting, port 0 must report the port the system chose (tests listen
    there), and `stop()` must be safe when `start()` failed or never ran, since the bridge stops every
    extension after a failed start — and the same bounds (see the module's docstring).
    """

    def __init__(
        self,
        section: str,
        host: str,
        port: int,
        handler: type[ListenerRequestHandler],
        *,
        thread_name: str,
        max_concurrent: int,
        deadline: float,
    ) -> None:
        """`section` is the configuration key the address comes from: bind errors start with it."""
        self.section = section
        self.host = host
        self._port = port
        self._handler = handler
        self._thread_name = thread_name
        self._max_concurrent = max_concurrent
        self._deadline = deadline
        self._server: BoundedHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port listened on: the configured one, or the one the system chose for port 0."""
        if self._server is None:
            raise RuntimeError(f"{self.section}: the HTTP server is not started")
        return self._server.server_address[1]

    def start(self) -> None:
        """Bind and serve; ConfigError when the address cannot be bound (taken, not this host's)."""
        try:
            self._server = BoundedHTTPServer(
                (self.host, self._port),
                self._handler,
                name=self._thread_name,
                max_concurrent=self._max_concurrent,
                deadline=self._deadline,
            )
        except OSError as exc:
            raise ConfigError(
                f"{self.section}: cannot listen on {self.host}:{self._port}: {exc.strerror or exc}"
            ) from None
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=self._thread_name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port; a no-op when nothing was started."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(STOP_WAIT)
