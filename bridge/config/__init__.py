"""Configuration: pydantic models per section, loaded from YAML and the environment by `load_config()`.

The bridge's own sections live here, one module each (`mqtt`, `reader`, `routes`, `watchlists`,
`core` for the top level). An extension's section lives beside the extension and joins the top level
when the extension is installed: `BridgeConfig` is composed on first use from `CoreConfig` and the
sections of the extensions registered in the `plate_bridge.extensions` entry-point group
(bridge/extensions/registry.py). The names below all stay importable from `bridge.config`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from bridge.config.base import StrictModel, is_loopback
from bridge.config.core import (
    CORE_KEYS,
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_MAX_QUEUED_BYTES,
    DEFAULT_MAX_QUEUED_FRAMES,
    ENV_PREFIX,
    CoreConfig,
    compose,
)
from bridge.config.loading import bridge_config, format_problems, load_config
from bridge.config.mqtt import MQTTConfig, TLSConfig
from bridge.config.reader import (
    CLOUD_URL,
    LOCAL_READER,
    TOKEN_ENV,
    LocalFirstConfig,
    ReaderConfig,
    RouteLocalFirstConfig,
)
from bridge.config.routes import NodeSpec, Region, ReuseConfig, RouteConfig
from bridge.config.watchlists import STRICT_MIN_SCORE, WatchedPlate, WatchListConfig

if TYPE_CHECKING:
    BridgeConfig = CoreConfig

# The models of the built-in extensions' sections, where they moved when each extension took its own
# section; still importable from here for code written before.
_MOVED = {
    "HomeAssistantConfig": "bridge.extensions.homeassistant.config",
    "RequestsConfig": "bridge.extensions.requests",
    "MetricsConfig": "bridge.extensions.metrics",
    "FrigateConfig": "bridge.extensions.frigate",
    "WebhookListenConfig": "bridge.extensions.webhooks",
    "WebhookTarget": "bridge.extensions.webhooks",
    "WebhooksConfig": "bridge.extensions.webhooks",
}


def __getattr__(name: str) -> Any:
    # PEP 562: `BridgeConfig` is built when first asked for, so importing this package imports no
    # extension (an extension's module imports this package for its base model).
    if name == "BridgeConfig":
        return bridge_config()
    if name in _MOVED:
        return getattr(import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CLOUD_URL",
    "CORE_KEYS",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "DEFAULT_MAX_QUEUED_BYTES",
    "DEFAULT_MAX_QUEUED_FRAMES",
    "ENV_PREFIX",
    "LOCAL_READER",
    "STRICT_MIN_SCORE",
    "TOKEN_ENV",
    "BridgeConfig",
    "CoreConfig",
    "FrigateConfig",
    "HomeAssistantConfig",
    "LocalFirstConfig",
    "MQTTConfig",
    "MetricsConfig",
    "NodeSpec",
    "ReaderConfig",
    "Region",
    "RequestsConfig",
    "ReuseConfig",
    "RouteConfig",
    "RouteLocalFirstConfig",
    "StrictModel",
    "TLSConfig",
    "WatchListConfig",
    "WatchedPlate",
    "WebhookListenConfig",
    "WebhookTarget",
    "WebhooksConfig",
    "bridge_config",
    "compose",
    "format_problems",
    "is_loopback",
    "load_config",
]
