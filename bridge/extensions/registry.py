"""Finding the extensions: the built-ins and third-party plugins, through one entry-point group.

An extension registers in the `plate_bridge.extensions` group of its package's metadata, the
built-ins in plate-bridge's own pyproject.toml; `BUILTIN_EXTENSIONS` repeats those (a test keeps them
equal) so a source checkout that was never installed still has them. The registry imports each one,
checks it, and composes the configuration model (`bridge.config.BridgeConfig`) from the core's
sections and theirs. A plugin that cannot be used is a problem naming it, which `load_config` reports
with the configuration's own problems: the bridge does not start without an extension it was given.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import BaseModel

from bridge.config import CORE_KEYS, CoreConfig, compose
from bridge.extensions.base import Extension

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "plate_bridge.extensions"

# Entry-point name -> module:class, in start-up order (third-party extensions start after, by name).
BUILTIN_EXTENSIONS: dict[str, str] = {
    "info": "bridge.extensions.info:BridgeInfoExtension",
    "homeassistant": "bridge.extensions.homeassistant:HomeAssistantExtension",
    "requests": "bridge.extensions.requests:RequestsExtension",
    "metrics": "bridge.extensions.metrics:MetricsExtension",
    "frigate": "bridge.extensions.frigate:FrigateExtension",
    "webhook-receiver": "bridge.extensions.webhooks:WebhookReceiver",
    "webhook-sender": "bridge.extensions.webhooks:WebhookSender",
    "history": "bridge.extensions.history:HistoryExtension",
    "web": "bridge.extensions.web:WebExtension",
}
OWN_DISTRIBUTION = "plate-bridge"


@dataclass(frozen=True, slots=True)
class Plugin:
    """One registration: its entry-point name, `module:attribute` and the distribution it came from."""

    name: str
    value: str
    distribution: str

    @property
    def label(self) -> str:
        return f"extension {self.name!r} ({self.value}, from {self.distribution})"


@dataclass(frozen=True, slots=True)
class Registry:
    """The extensions found, in start-up order, what was wrong with the others, and the config model."""

    types: tuple[type[Extension], ...]
    problems: tuple[str, ...]
    config: type[CoreConfig]


def _distribution(entry: EntryPoint) -> str:
    dist = entry.dist
    return dist.name if dist is not None else "an unknown distribution"


def plugins() -> tuple[list[Plugin], list[str]]:
    """Every registration of the group, the built-ins first; and the names that clash."""
    found = [Plugin(name, value, OWN_DISTRIBUTION) for name, value in BUILTIN_EXTENSIONS.items()]
    problems: list[str] = []
    seen: dict[str, Plugin] = {plugin.name: plugin for plugin in found}
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda entry: entry.name):
        plugin = Plugin(entry.name, entry.value, _distribution(entry))
        if plugin.distribution.lower().replace("_", "-") == OWN_DISTRIBUTION:
            continue  # the built-ins, listed above (the table wins over an older install's metadata)
        if plugin.name in seen:
            problems.append(f"{plugin.label}: the name is taken by {seen[plugin.name].label}")
            continue
        seen[plugin.name] = plugin
        found.append(plugin)
    return found, problems


def load(plugin: Plugin) -> type[Extension]:
    """Import a registration's class and check that it keeps the extension contract; ValueError
    (naming the plugin) when it cannot be used."""
    module_name, _, attribute = plugin.value.partition(":")
    try:
        target: Any = import_module(module_name)
        for part in filter(None, attribute.split(".")):
            target = getattr(target, part)
    except Exception as exc:
        raise ValueError(f"{plugin.label} cannot be loaded: {type(exc).__name__}: {exc}") from None
    if not (isinstance(target, type) and issubclass(target, Extension)):
        raise ValueError(f"{plugin.label} is not a bridge.extensions.Extension subclass")
    key, model = target.config_key, target.config_model
    if key is not None:
        if not key.isidentifier():
            raise ValueError(f"{plugin.label}: config_key {key!r} is not a valid section name")
        if key in CORE_KEYS:
            raise ValueError(f"{plugin.label}: config_key {key!r} is one of the bridge's own sections")
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise ValueError(f"{plugin.label}: config_key {key!r} needs a pydantic config_model")
    return target


def _described(kind: type[Extension]) -> str:
    doc = (kind.config_model.__doc__ if kind.config_model else None) or kind.__doc__ or ""
    return " ".join(doc.strip().split("\n\n", 1)[0].split())


def _check(kind: type[Extension]) -> Callable[[Any], None]:
    def check(config: Any) -> None:
        try:
            kind.check_config(config)
        except (ValueError, AssertionError):
            raise
        except Exception as exc:
            # A bug in a plugin's check is reported as a problem with its name, not a traceback.
            raise ValueError(
                f"extension {kind.name or kind.__name__}: its configuration check failed: "
                f"{type(exc).__name__}: {exc}"
            ) from None

    return check


def build() -> Registry:
    """Find and load every extension and compose the configuration model; never raises for a
    plugin's fault (it becomes a problem, and its section is left out)."""
    found, problems = plugins()
    types: list[type[Extension]] = []
    sections: dict[str, tuple[type[BaseModel], str]] = {}
    owners: dict[str, type[Extension]] = {}
    for plugin in found:
        try:
            kind = load(plugin)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        key = kind.config_key
        if key is not None and kind.config_model is not None:
            if key in sections and sections[key][0] is not kind.config_model:
                problems.append(f"{plugin.label}: section {key!r} is already {owners[key].__name__}'s")
                continue
            sections.setdefault(key, (kind.config_model, _described(kind)))
            owners.setdefault(key, kind)
        types.append(kind)
    for problem in problems:
        log.error("%s", problem)
    config = compose(sections, [_check(kind) for kind in types])
    return Registry(tuple(types), tuple(problems), config)


_lock = threading.RLock()
_registry: Registry | None = None
_building = False


def registry() -> Registry:
    """The registry of this process, built on first use."""
    global _registry, _building  # noqa: PLW0603 -- one registry per process, like the entry points
    with _lock:
        if _registry is None:
            if _building:
                # An extension module asked for BridgeConfig while being imported to compose it.
                raise ImportError(
                    "bridge.config.BridgeConfig is composed from the extensions: import it only under "
                    "TYPE_CHECKING in an extension's module"
                )
            _building = True
            try:
                _registry = build()
            finally:
                _building = False
        return _registry


def extension_types() -> list[type[Extension]]:
    """Every extension class found, in start-up order."""
    return list(registry().types)
