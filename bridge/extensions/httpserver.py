"""An HTTP server on a thread of its own, for the extensions that listen (metrics, the webhook receiver).

Named `httpserver`, not `http`, so nothing run from this folder can shadow the standard library's `http`.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bridge.errors import ConfigError

# Seconds stop() waits for the serving thread after shutdown(); it is a daemon, so a stuck one
# cannot hold the process at exit either.
STOP_WAIT = 5.0


class HTTPListener:
    """Binds `host:port` on `start()`, serves from a daemon thread, and closes the socket on `stop()`.

    Both listening extensions need the same lifecycle — a port taken by something else must be a
    configuration error naming the setting, port 0 must report the port the system chose (tests listen
    there), and `stop()` must be safe when `start()` failed or never ran, since the bridge stops every
    extension after a failed start. Request threads are daemons (`ThreadingHTTPServer`'s default): a
    stalled client never delays shutdown.
    """

    def __init__(
        self,
        section: str,
        host: str,
        port: int,
        handler: type[BaseHTTPRequestHandler],
        *,
        thread_name: str,
        server_type: type[ThreadingHTTPServer] = ThreadingHTTPServer,
    ) -> None:
        """`section` is the configuration key the address comes from: bind errors start with it."""
        self.section = section
        self.host = host
        self._port = port
        self._handler = handler
        self._thread_name = thread_name
        self._server_type = server_type
        self._server: ThreadingHTTPServer | None = None
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
            self._server = self._server_type((self.host, self._port), self._handler)
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
