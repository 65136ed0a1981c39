"""The node contract: a small class with its own settings, `process(msg)`, optional start/stop."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from bridge.core.errors import ConfigError
from bridge.core.protocols import Publisher, Reader

if TYPE_CHECKING:
    from bridge.config import RouteConfig, WatchListConfig
    from bridge.core.events import PublishedEvent
    from bridge.core.messages import Message
    from bridge.nodes.watchlist import LiveWatchlists
    from bridge.reader.cascade import LocalFirst
    from bridge.reader.resilience import ReaderGuard


@dataclass(frozen=True, slots=True)
class NodeContext:
    """What a route gives its nodes: its settings and the shared services, nothing global."""

    route: RouteConfig
    base_topic: str
    publisher: Publisher
    reader: Reader | None = None
    guard: ReaderGuard | None = None
    max_payload_bytes: int = 10 * 1024 * 1024
    on_event: Callable[[PublishedEvent], None] | None = None
    """Told of every plate and error event the route publishes (the bridge's extensions listen)."""
    watchlists: Mapping[str, WatchListConfig] = field(default_factory=dict)
    """The global watch lists (`watchlists:`), for the watchlist node."""
    live_watchlists: LiveWatchlists | None = None
    """Watch lists edited at run time (the history store's), joined to the global ones."""
    local_first: LocalFirst | None = None
    """The offline reader read first when `reader.local_first` is enabled (the recognize node)."""


class NodeSettings(BaseModel):
    """Base of every node's settings: unknown keys are errors, like the rest of the configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Node:
    """A step of a flow. The constructor only stores; `start()` acquires; `process()` does the work.

    `process` returns a new message, several (a split), or None (filtered out). It raises a
    `BridgeError` for an expected failure, which the flow turns into an error event.
    """

    type: ClassVar[str] = ""
    Settings: ClassVar[type[NodeSettings]] = NodeSettings

    def __init__(self, settings: NodeSettings, context: NodeContext) -> None:
        self.settings = settings
        self.context = context

    @classmethod
    def from_settings(cls, raw: Mapping[str, Any], context: NodeContext) -> Self:
        """Build the node from its raw settings; a ConfigError names the route, node and key."""
        try:
            settings = cls.Settings.model_validate(dict(raw))
        except ValidationError as exc:
            problems = [
                f"routes[{context.route.label}].nodes.{cls.type or cls.__name__}."
                f"{'.'.join(map(str, err['loc'])) or 'settings'}: {err['msg']}"
                for err in exc.errors(include_input=False, include_url=False)
            ]
            raise ConfigError(problems[0], problems=problems) from None
        return cls(settings, context)

    @property
    def name(self) -> str:
        return self.type or type(self).__name__

    def start(self) -> None:
        """Acquire what the node needs (connections, models); called once before any message."""

    def stop(self) -> None:
        """Release it; called once at shutdown."""

    def process(self, msg: Message) -> Message | Iterable[Message] | None:
        raise NotImplementedError
