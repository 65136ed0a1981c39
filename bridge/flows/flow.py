"""A route's flow: decode → recognize → validate → the route's own nodes → publish, Node-RED style."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import entry_points

from bridge.config import NodeSpec, RouteConfig
from bridge.errors import BridgeError, ConfigError, NodeError
from bridge.events import encode, error_event
from bridge.extensions.base import PublishedEvent
from bridge.messages import Message, route_topic
from bridge.nodes import (
    ConsensusNode,
    DecodeNode,
    DedupeNode,
    FilterNode,
    Node,
    NodeContext,
    PublishNode,
    RecognizeNode,
    SplitNode,
    ValidateNode,
    WatchlistNode,
)

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "plate_bridge.nodes"

# The built-in nodes by name; third-party nodes join through the entry-point group above or are
# named as `module:attribute` in a route's `nodes:` list.
BUILTIN_NODES: dict[str, type[Node]] = {
    node.type: node
    for node in (
        DecodeNode,
        RecognizeNode,
        ValidateNode,
        FilterNode,
        SplitNode,
        WatchlistNode,
        DedupeNode,
        ConsensusNode,
        PublishNode,
    )
}
HEAD_NODES = ("decode", "recognize", "validate")
TAIL_NODES = ("publish",)
# Metadata key of a reading made elsewhere, which the flow validates and publishes without a reader call.
READING_KEY = "reading"
TAKEN_AT_KEY = "taken_at"  # and when its frame was taken (a datetime), if known


def resolve_node_type(name: str) -> type[Node]:
    """The node class for a built-in name, an entry-point plugin name or `module:attribute`."""
    if name in BUILTIN_NODES:
        return BUILTIN_NODES[name]
    plugins = entry_points(group=ENTRY_POINT_GROUP).select(name=name)
    if plugins:
        target = next(iter(plugins)).load()
    elif ":" in name:
        module_name, _, attribute = name.partition(":")
        try:
            target = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"node {name!r} cannot be loaded: {type(exc).__name__}: {exc}") from None
    else:
        known = ", ".join(sorted(BUILTIN_NODES))
        raise ConfigError(
            f"unknown node {name!r}: use a built-in ({known}), a plugin of the {ENTRY_POINT_GROUP!r} "
            "entry-point group, or module:attribute"
        )
    if not (isinstance(target, type) and issubclass(target, Node)):
        raise ConfigError(f"node {name!r} is not a bridge.nodes.Node subclass")
    return target


def _outputs(result: Message | Iterable[Message] | None) -> list[Message]:
    """What a node returned, as a list; a plugin returning anything else fails loudly, by name."""
    if result is None:
        return []
    if isinstance(result, Message):
        return [result]
    if isinstance(result, Iterable) and not isinstance(result, str | bytes | Mapping):
        outputs = list(result)
        if all(isinstance(output, Message) for output in outputs):
            return outputs
    raise TypeError(f"a node returned {type(result).__name__}, not a Message, messages or None")


class Flow:
    """Runs one route's nodes over a message; every failure becomes an error event, never a crash."""

    def __init__(self, route: RouteConfig, nodes: Sequence[Node], context: NodeContext) -> None:
        self.route = route
        self.nodes = list(nodes)
        self.context = context

    @classmethod
    def build(cls, route: RouteConfig, context: NodeContext) -> Flow:
        specs = [NodeSpec(type=name) for name in HEAD_NODES]
        # The global watch lists apply to every route, unless the route places its own watchlist node.
        live = context.live_watchlists is not None
        if (context.watchlists or live) and not any(spec.type == WatchlistNode.type for spec in route.nodes):
            specs.append(NodeSpec(type=WatchlistNode.type))
        specs += route.nodes
        specs += [NodeSpec(type=name) for name in TAIL_NODES]
        nodes = [resolve_node_type(spec.type).from_settings(spec.settings, context) for spec in specs]
        return cls(route, nodes, context)

    def start(self) -> None:
        for node in self.nodes:
            node.start()

    def stop(self) -> None:
        for node in reversed(self.nodes):
            try:
                node.stop()
            except Exception:
                log.exception("route %s: node %s failed to stop", self.route.label, node.name)

    def run(self, msg: Message) -> None:
        """Pass `msg` through every node, depth first, as Node-RED passes msg objects along wires.

        A message whose metadata carries a `reading` (read elsewhere: a Plate Recognizer webhook)
        skips decode and recognize and starts at validate with that reading as its result.
        """
        reading = msg.metadata.get(READING_KEY)
        if reading is None:
            self._run_from(0, msg)
            return
        metadata = {
            key: value for key, value in msg.metadata.items() if key not in (READING_KEY, TAKEN_AT_KEY)
        }
        read = msg.replace(result=reading, timestamp=msg.metadata.get(TAKEN_AT_KEY), metadata=metadata)
        self._run_from(HEAD_NODES.index("validate"), read)

    def _run_from(self, index: int, msg: Message) -> None:
        if index >= len(self.nodes):
            return
        node = self.nodes[index]
        try:
            outputs = _outputs(node.process(msg))
        except BridgeError as error:
            self.report(msg, error)
            return
        except Exception as exc:
            log.exception("route %s: node %s failed on %s", self.route.label, node.name, msg.topic)
            self.report(
                msg, NodeError(f"node {node.name} failed: {type(exc).__name__}: {exc}", node=node.name)
            )
            return
        for output in outputs:
            self._run_from(index + 1, output)

    def report(self, msg: Message, error: BridgeError) -> None:
        """Publish an error event for `msg` on the route's error topic (and log it)."""
        topic = route_topic(self.route.error_topic, self.context.base_topic, msg)
        log.warning("route %s, %s: %s: %s", self.route.label, msg.topic, error.code, error.message)
        event = error_event(msg, error)
        try:
            self.context.publisher.publish(topic, encode(event), qos=self.route.qos, retain=False)
        except Exception:
            log.exception("route %s: cannot publish the error event on %s", self.route.label, topic)
            return
        if self.context.on_event is not None:
            self.context.on_event(PublishedEvent("error", topic, event, msg))
