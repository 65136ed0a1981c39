"""The extension contract: a feature of the bridge as a whole, with `start()`/`stop()`.

An extension (Home Assistant discovery, bridge/info, metrics, webhooks, a Frigate source, ...) is
built by the bridge when its configuration turns it on. Like a node, its constructor only stores;
`start()` acquires. It sees the bridge through an `ExtensionContext` and a handful of hooks, never
through the bridge's internals (Zigbee2MQTT's `lib/extension/extension.ts` is the model).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from bridge.core.events import EventKind, PublishedEvent
from bridge.core.protocols import Publisher, Reader

if TYPE_CHECKING:
    from datetime import datetime

    from pydantic import BaseModel

    from bridge.config import BridgeConfig
    from bridge.core.messages import Message, Origin
    from bridge.flows.stats import FrameStats
    from bridge.mqtt import InboundMessage
    from bridge.nodes.watchlist import LiveWatchlists


class Submit(Protocol):
    """`submit(topic, payload, metadata=None, *, camera_id=None, taken_at=None, reading=None,
    origin=None)`: hand a frame to the first route that takes `topic`, as if it had arrived there;
    False when none does. `camera_id` and `taken_at` (when the frame was taken) override what the
    route would say, for sources that know; `reading` is a reading made elsewhere (the flow starts at
    validate with it); `origin` says where a source got the frame (its events carry it)."""

    def __call__(
        self,
        topic: str,
        payload: bytes,
        metadata: Mapping[str, Any] | None = None,
        *,
        camera_id: str | None = None,
        taken_at: datetime | None = None,
        reading: Mapping[str, Any] | None = None,
        origin: Origin | None = None,
    ) -> bool: ...


@dataclass(frozen=True, slots=True)
class ExtensionContext:
    """The bridge as an extension sees it: configuration, a publisher and read-only views."""

    config: BridgeConfig
    publisher: Publisher
    """`publisher.publish(topic, payload, qos=..., retain=..., properties=None)`: queued by the MQTT
    client, safe from any thread."""
    health: Callable[[], dict[str, Any]]
    """The bridge's counters (what `bridge/health` carries)."""
    reader: Reader | None = None
    """The configured reader (None before start or when a test gives none)."""
    submit: Submit | None = None
    """Hand a frame to the routes as if it had arrived on a topic (sources such as Frigate)."""
    reads: Callable[[str], bool] | None = None
    """`reads(topic)`: whether the bridge takes messages on `topic` itself (a route's filter or an
    extension's subscription matches it)."""
    frame_stats: FrameStats | None = None
    """The bridge's frame counters (the one registry `health` also reads)."""
    watchlists: LiveWatchlists | None = None
    """The run-time watch lists every route's watchlist node matches (set when `history` is on; the
    history extension fills it from its store)."""

    @property
    def base_topic(self) -> str:
        return self.config.mqtt.base_topic


class Extension:
    """A feature of the bridge as a whole. Subclasses set `name` and override what they need.

    An extension is registered in the `plate_bridge.extensions` entry-point group (the built-ins too,
    see bridge/extensions/registry.py) and brings its own configuration: `config_key` names its
    section of the YAML, `config_model` checks it, `check_config` checks it against the rest.

    Threads: the hooks are called where the thing happens, not on one thread of their own, so one
    extension's hooks can run at the same time on different threads. `on_connected` and
    `on_message` run on the MQTT network thread; `on_frame` on the thread that handed the frame in
    (the MQTT thread, or a source's own thread when it calls `submit`); `on_event` on a reader
    worker, on the consensus node's timer thread (a vehicle leaving), on the thread that handed a
    frame in (one refused before it is queued: too large, or arriving during shutdown) or on the
    thread calling `Bridge.stop()` (frames dropped at shutdown, vehicles still open). So an
    extension keeps its state under its own lock, returns quickly, and hands slow or blocking work
    (HTTP calls, waiting) to a thread of its own, as the Frigate source and the webhook sender do.
    """

    name: ClassVar[str] = ""
    edits_watchlists: ClassVar[bool] = False
    """Whether it changes watch lists at run time (`ExtensionContext.watchlists`): the bridge then
    gives every route a watchlist node and the extension a `LiveWatchlists` to fill."""
    config_key: ClassVar[str | None] = None
    """The top-level key of the extension's section (`homeassistant:`); None: it has none."""
    config_model: ClassVar[type[BaseModel] | None] = None
    """The pydantic model of that section. Derive it from `bridge.config.StrictModel` (unknown keys
    are errors) and give every field a default: the section may be left out. Extensions that share a
    section (the webhook receiver and sender) name the same model."""

    def __init__(self, context: ExtensionContext) -> None:
        self.context = context

    @classmethod
    def section(cls, config: BridgeConfig) -> Any:
        """The extension's own section of `config` (None when it declares none)."""
        return getattr(config, cls.config_key) if cls.config_key else None

    @classmethod
    def enabled(cls, config: BridgeConfig) -> bool:
        """Whether the configuration turns this extension on (checked before it is built); by
        default the section's `enabled` field."""
        return bool(getattr(cls.section(config), "enabled", False))

    @classmethod
    def check_config(cls, config: BridgeConfig) -> None:
        """Check the section against the whole configuration (a route must take the extension's
        topic, the protocol must be MQTT 5...); raise ValueError saying what to change. Called on
        every configuration loaded, whether the extension is enabled or not."""

    @classmethod
    def published_subtrees(cls, config: BridgeConfig) -> Sequence[str]:
        """Topic prefixes it publishes under outside the base topic (Home Assistant's discovery
        prefix): the bridge ignores frames there, as it does its own. Asked before it is built."""
        return ()

    def subscriptions(self) -> Sequence[tuple[str, int]]:
        """Topic filters (and QoS) whose messages go to `on_message` instead of the routes."""
        return ()

    def start(self) -> None:
        """Acquire what the extension needs (threads, sockets); called once, before MQTT connects."""

    def stop(self) -> None:
        """Release it; called once at shutdown, after the flows have finished."""

    def on_connected(self) -> None:
        """Called on every (re)connection to the broker, after the bridge's subscriptions are sent;
        on the MQTT thread."""

    def on_message(self, inbound: InboundMessage) -> None:
        """A message on one of `subscriptions()`; called on the MQTT thread: return quickly."""

    def on_frame(self, msg: Message) -> None:
        """A frame a route queued (before it is read); called on the MQTT thread, or on a source's
        thread for a frame it submitted: return quickly."""

    def on_event(self, published: PublishedEvent) -> None:
        """A plate, vehicle or error event a flow published; called on whichever thread published it
        (see the class docstring). See `PublishedEvent` for which to act on."""

    def stats(self) -> dict[str, int]:
        """Counters of the extension's own, carried by `bridge/health` under `extensions.<name>`."""
        return {}


__all__ = ["EventKind", "Extension", "ExtensionContext", "PublishedEvent", "Submit"]
