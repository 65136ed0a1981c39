"""An example plate-bridge node: publish an alert when a plate on a watch list is read."""

from __future__ import annotations

import json

from pydantic import Field

from bridge.messages import Message, route_topic
from bridge.nodes import Node, NodeSettings

__all__ = ["WatchlistNode", "WatchlistSettings"]


class WatchlistSettings(NodeSettings):
    plates: list[str] = Field(min_length=1, description="Plates to watch for, any case, spaces ignored.")
    topic: str = Field("{base_topic}/{camera_id}/watchlist", description="Where alerts are published.")


def _normalize(plate: str) -> str:
    return plate.replace(" ", "").replace("-", "").lower()


class WatchlistNode(Node):
    """Publishes `{"plate", "camera_id", "topic"}` for every watched plate; passes the message on."""

    type = "watchlist"
    Settings = WatchlistSettings
    settings: WatchlistSettings

    def process(self, msg: Message) -> Message:
        watched = {_normalize(plate) for plate in self.settings.plates}
        for result in (msg.result or {}).get("results", []):
            if _normalize(str(result.get("plate", ""))) in watched:
                alert = {"plate": result["plate"], "camera_id": msg.camera_id, "topic": msg.topic}
                self.context.publisher.publish(
                    route_topic(self.settings.topic, self.context.base_topic, msg),
                    json.dumps(alert).encode(),
                    qos=self.context.route.qos,
                    retain=False,
                )
        return msg
