"""The `homeassistant:` section: MQTT discovery of the bridge and its cameras."""

from __future__ import annotations

from pydantic import Field, field_validator

from bridge.config import StrictModel
from bridge.core.messages import check_publish_topic


class HomeAssistantConfig(StrictModel):
    """Home Assistant MQTT discovery: a device for the bridge and one per camera."""

    enabled: bool = Field(False, description="Announce the bridge and each camera by MQTT discovery.")
    discovery_prefix: str = Field("homeassistant", min_length=1, description="Home Assistant's prefix.")
    cameras: list[str] = Field(
        default_factory=list,
        description="Cameras announced at start-up (besides routes with a literal camera_id), so their "
        "first plate is never lost while Home Assistant subscribes.",
    )
    auto_add: bool = Field(
        True,
        description="Announce a camera first seen on the wire (routes with wildcards), up to max_cameras.",
    )
    max_cameras: int = Field(
        32, ge=0, description="Most cameras announced in all; a camera past it is logged, not announced."
    )
    autoclear: float = Field(
        60.0,
        ge=0,
        description="Seconds after a camera's last plate when its state (plate sensor, watch-list "
        "binary sensors, {base_topic}/<camera>/state) is cleared, so the same plate triggers again; "
        "0: never.",
    )
    snapshot: bool = Field(
        True,
        description="Publish each plate's frame (boxes drawn) and a crop of the plate as image entities.",
    )
    stats_interval: float = Field(
        10.0, gt=0, description="Seconds between updates of the retained frame counters (bridge/stats)."
    )
    usage_interval: float = Field(
        300.0,
        ge=60,
        description="Seconds between asks for the reader's usage (/v1/statistics/ or the SDK's /info/); "
        "these never cost a recognition.",
    )

    @field_validator("discovery_prefix")
    @classmethod
    def _publishable(cls, value: str) -> str:
        return check_publish_topic(value.rstrip("/"))

    @field_validator("cameras")
    @classmethod
    def _cameras_named(cls, value: list[str]) -> list[str]:
        for camera in value:
            if not camera.strip():
                raise ValueError("a camera id may not be empty")
        return list(dict.fromkeys(value))
