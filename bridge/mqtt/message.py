"""Messages at the edge: `InboundMessage`, built once from paho's MQTTMessage; the MQTT 5 properties
of a PUBLISH from snake_case names; and the recent deliveries that tell a broker's redelivery from a
new message."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import MQTTException, Properties


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message as received, built once from paho's MQTTMessage at the edge (as aiomqtt does)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    # MQTT 5 request/response: where the sender awaits an answer, and what ties the answer to it.
    response_topic: str | None = None
    correlation_data: bytes | None = None


def publish_properties(values: Mapping[str, Any]) -> Properties:
    """paho's PUBLISH `Properties` from snake_case names (`correlation_data` -> CorrelationData).

    Raises ValueError for a name MQTT 5 does not define for PUBLISH (paho's own check)."""
    properties = Properties(PacketTypes.PUBLISH)
    for name, value in values.items():
        try:
            setattr(properties, "".join(part.title() for part in name.split("_")), value)
        except (AttributeError, MQTTException) as exc:
            raise ValueError(f"{name!r} is not an MQTT 5 publish property ({exc})") from None
    return properties


class DeliveryRepeats:
    """The last `size` QoS 1/2 deliveries, to recognise a broker's redelivery (DUP flag) of one of them.

    A delivery is known by its packet id, topic, length and a sample of its payload: a broker reuses
    the packet id for the redelivery, and the sample makes a different message with the same id,
    topic and length (ids wrap at 65,535) practically impossible to mistake for it.
    """

    def __init__(self, size: int = 1024) -> None:
        self._keys: OrderedDict[tuple[int, str, int, bytes], None] = OrderedDict()
        self._size = size

    @staticmethod
    def _key(message: paho.MQTTMessage) -> tuple[int, str, int, bytes]:
        payload = message.payload
        middle = len(payload) // 2
        return message.mid, message.topic, len(payload), payload[:32] + payload[middle : middle + 32]

    def seen_before(self, message: paho.MQTTMessage) -> bool:
        return self._key(message) in self._keys

    def remember(self, message: paho.MQTTMessage) -> None:
        if message.qos == 0:
            return  # QoS 0 is never redelivered
        self._keys[self._key(message)] = None
        if len(self._keys) > self._size:
            self._keys.popitem(last=False)
