"""An example plate-bridge node: publish an alert of its own when a plate on a short list is read.

The bridge has a built-in `watchlist` node (named lists, labels, tolerance, patterns); this plugin
shows how a third-party node joins a flow, so it is named `watchlist_alert` to stay out of its way.
"""

from __future__ import annotations

import json

from pydantic import Field

from bridge.core.messages import Message, route_topic
from bridge.core.plates import normalize_plate
from bridge.nodes import Node, NodeSettings

__all__ = ["WatchlistAlertNode", "WatchlistAlertSettings"]


class WatchlistAlertSettings(NodeSettings):
    plates: list[str] = Field(min_length=1, description="Plates to watch for, any case, spaces ignored.")
    topic: str = Field("{base_topic}/{camera_id}/watchlist", description="Where alerts are published.")


class WatchlistAlertNode(Node):
    """Publishes `{"plate", "camera_id", "topic"}` for every watched plate; passes the message on."""

    type = "watchlist_alert"
    Settings = WatchlistAlertSettings
    settings: WatchlistAlertSettings

    def process(self, msg: Message) -> Message:
        watched = {normalize_plate(plate) for plate in self.settings.plates}
        for result in (msg.result or {}).get("results", []):
            if normalize_plate(str(result.get("plate", ""))) in watched:
                alert = {"plate": result["plate"], "camera_id": msg.camera_id, "topic": msg.topic}
                self.context.publisher.publish(
                    route_topic(self.settings.topic, self.context.base_topic, msg),
                    json.dumps(alert).encode(),
                    qos=self.context.route.qos,
                    retain=False,
                )
        return msg
