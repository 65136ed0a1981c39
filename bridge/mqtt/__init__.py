"""The transport layer: the only package that imports paho, and the embedded broker.

It knows topics and payloads, nothing of plates or Plate Recognizer.
"""

from bridge.mqtt.client import InboundMessage, MqttClient, SimpleClient
from bridge.mqtt.retained import RetainedRepeats

__all__ = ["InboundMessage", "MqttClient", "RetainedRepeats", "SimpleClient"]
