"""Publish node: the plate event goes out on the route's result topic."""

from __future__ import annotations

from bridge.core.events import PublishedEvent, encode, plate_event
from bridge.core.messages import Message, route_topic
from bridge.nodes.base import Node
from bridge.nodes.consensus import ConsensusNode


class PublishNode(Node):
    """Publishes the plate event (`schemas/plate-event.schema.json`); the end of a flow.

    On a route with a consensus node the event is told to the extensions as `superseded`: the
    route's vehicle events report its vehicles, once each (bridge.extensions.base.PublishedEvent).
    """

    type = "publish"

    def process(self, msg: Message) -> None:
        route = self.context.route
        topic = route_topic(route.result_topic, self.context.base_topic, msg)
        event = plate_event(msg)
        self.context.publisher.publish(topic, encode(event), qos=route.qos, retain=route.retain)
        if self.context.on_event is not None:
            superseded = any(spec.type == ConsensusNode.type for spec in route.nodes)
            self.context.on_event(PublishedEvent("plate", topic, event, msg, superseded=superseded))
