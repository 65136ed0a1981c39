"""Features of the bridge as a whole, each an `Extension` with `start()`/`stop()`.

Extensions are plugins: the built-ins and third-party ones register alike, in the
`plate_bridge.extensions` entry-point group (bridge/extensions/registry.py finds them), each with its
own configuration section. `bridge.service` builds the ones the configuration turns on and wires them
through their hooks, so adding one touches no core file. An extension's module must be cheap to
import: what it needs beyond the core (an HTTP server, a client library) is imported in `start()`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.extensions.base import Extension, ExtensionContext, PublishedEvent
from bridge.extensions.hooks import Extensions
from bridge.extensions.registry import BUILTIN_EXTENSIONS, ENTRY_POINT_GROUP, extension_types

if TYPE_CHECKING:
    from bridge.config import BridgeConfig

# module:class of the built-ins, in start-up order (kept for code that read the old table).
EXTENSIONS: tuple[str, ...] = tuple(BUILTIN_EXTENSIONS.values())


def enabled_extensions(config: BridgeConfig) -> list[type[Extension]]:
    """The extension classes the configuration turns on."""
    return [kind for kind in extension_types() if kind.enabled(config)]


__all__ = [
    "BUILTIN_EXTENSIONS",
    "ENTRY_POINT_GROUP",
    "EXTENSIONS",
    "Extension",
    "ExtensionContext",
    "Extensions",
    "PublishedEvent",
    "enabled_extensions",
    "extension_types",
]
