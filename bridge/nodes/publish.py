"""Publish node: the plate event goes out on the route's result topic."""

from __future__ import annotations

from bridge.events import encode, plate_event
from bridge.extensions.base import PublishedEvent
from bridge.messages import Message, route_topic
from bridge.nodes.base import Node


class PublishNode(Node):
    """Publishes the plate event (`schemas/plate-event.schema.json`); the end of a flow."""

    type = "publish"

    def process(self, msg: Message) -> None:
        route = self.context.route
        topic = route_topic(route.result_topic, self.context.base_topic, msg)
        event = plate_event(msg)
        self.context.publisher.publish(topic, encode(event), qos=route.qos, retain=route.retain)
        if self.context.on_event is not None:
            self.context.on_event(PublishedEvent("plate", topic, event, msg))
