"""Features of the bridge as a whole, each an `Extension` with `start()`/`stop()`.

The table below is the only place that names them: `bridge.service` builds the ones the
configuration turns on and wires them through their hooks, so adding one never touches the service
(Zigbee2MQTT's `lib/controller.ts` keeps the same kind of table). An extension's module must be cheap
to import: what it needs beyond the core (an HTTP server, a client library) is imported in `start()`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from bridge.extensions.base import Extension, ExtensionContext, PublishedEvent

if TYPE_CHECKING:
    from bridge.config import BridgeConfig

# module:class, in start-up order.
EXTENSIONS: tuple[str, ...] = (
    "bridge.extensions.info:BridgeInfoExtension",
    "bridge.extensions.homeassistant:HomeAssistantExtension",
    "bridge.extensions.requests:RequestsExtension",
    "bridge.extensions.metrics:MetricsExtension",
    "bridge.extensions.frigate:FrigateExtension",
    "bridge.extensions.webhooks:WebhookReceiver",
    "bridge.extensions.webhooks:WebhookSender",
    "bridge.extensions.history.extension:HistoryExtension",
    "bridge.extensions.web:WebExtension",
)


def extension_types() -> list[type[Extension]]:
    """Every extension class of the table, imported."""
    types = []
    for path in EXTENSIONS:
        module_name, _, attribute = path.partition(":")
        types.append(getattr(importlib.import_module(module_name), attribute))
    return types


def enabled_extensions(config: BridgeConfig) -> list[type[Extension]]:
    """The extension classes the configuration turns on."""
    return [kind for kind in extension_types() if kind.enabled(config)]


__all__ = ["EXTENSIONS", "Extension", "ExtensionContext", "PublishedEvent", "enabled_extensions"]
