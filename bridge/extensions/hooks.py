"""The extensions the configuration turns on, and their hooks called the same way everywhere: a
failing extension is logged by name and the others still run (Zigbee2MQTT's `lib/eventBus.ts`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from bridge.core.events import PublishedEvent
from bridge.extensions.base import Extension

if TYPE_CHECKING:
    from bridge.core.messages import Message

log = logging.getLogger(__name__)


class Extensions:
    """The built extensions in start-up order; iterating gives them."""

    def __init__(self, extensions: Sequence[Extension] = ()) -> None:
        self._extensions = list(extensions)

    def __iter__(self) -> Iterator[Extension]:
        return iter(self._extensions)

    def __len__(self) -> int:
        return len(self._extensions)

    def extend(self, extensions: Iterable[Extension]) -> None:
        self._extensions.extend(extensions)

    def start(self) -> None:
        for extension in self._extensions:
            extension.start()

    def stop(self) -> None:
        """Stop them in reverse order; one failing does not keep the others running."""
        for extension in reversed(self._extensions):
            try:
                extension.stop()
            except Exception:
                log.exception("extension %s failed to stop", extension.name)

    def on_connected(self) -> None:
        for extension in self._extensions:
            try:
                extension.on_connected()
            except Exception:
                log.exception("extension %s failed on connect", extension.name)

    def on_frame(self, msg: Message) -> None:
        for extension in self._extensions:
            try:
                extension.on_frame(msg)
            except Exception:
                log.exception("extension %s failed on a frame on %s", extension.name, msg.topic)

    def on_event(self, published: PublishedEvent) -> None:
        for extension in self._extensions:
            try:
                extension.on_event(published)
            except Exception:
                log.exception("extension %s failed on an event on %s", extension.name, published.topic)

    def stats(self) -> dict[str, dict[str, Any]]:
        """Each extension's own counters, by name, for `bridge/health`'s `extensions`."""
        return {ext.name: stats for ext in self._extensions if (stats := ext.stats())}
