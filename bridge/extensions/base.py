"""The extension contract: a feature of the bridge as a whole, with `start()`/`stop()`.

An extension (Home Assistant discovery, bridge/info, metrics, webhooks, a Frigate source, ...) is
built by the bridge when its configuration turns it on. Like a node, its constructor only stores;
`start()` acquires. It sees the bridge through an `ExtensionContext` and a handful of hooks, never
through the bridge's internals (Zigbee2MQTT's `lib/extension/extension.ts` is the model).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

if TYPE_CHECKING:
    from datetime import datetime

    from bridge.config import BridgeConfig
    from bridge.messages import Message
    from bridge.mqtt import InboundMessage
    from bridge.nodes.base import Reader
    from bridge.nodes.watchlist import LiveWatchlists

EventKind = Literal["plate", "vehicle", "error"]
"""`plate`: a frame's plate event (its result topic); `vehicle`: a consensus node's event for a vehicle
that has left (its vehicle topic; a plate event by its schema); `error`: an error event."""


@dataclass(frozen=True, slots=True)
class PublishedEvent:
    """An event a flow has just published: its kind, topic, the document and the message it came from.

    A vehicle counts once. On a route with a consensus node, each of its frames still gets its `plate`
    event (`superseded`, when the node's `per_frame` is on) and the vehicle one `vehicle` event when it
    leaves: extensions that notify or count per vehicle (Home Assistant, webhooks, metrics' events)
    act on the events that are `per_vehicle` and skip the superseded ones; per-frame answers (MQTT 5
    request/response, Frigate's sub label) keep using the frames' plate events.
    """

    kind: EventKind
    topic: str
    event: Mapping[str, Any]
    msg: Message
    superseded: bool = False
    """A frame's plate event on a route whose vehicles are reported by vehicle events (consensus)."""

    @property
    def per_vehicle(self) -> bool:
        """The one event of a vehicle: a vehicle event, or a plate event of a route without consensus."""
        return self.kind == "vehicle" or (self.kind == "plate" and not self.superseded)


class Publish(Protocol):
    """`publish(topic, payload, qos, retain, properties=None)`: queued by the MQTT client, safe from any
    thread; `properties` are MQTT 5 publish properties by snake_case name (`correlation_data`, ...)."""

    def __call__(
        self, topic: str, payload: bytes, qos: int, retain: bool, properties: Mapping[str, Any] | None = None
    ) -> None: ...


class Submit(Protocol):
    """`submit(topic, payload, metadata, *, camera_id=None, taken_at=None)`: hand a frame to the first
    route that takes `topic`, as if it had arrived there; False when none does. `camera_id` and
    `taken_at` (when the frame was taken) override what the route would say, for sources that know."""

    def __call__(
        self,
        topic: str,
        payload: bytes,
        metadata: Mapping[str, Any] | None = None,
        *,
        camera_id: str | None = None,
        taken_at: datetime | None = None,
    ) -> bool: ...


@dataclass(frozen=True, slots=True)
class ExtensionContext:
    """The bridge as an extension sees it: configuration, a publisher and read-only views."""

    config: BridgeConfig
    publish: Publish
    """`publish(topic, payload, qos, retain, properties=None)`: queued by the MQTT client, safe from any
    thread."""
    health: Callable[[], dict[str, Any]]
    """The bridge's counters (what `bridge/health` carries)."""
    reader: Reader | None = None
    """The configured reader (None before start or when a test gives none)."""
    submit: Submit | None = None
    """Hand a frame to the routes as if it had arrived on a topic (sources such as Frigate)."""
    reads: Callable[[str], bool] | None = None
    """`reads(topic)`: whether the bridge takes messages on `topic` itself (a route's filter or an
    extension's subscription matches it)."""
    watchlists: LiveWatchlists | None = None
    """The run-time watch lists every route's watchlist node matches (set when `history` is on; the
    history extension fills it from its store)."""

    @property
    def base_topic(self) -> str:
        return self.config.mqtt.base_topic


class Extension:
    """A feature of the bridge as a whole. Subclasses set `name` and override what they need."""

    name: ClassVar[str] = ""

    def __init__(self, context: ExtensionContext) -> None:
        self.context = context

    @classmethod
    def enabled(cls, config: BridgeConfig) -> bool:
        """Whether the configuration turns this extension on (checked before it is built)."""
        return False

    def subscriptions(self) -> Sequence[tuple[str, int]]:
        """Topic filters (and QoS) whose messages go to `on_message` instead of the routes."""
        return ()

    def start(self) -> None:
        """Acquire what the extension needs (threads, sockets); called once, before MQTT connects."""

    def stop(self) -> None:
        """Release it; called once at shutdown, after the flows have finished."""

    def on_connected(self) -> None:
        """Called on every (re)connection to the broker, after the bridge's subscriptions are sent."""

    def on_message(self, inbound: InboundMessage) -> None:
        """A message on one of `subscriptions()`; called on the MQTT thread: return quickly."""

    def on_frame(self, msg: Message) -> None:
        """A frame a route accepted (before it is read); called on the MQTT thread: return quickly."""

    def on_event(self, published: PublishedEvent) -> None:
        """A plate, vehicle or error event a flow published; called on a worker thread (a vehicle
        event: on the consensus node's timer thread too). See `PublishedEvent` for which to act on."""

    def stats(self) -> dict[str, int]:
        """Counters of the extension's own, carried by `bridge/health` under `extensions.<name>`."""
        return {}
