"""The `routes:` section: a topic filter per route, its reader options, reuse and extra nodes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bridge.config.base import StrictModel
from bridge.config.reader import RouteLocalFirstConfig
from bridge.core.messages import TopicFilter, check_publish_topic
from bridge.core.regions import normalize_regions


class NodeSpec(BaseModel):
    """One extra node in a route: `type` is a built-in name, a `module:attribute` or a plugin name.

    Its other keys are the node's own settings, checked by the node's settings model.
    """

    model_config = ConfigDict(extra="allow")

    type: str = Field(min_length=1)

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def _node_spec(value: object) -> object:
    # `nodes: [split]` is shorthand for `nodes: [{type: split}]`.
    return {"type": value} if isinstance(value, str) else value


Region = tuple[float, float, float, float]


class ReuseConfig(StrictModel):
    """When a frame reuses a recent reading instead of a reader call (bridge/imaging/signature.py)."""

    similar: bool = Field(
        True,
        description="Reuse the reading of a similar frame (same scene re-encoded, brighter, clock changed); "
        "false: only byte-identical frames.",
    )
    threshold: float = Field(
        12.0,
        ge=0,
        le=255,
        description="Largest change of the frame's most changed block (mean absolute grey-level difference, "
        "0-255, brightness evened out) for it to count as similar.",
    )
    mask: list[Region] = Field(
        default_factory=list,
        description="Regions left out of the comparison (the camera's clock or name overlay): [x, y, w, h], "
        "fractions of the frame when all four are at most 1, else pixels.",
    )
    vehicle_interval: float = Field(
        0.0,
        ge=0,
        description="While the camera's last reading has a plate, read at most one changed frame every this "
        "many seconds (frame time); the frames between reuse that reading. 0: read every changed frame.",
    )
    plate_threshold: float = Field(
        0.45,
        gt=0,
        description="Largest change of a plate box, looked at closely, for a similar frame to reuse a "
        "reading that found plates (the most changed 4x4 block of a 24-pixel-high crop, in units of the "
        "plate's contrast: at most 0.14 for the same plate in another frame on the dev photos, 0.75 and "
        "more for another plate or one character of it).",
    )
    frame_bytes: int = Field(
        16 << 20,
        ge=0,
        description="Bytes of frames kept, over all cameras, until a similar frame asks for a close look at "
        "their plates (each camera's newest reading with plates only). A reading whose frame was let go "
        "is not reused for a similar frame: the frame is read again.",
    )
    history: int = Field(4, ge=1, le=64, description="Recent readings per camera a frame is compared with.")
    cameras: int = Field(
        64, ge=1, description="Cameras whose readings are kept; the least recently seen is forgotten first."
    )

    @field_validator("mask")
    @classmethod
    def _regions_are_boxes(cls, value: list[Region]) -> list[Region]:
        for x, y, w, h in value:
            if min(x, y) < 0 or min(w, h) <= 0:
                raise ValueError(f"mask region {[x, y, w, h]}: x and y must be >= 0, w and h > 0")
        return value


class RouteConfig(StrictModel):
    topic: str = Field(description="MQTT filter the frames arrive on; + and # allowed.")
    name: str | None = Field(None, description="Route name in logs and events (default: the topic).")
    camera_id: str | None = Field(None, description="null: the level matched by the first +.")
    regions: tuple[str, ...] = Field((), description="Region codes sent to the reader.")
    mmc: bool = Field(False, description="Ask for make, model and colour.")
    config: dict[str, Any] = Field(default_factory=dict, description="Engine config (SDK `config`).")
    result_topic: str = Field("{base_topic}/{camera_id}/result", description="Where plate events go.")
    error_topic: str = Field("{base_topic}/{camera_id}/error", description="Where error events go.")
    qos: Literal[0, 1, 2] = Field(1, description="QoS of the subscription and of the events.")
    retain: bool = Field(False, description="Publish events retained.")
    share_group: str | None = Field(None, description="MQTT 5 shared-subscription group for replicas.")
    repeat_window: float = Field(
        60.0,
        ge=0,
        description="Seconds during which a frame identical or similar to one recently read on the same "
        "camera reuses that reading instead of a new (paid) reader call; 0: always call.",
    )
    reuse: ReuseConfig = Field(
        default_factory=ReuseConfig,
        description="How a frame is found to be the same scene as one recently read (see repeat_window).",
    )
    nodes: list[Annotated[NodeSpec, Field()]] = Field(
        default_factory=list, description="Extra nodes between validate and publish."
    )
    local_first: RouteLocalFirstConfig = Field(
        default_factory=RouteLocalFirstConfig, description="Overrides of reader.local_first for this route."
    )

    @field_validator("regions", mode="before")
    @classmethod
    def _known_regions(cls, value: object) -> tuple[str, ...]:
        return normalize_regions(value)  # type: ignore[arg-type]

    @field_validator("nodes", mode="before")
    @classmethod
    def _shorthand_nodes(cls, value: object) -> object:
        return [_node_spec(item) for item in value] if isinstance(value, list) else value

    @field_validator("topic")
    @classmethod
    def _valid_filter(cls, value: str) -> str:
        TopicFilter.parse(value)
        return value

    @field_validator("result_topic", "error_topic")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        try:
            value.format(base_topic="b", camera_id="c", route="r")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"{value!r}: only {{base_topic}}, {{camera_id}} and {{route}} may be used ({exc})"
            ) from None
        check_publish_topic(value.format(base_topic="b", camera_id="c", route="r"))
        return value

    @property
    def topic_filter(self) -> TopicFilter:
        parsed = TopicFilter.parse(self.topic)
        if self.share_group and not parsed.share_group:
            return TopicFilter(parsed.filter, self.share_group)
        return parsed

    @property
    def label(self) -> str:
        return self.name or self.topic
