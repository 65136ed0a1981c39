"""The web page as an extension of `plate-bridge run`: its own handle on the history store, its server."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bridge.extensions.base import Extension, ExtensionContext
from bridge.extensions.web.config import WebConfig

if TYPE_CHECKING:
    from bridge.config import BridgeConfig
    from bridge.extensions.web.server import WebServer

log = logging.getLogger(__name__)


def open_web(
    config: BridgeConfig, on_watch_change: Callable[[Any], None] | None = None
) -> tuple[WebServer, Any]:
    """The page's server (not started) and the store it reads, both from the configuration;
    `on_watch_change(store)` after each watch-list edit."""
    from bridge.extensions.history.extension import open_store
    from bridge.extensions.web.server import WebServer

    store = open_store(config)
    changed = (lambda: on_watch_change(store)) if on_watch_change else None
    return WebServer(config.web, store, changed), store


class WebExtension(Extension):
    """Serves the page on `web.host:web.port` while the bridge runs."""

    name = "web"
    config_key = "web"
    config_model = WebConfig
    edits_watchlists = True

    def __init__(self, context: ExtensionContext) -> None:
        super().__init__(context)
        self.server: WebServer | None = None
        self._store: Any = None
        self._stopping = threading.Event()
        self._opener: threading.Thread | None = None

    @classmethod
    def check_config(cls, config: BridgeConfig) -> None:
        if config.web.enabled and not config.history.enabled:
            raise ValueError("web.enabled needs history.enabled: the page shows the history store")

    def start(self) -> None:
        from bridge.extensions.history.models import HistoryError, StoreTooNew

        try:
            self._serve()
        except StoreTooNew:
            raise
        except HistoryError as exc:
            # As the history extension does: the bridge goes on, the page comes when the store opens.
            log.error("web: %s: the page is served once the store opens (tried again meanwhile)", exc.message)
            self._opener = threading.Thread(target=self._serve_when_open, name="web-opener", daemon=True)
            self._opener.start()

    def _serve(self) -> None:
        server, store = open_web(self.context.config, self._apply_lists)
        if self._stopping.is_set():
            store.close()
            return
        try:
            server.start()
        except BaseException:
            store.close()  # the port is taken, say: the store opened for it is let go
            raise
        # Set once serving (stop() waits for the opener thread first, so neither is left behind).
        self.server, self._store = server, store
        log.info("web page on %s", server.url)

    def _serve_when_open(self) -> None:
        from bridge.extensions.history.extension import keep_trying

        try:
            keep_trying(self._serve, self._stopping, "web")
        except Exception:
            log.exception("web: the page could not be started")

    def _apply_lists(self, store: Any) -> None:
        # An edit made on the page flags the very next frame: the routes' lists are replaced here, as
        # the history extension does for MQTT requests (it would find the edit at its next look).
        live = self.context.watchlists
        if live is not None:
            live.replace(store.store_lists())

    def stop(self) -> None:
        self._stopping.set()
        if self._opener is not None:
            self._opener.join(30)
        if self.server is not None:
            self.server.stop()
        if self._store is not None:
            self._store.close()

    def stats(self) -> dict[str, int]:
        return dict(self.server.counts) if self.server is not None else {}
