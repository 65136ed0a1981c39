"""The node contract: a small class with its own settings, `process(msg)`, optional start/stop."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from bridge.errors import ConfigError

if TYPE_CHECKING:
    from bridge.config import RouteConfig, WatchListConfig
    from bridge.extensions.base import PublishedEvent
    from bridge.messages import Message
    from bridge.reader.cascade import LocalFirst
    from bridge.reader.resilience import ReaderGuard


class Publisher(Protocol):
    """Hands an event to the broker; the MQTT layer implements it, nodes only call it."""

    def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None: ...


class Reader(Protocol):
    """What the recognize node needs of a plate reader (bridge.reader.PlateReader or the local engine)."""

    def read(
        self,
        image: bytes | str,
        *,
        regions: Iterable[str] = (),
        camera_id: str | None = None,
        timestamp: Any = None,
        mmc: bool | None = None,
        config: Mapping[str, Any] | None = None,
        filename: str = "image.jpg",
    ) -> dict[str, Any]: ...


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
