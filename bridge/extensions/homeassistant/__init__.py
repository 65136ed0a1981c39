"""Home Assistant MQTT discovery: a device for the bridge and one per camera (see `extension`)."""

from bridge.extensions.homeassistant.config import HomeAssistantConfig
from bridge.extensions.homeassistant.entities import Entities, Topics, camera_key
from bridge.extensions.homeassistant.extension import HomeAssistantExtension

__all__ = ["Entities", "HomeAssistantConfig", "HomeAssistantExtension", "Topics", "camera_key"]
