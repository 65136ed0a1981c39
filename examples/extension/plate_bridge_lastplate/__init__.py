"""Example extension: remembers the last plate each camera saw and answers on MQTT when asked.

Configuration (its own section of the bridge's YAML):

    last_plate:
      enabled: true
      topic: "{base_topic}/last_plate"   # publish `<topic>/get` to get the answer on `<topic>`
      cameras: 100                       # cameras remembered at most

`plate-bridge check-config` checks the section like any other: a misspelt key or a bad value is
reported at `last_plate.<key>`.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from bridge.config import StrictModel
from bridge.core.messages import check_publish_topic
from bridge.extensions import Extension, ExtensionContext, PublishedEvent

if TYPE_CHECKING:
    # Only for type hints: BridgeConfig is composed from the extensions' sections, this one's included.
    from bridge.config import BridgeConfig
    from bridge.mqtt import InboundMessage


class LastPlateConfig(StrictModel):
    """The last plate of each camera, answered on request."""

    enabled: bool = Field(False, description="Remember each camera's last plate and answer on MQTT.")
    topic: str = Field(
        "{base_topic}/last_plate",
        description="Where the answer is published; a message on <topic>/get asks for it.",
    )
    cameras: int = Field(100, ge=1, le=10_000, description="Cameras remembered at most (oldest go).")

    @field_validator("topic")
    @classmethod
    def _publishable(cls, value: str) -> str:
        try:
            check_publish_topic(value.format(base_topic="b"))
        except (KeyError, IndexError) as exc:
            raise ValueError(f"{value!r}: only {{base_topic}} may be used ({exc})") from None
        return value


class LastPlateExtension(Extension):
    """Remembers each camera's last plate; answers `<topic>/get` with all of them on `<topic>`."""

    name = "last_plate"
    config_key = "last_plate"
    config_model = LastPlateConfig

    def __init__(self, context: ExtensionContext) -> None:
        # Like a node's, the constructor only stores: nothing starts before start().
        super().__init__(context)
        self.settings: LastPlateConfig = self.section(context.config)
        self.topic = self.settings.topic.format(base_topic=context.base_topic)
        self._plates: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()  # on_event runs on worker threads, on_message on MQTT's
        self.answered = 0

    @classmethod
    def check_config(cls, config: BridgeConfig) -> None:
        # A cross-check against the rest of the configuration: a route that took the answers as
        # frames would read them back.
        settings: LastPlateConfig = config.last_plate
        topic = settings.topic.format(base_topic=config.mqtt.base_topic)
        if settings.enabled and any(route.topic_filter.match(topic) is not None for route in config.routes):
            raise ValueError(f"last_plate.topic: {topic!r} is taken by a route; choose another topic")

    def subscriptions(self) -> Sequence[tuple[str, int]]:
        return [(f"{self.topic}/get", 1)]

    def on_event(self, published: PublishedEvent) -> None:
        if not published.per_vehicle or published.kind == "error":
            return
        # A split route's event has its one `plate`; another's, the reader's results, best first.
        results = published.event.get("results") or [{}]
        plate = published.event.get("plate") or results[0].get("plate")
        if not plate:
            return
        with self._lock:
            self._plates[published.msg.camera_id] = plate
            self._plates.move_to_end(published.msg.camera_id)
            while len(self._plates) > self.settings.cameras:
                self._plates.popitem(last=False)

    def on_message(self, inbound: InboundMessage) -> None:
        with self._lock:
            answer = dict(self._plates)
            self.answered += 1
        self.context.publisher.publish(self.topic, json.dumps(answer).encode(), qos=1, retain=False)

    def stats(self) -> dict[str, int]:
        return {"answered": self.answered}
