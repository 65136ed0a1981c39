"""The transport layer: the only package that imports paho, and the embedded broker.

It knows topics and payloads, nothing of plates or Plate Recognizer.
"""

from bridge.mqtt.client import MqttClient
from bridge.mqtt.message import InboundMessage
from bridge.mqtt.retained import RetainedRepeats
from bridge.mqtt.simple import SimpleClient

__all__ = ["InboundMessage", "MqttClient", "RetainedRepeats", "SimpleClient"]
