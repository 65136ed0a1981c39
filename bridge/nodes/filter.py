"""Filter node: keep the plates that are confident enough and look like a plate of interest.

It also holds a route's ignore rules: text a reader takes for a plate but never is one — a camera's
overlay (`CAM01`), a date or a clock (`2024`, `12:30`) — by pattern and by length.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from bridge.core.messages import Message
from bridge.core.plates import normalize_plate
from bridge.nodes.base import Node, NodeContext, NodeSettings


def _compiles(value: str, what: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"{what} is not a regular expression: {exc}") from None
    return value


class FilterSettings(NodeSettings):
    min_score: float = Field(0.0, ge=0, le=1, description="Minimum reading confidence (`score`).")
    min_dscore: float = Field(0.0, ge=0, le=1, description="Minimum detection confidence (`dscore`).")
    plate_pattern: str | None = Field(None, description="Regular expression the plate must fully match.")
    vehicle_types: list[str] = Field(default_factory=list, description="Keep only these vehicle types.")
    ignore_patterns: list[str] = Field(
        default_factory=list,
        description="Drop a plate that fully matches one of these regular expressions (any case), "
        "compared without spaces, dashes or dots: camera overlays (`CAM\\d+`), years (`20\\d\\d`).",
    )
    min_length: int = Field(
        0, ge=0, description="Drop a plate with fewer characters (spaces, dashes and dots not counted)."
    )
    drop_empty: bool = Field(True, description="Drop the message when no plate is left.")

    @field_validator("plate_pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        return None if value is None else _compiles(value, "plate_pattern")

    @field_validator("ignore_patterns")
    @classmethod
    def _ignore_patterns_compile(cls, value: list[str]) -> list[str]:
        return [_compiles(pattern, f"ignore_patterns {pattern!r}") for pattern in value]


class FilterNode(Node):
    """Removes results below the thresholds, not matching the pattern, or matching an ignore rule."""

    type = "filter"
    Settings = FilterSettings
    settings: FilterSettings

    def __init__(self, settings: NodeSettings, context: NodeContext) -> None:
        super().__init__(settings, context)
        self._ignored = [re.compile(pattern, re.IGNORECASE) for pattern in self.settings.ignore_patterns]

    def _keep(self, result: dict[str, Any]) -> bool:
        settings = self.settings
        if float(result.get("score", 0)) < settings.min_score:
            return False
        if float(result.get("dscore", 1)) < settings.min_dscore:
            return False
        if settings.vehicle_types:
            vehicle_type = (result.get("vehicle") or {}).get("type", "")
            if vehicle_type.lower() not in {kind.lower() for kind in settings.vehicle_types}:
                return False
        plate = str(result.get("plate", ""))
        if settings.min_length or self._ignored:
            normal = normalize_plate(plate)
            if len(normal) < settings.min_length:
                return False
            if any(pattern.fullmatch(normal) for pattern in self._ignored):
                return False
        if settings.plate_pattern is not None:
            return re.fullmatch(settings.plate_pattern, plate, re.IGNORECASE) is not None
        return True

    def process(self, msg: Message) -> Message | None:
        result = dict(msg.result or {})
        kept = [item for item in result.get("results", []) if self._keep(item)]
        if not kept and self.settings.drop_empty:
            return None
        result["results"] = kept
        return msg.replace(result=result)
