"""Home Assistant MQTT discovery: entities for the bridge and each camera, built from data."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from bridge import __version__
from bridge.extensions.base import Extension, ExtensionContext
from bridge.messages import route_topic

if TYPE_CHECKING:
    from bridge.config import BridgeConfig
    from bridge.messages import Message
    from bridge.mqtt import InboundMessage

log = logging.getLogger(__name__)

ORIGIN = {"name": "plate-bridge", "sw_version": __version__}

# The plate of the best result, or "none" when the frame had no plate (HA shows the state as text).
PLATE_TEMPLATE = "{{ value_json.results[0].plate if value_json.results | length > 0 else 'none' }}"
PLATE_ATTRIBUTES_TEMPLATE = (
    "{% set r = value_json.results[0] if value_json.results | length > 0 else {} %}"
    "{{ {'score': r.score, 'region': (r.region or {}).code, 'vehicle': (r.vehicle or {}).type, "
    "'plates': value_json.results | map(attribute='plate') | list, 'timestamp': value_json.timestamp, "
    "'topic': value_json.topic} | tojson }}"
)


def _object_id(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "_", text).strip("_").lower() or "camera"


class HomeAssistantDiscovery:
    """Announces a `sensor` per camera (its last plate, attributes: score, region, vehicle...) and two
    bridge sensors (reader state, frames dropped), with `device`, `origin`, `unique_id` and the bridge's
    availability topic. Cameras are announced when their first frame arrives (routes have wildcards);
    everything is re-announced when Home Assistant says `online` on its status topic.
    """

    def __init__(
        self,
        publish: Callable[[str, bytes, bool], None],
        *,
        prefix: str,
        base_topic: str,
        node_id: str,
    ) -> None:
        self.prefix = prefix
        self.status_topic = f"{prefix}/status"
        self._publish = publish
        self._base_topic = base_topic
        self._node_id = _object_id(node_id)
        self._cameras: dict[str, str] = {}  # camera id -> its result topic
        self._lock = threading.Lock()

    @property
    def bridge_device(self) -> dict[str, Any]:
        return {
            "identifiers": [f"plate_bridge_{self._node_id}"],
            "name": f"plate-bridge {self._node_id}",
            "manufacturer": "plate-bridge",
            "model": "MQTT bridge to Plate Recognizer",
            "sw_version": __version__,
        }

    def _availability(self) -> dict[str, Any]:
        return {
            "availability_topic": f"{self._base_topic}/bridge/state",
            "availability_template": "{{ value_json.state }}",
            "payload_available": "online",
            "payload_not_available": "offline",
        }

    def camera_config(self, camera_id: str, result_topic: str) -> tuple[str, dict[str, Any]]:
        object_id = _object_id(camera_id)
        unique_id = f"plate_bridge_{self._node_id}_{object_id}_plate"
        config = {
            "name": "Plate",
            "unique_id": unique_id,
            "default_entity_id": f"sensor.{object_id}_plate",
            "icon": "mdi:car-back",
            "state_topic": result_topic,
            "value_template": PLATE_TEMPLATE,
            "json_attributes_topic": result_topic,
            "json_attributes_template": PLATE_ATTRIBUTES_TEMPLATE,
            "device": {
                "identifiers": [f"plate_bridge_{self._node_id}_{object_id}"],
                "name": f"{camera_id} plates",
                "manufacturer": "plate-bridge",
                "model": "camera",
                "via_device": f"plate_bridge_{self._node_id}",
            },
            "origin": ORIGIN,
            **self._availability(),
        }
        return f"{self.prefix}/sensor/{self._node_id}/{object_id}_plate/config", config

    def bridge_configs(self) -> list[tuple[str, dict[str, Any]]]:
        state_topic = f"{self._base_topic}/bridge/state"
        health_topic = f"{self._base_topic}/bridge/health"
        entities = [
            ("reader", "Reader", state_topic, "{{ value_json.reader | default('ok') }}", "mdi:cloud-check"),
            ("dropped", "Frames dropped", health_topic, "{{ value_json.dropped }}", "mdi:image-off"),
            ("processed", "Frames read", health_topic, "{{ value_json.processed }}", "mdi:image-check"),
        ]
        configs = []
        for key, name, topic, template, icon in entities:
            config: dict[str, Any] = {
                "name": name,
                "unique_id": f"plate_bridge_{self._node_id}_{key}",
                "state_topic": topic,
                "value_template": template,
                "icon": icon,
                "entity_category": "diagnostic",
                "device": self.bridge_device,
                "origin": ORIGIN,
                **self._availability(),
            }
            if key != "reader":
                config["state_class"] = "total_increasing"
            configs.append((f"{self.prefix}/sensor/{self._node_id}/{key}/config", config))
        return configs

    def _send(self, topic: str, config: dict[str, Any]) -> None:
        # Retained, so Home Assistant finds the entities after its own restart too.
        self._publish(topic, json.dumps(config).encode(), True)

    def announce_all(self) -> None:
        for topic, config in self.bridge_configs():
            self._send(topic, config)
        with self._lock:
            cameras = list(self._cameras.items())
        for camera_id, result_topic in cameras:
            self._send(*self.camera_config(camera_id, result_topic))
        log.info("announced %d camera(s) to Home Assistant under %s/", len(cameras), self.prefix)

    def camera_seen(self, camera_id: str, result_topic: str) -> None:
        """Announce a camera the first time a frame of it arrives (cheap on every later frame)."""
        if self._cameras.get(camera_id) == result_topic:
            return
        with self._lock:
            self._cameras[camera_id] = result_topic
        self._send(*self.camera_config(camera_id, result_topic))

    def handle_status(self, payload: bytes) -> None:
        """Home Assistant publishes `online` on its status topic when it (re)starts: re-announce."""
        if payload.strip().lower() == b"online":
            self.announce_all()


class HomeAssistantExtension(Extension):
    """Turns `homeassistant.enabled` into discovery: announce on connect, on HA's `online`, and when a
    camera's first frame arrives."""

    name = "homeassistant"

    def __init__(self, context: ExtensionContext) -> None:
        super().__init__(context)
        config = context.config
        self._routes = {route.label: route for route in config.routes}
        self.discovery = HomeAssistantDiscovery(
            lambda topic, payload, retain: context.publish(topic, payload, 1, retain),
            prefix=config.homeassistant.discovery_prefix,
            base_topic=config.mqtt.base_topic,
            node_id=config.mqtt.client_id,
        )

    @classmethod
    def enabled(cls, config: BridgeConfig) -> bool:
        return config.homeassistant.enabled

    def subscriptions(self) -> Sequence[tuple[str, int]]:
        return [(self.discovery.status_topic, 1)]

    def on_connected(self) -> None:
        self.discovery.announce_all()

    def on_message(self, inbound: InboundMessage) -> None:
        self.discovery.handle_status(inbound.payload)

    def on_frame(self, msg: Message) -> None:
        route = self._routes[msg.route]
        result_topic = route_topic(route.result_topic, self.context.base_topic, msg)
        self.discovery.camera_seen(msg.camera_id or "unknown", result_topic)
