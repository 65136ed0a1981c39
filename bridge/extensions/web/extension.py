"""The web page as an extension of `plate-bridge run`: its own handle on the history store, its server."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from bridge.extensions.base import Extension, ExtensionContext

if TYPE_CHECKING:
    from bridge.config import BridgeConfig
    from bridge.extensions.web.server import WebServer

log = logging.getLogger(__name__)


def open_web(config: BridgeConfig) -> tuple[WebServer, Any]:
    """The page's server (not started) and the store it reads, both from the configuration."""
    from bridge.extensions.history.extension import open_store
    from bridge.extensions.web.server import WebServer

    store = open_store(config)
    return WebServer(config.web, store), store


class WebExtension(Extension):
    """Serves the page on `web.host:web.port` while the bridge runs."""

    name = "web"

    def __init__(self, context: ExtensionContext) -> None:
        super().__init__(context)
        self.server: WebServer | None = None
        self._store: Any = None

    @classmethod
    def enabled(cls, config: BridgeConfig) -> bool:
        return config.web.enabled

    def start(self) -> None:
        self.server, self._store = open_web(self.context.config)
        self.server.start()
        log.info("web page on %s", self.server.url)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self._store is not None:
            self._store.close()

    def stats(self) -> dict[str, int]:
        return dict(self.server.counts) if self.server is not None else {}
