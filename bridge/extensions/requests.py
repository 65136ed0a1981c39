"""MQTT 5 request/response: a frame published with a `response_topic` is answered on that topic.

A script or a Node-RED flow publishes a frame with the MQTT 5 `response_topic` (and usually
`correlation_data`) properties and awaits the plate event (or the error event) there, with the same
correlation data: the bridge as a service to call, beside its usual result and error topics.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from bridge.config import StrictModel
from bridge.core.events import encode
from bridge.core.messages import OwnTopics, TopicFilter, check_publish_topic
from bridge.extensions.base import Extension, ExtensionContext, PublishedEvent

if TYPE_CHECKING:
    from bridge.config import BridgeConfig

log = logging.getLogger(__name__)

# Home Assistant's default discovery prefix: refused even when the bridge's discovery is off or uses
# another prefix, since Home Assistant may still listen there (an answer would create an entity).
HOME_ASSISTANT_PREFIX = "homeassistant"
# Refused response topics remembered so each is logged once; the least recently refused is forgotten.
REMEMBERED_REFUSALS = 256


class RequestsConfig(StrictModel):
    """MQTT 5 request/response: a frame that names a response topic gets its event there too."""

    enabled: bool = Field(
        False,
        description="Answer a frame published with an MQTT 5 response_topic on that topic (with its "
        "correlation_data); needs mqtt.protocol '5'.",
    )
    qos: Literal[0, 1, 2] = Field(1, description="QoS of the answers.")
    message_expiry: int | None = Field(
        60, ge=1, description="Seconds the broker keeps an answer nobody has taken yet; null: forever."
    )
    allowed_topics: tuple[str, ...] = Field(
        (),
        description="MQTT filters a response topic must match to be answered; empty: any topic the bridge "
        "does not itself publish or read, nor Home Assistant's discovery prefix, nor a $ topic.",
    )

    @field_validator("allowed_topics")
    @classmethod
    def _filters(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            if TopicFilter.parse(text).share_group:
                raise ValueError(f"{text!r}: a response topic is published to, not shared")
        return value


class RequestsExtension(Extension):
    """Publishes each plate or error event of a frame that carried a response topic to that topic.

    A split route answers once per plate; a frame a filter node drops gets no answer, so callers wait
    with a timeout. A response topic is refused — the frame is still read and its events published,
    only the answer is not — when it is one the bridge publishes (its base topic's subtree, a route's
    result or error topic), one it reads (a route's filter, an extension's subscription: the answer
    would come back in as a frame), under Home Assistant's discovery prefix (an answer would create an
    entity), a `$` topic, or off `requests.allowed_topics` when that is set.
    """

    name = "requests"
    config_key = "requests"
    config_model = RequestsConfig

    def __init__(self, context: ExtensionContext) -> None:
        super().__init__(context)
        config = context.config
        settings = config.requests
        self._qos = settings.qos
        self._expiry = settings.message_expiry
        self._allowed = [TopicFilter.parse(text) for text in settings.allowed_topics]
        self._own = OwnTopics(
            [context.base_topic, config.homeassistant.discovery_prefix, HOME_ASSISTANT_PREFIX],
            [template for route in config.routes for template in (route.result_topic, route.error_topic)],
            context.base_topic,
        )
        self._lock = threading.Lock()
        self._refused: OrderedDict[str, None] = OrderedDict()
        self.refused = 0

    @classmethod
    def enabled(cls, config: BridgeConfig) -> bool:
        return config.requests.enabled

    @classmethod
    def check_config(cls, config: BridgeConfig) -> None:
        if config.requests.enabled and config.mqtt.protocol != "5":
            raise ValueError("requests.enabled needs mqtt.protocol '5' (response topics are MQTT 5)")

    def stats(self) -> dict[str, int]:
        return {"refused": self.refused}

    def refusal(self, topic: str) -> str | None:
        """Why an answer may not be published on `topic`, or None when it may."""
        try:
            check_publish_topic(topic)
        except ValueError as exc:
            return str(exc)
        if topic.startswith("$"):
            return "a $ topic belongs to the broker"
        if self._own.match(topic):
            return "one the bridge or Home Assistant discovery publishes on"
        if self.context.reads is not None and self.context.reads(topic):
            return "one the bridge reads (a route or an extension): the answer would come back in"
        if self._allowed and not any(allowed.match(topic) is not None for allowed in self._allowed):
            return "not in requests.allowed_topics"
        return None

    def on_event(self, published: PublishedEvent) -> None:
        topic = published.msg.response_topic
        if not topic:
            return
        reason = self.refusal(topic)
        if reason is not None:
            self._refuse(published.msg.topic, topic, reason)
            return
        properties: dict[str, Any] = {"content_type": "application/json", "payload_format_indicator": 1}
        correlation = published.msg.correlation_data
        if correlation is not None:
            properties["correlation_data"] = correlation
        if self._expiry is not None:
            properties["message_expiry_interval"] = self._expiry
        # Which kind of answer it is, without parsing it (plate events and error events differ).
        properties["user_property"] = [("kind", published.kind)]
        self.context.publisher.publish(
            topic, encode(dict(published.event)), qos=self._qos, retain=False, properties=properties
        )

    def _refuse(self, frame_topic: str, topic: str, reason: str) -> None:
        with self._lock:
            self.refused += 1
            first = topic not in self._refused
            self._refused[topic] = None
            self._refused.move_to_end(topic)
            if len(self._refused) > REMEMBERED_REFUSALS:
                self._refused.popitem(last=False)
        if first:
            # Once per topic: a caller retrying (or flooding) must not flood the log.
            log.warning(
                "not answering a frame on %s: its response topic %s is %s (logged once per topic)",
                frame_topic,
                topic,
                reason,
            )
