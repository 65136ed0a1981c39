"""`SimpleClient`: a plain MQTT client for the camera simulator (`plate-bridge publish`) and the demo."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bridge.core.errors import BrokerError, PublishError
from bridge.core.messages import check_publish_topic
from bridge.mqtt.client import tune_socket
from bridge.mqtt.message import InboundMessage


class SimpleClient:
    """A plain MQTT client for the camera simulator and the demo: publish and subscribe, no will,
    no state; keeps paho inside bridge/mqtt/."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        on_message: Callable[[InboundMessage], None] | None = None,
    ) -> None:
        self.host, self.port = host, port
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self._client.on_socket_open = tune_socket
        if on_message is not None:
            self._client.on_message = lambda _client, _userdata, message: on_message(
                InboundMessage(message.topic, message.payload, message.qos, bool(message.retain))
            )

    def connect(self) -> None:
        try:
            self._client.connect(self.host, self.port)
        except (OSError, ValueError) as exc:
            raise BrokerError(f"cannot connect to the broker at {self.host}:{self.port}: {exc}") from None
        self._client.loop_start()

    def subscribe(self, topics: Sequence[tuple[str, int]]) -> None:
        self._client.subscribe(list(topics))

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, timeout: float = 10.0) -> None:
        """Publish and wait until the broker has it (QoS 1/2) or it is sent (QoS 0)."""
        info = self._client.publish(check_publish_topic(topic), payload, qos=qos)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            raise PublishError(f"cannot publish on {topic}: {exc}", topic=topic) from None
        if not info.is_published():
            raise PublishError(f"the broker did not confirm the message on {topic} in {timeout:g} s")

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()
