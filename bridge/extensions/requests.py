"""MQTT 5 request/response: a frame published with a `response_topic` is answered on that topic.

A script or a Node-RED flow publishes a frame with the MQTT 5 `response_topic` (and usually
`correlation_data`) properties and awaits the plate event (or the error event) there, with the same
correlation data: the bridge as a service to call, beside its usual result and error topics.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from bridge.events import encode
from bridge.extensions.base import Extension, ExtensionContext, PublishedEvent
from bridge.messages import check_publish_topic

if TYPE_CHECKING:
    from bridge.config import BridgeConfig

log = logging.getLogger(__name__)


class RequestsExtension(Extension):
    """Publishes each plate or error event of a frame that carried a response topic to that topic.

    A split route answers once per plate; a frame a filter node drops gets no answer, so callers wait
    with a timeout. Response topics under the bridge's own base topic are refused: a caller must not
    be able to make the bridge publish its state or another camera's events.
    """

    name = "requests"

    def __init__(self, context: ExtensionContext) -> None:
        super().__init__(context)
        settings = context.config.requests
        self._qos = settings.qos
        self._expiry = settings.message_expiry
        self._own_prefix = f"{context.base_topic}/"

    @classmethod
    def enabled(cls, config: BridgeConfig) -> bool:
        return config.requests.enabled

    def on_event(self, published: PublishedEvent) -> None:
        metadata = published.msg.metadata
        topic = metadata.get("response_topic")
        if not topic:
            return
        try:
            check_publish_topic(topic)
        except ValueError as exc:
            log.warning("not answering a frame on %s: %s", published.msg.topic, exc)
            return
        if topic == self.context.base_topic or topic.startswith(self._own_prefix):
            log.warning(
                "not answering a frame on %s: its response topic %s is under the bridge's own %s/",
                published.msg.topic,
                topic,
                self.context.base_topic,
            )
            return
        properties: dict[str, Any] = {"content_type": "application/json", "payload_format_indicator": 1}
        correlation = metadata.get("correlation_data")
        if correlation is not None:
            properties["correlation_data"] = correlation
        if self._expiry is not None:
            properties["message_expiry_interval"] = self._expiry
        # Which kind of answer it is, without parsing it (plate events and error events differ).
        properties["user_property"] = [("kind", published.kind)]
        self.context.publish(topic, encode(dict(published.event)), self._qos, False, properties)
