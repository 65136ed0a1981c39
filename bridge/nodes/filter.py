"""Filter node: keep the plates that are confident enough and look like a plate of interest."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from bridge.messages import Message
from bridge.nodes.base import Node, NodeSettings


class FilterSettings(NodeSettings):
    min_score: float = Field(0.0, ge=0, le=1, description="Minimum reading confidence (`score`).")
    min_dscore: float = Field(0.0, ge=0, le=1, description="Minimum detection confidence (`dscore`).")
    plate_pattern: str | None = Field(None, description="Regular expression the plate must fully match.")
    vehicle_types: list[str] = Field(default_factory=list, description="Keep only these vehicle types.")
    drop_empty: bool = Field(True, description="Drop the message when no plate is left.")

    @field_validator("plate_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"plate_pattern is not a regular expression: {exc}") from None
        return value


class FilterNode(Node):
    """Removes results below the thresholds or not matching the pattern (case-insensitive)."""

    type = "filter"
    Settings = FilterSettings
    settings: FilterSettings

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
        if settings.plate_pattern is not None:
            return (
                re.fullmatch(settings.plate_pattern, str(result.get("plate", "")), re.IGNORECASE) is not None
            )
        return True

    def process(self, msg: Message) -> Message | None:
        result = dict(msg.result or {})
        kept = [item for item in result.get("results", []) if self._keep(item)]
        if not kept and self.settings.drop_empty:
            return None
        result["results"] = kept
        return msg.replace(result=result)
