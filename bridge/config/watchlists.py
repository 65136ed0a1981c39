"""The `watchlists:` section: named lists of plates and patterns events are matched against."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from bridge.config.base import StrictModel


class WatchedPlate(StrictModel):
    plate: str = Field(min_length=1, description="The plate as written; case, spaces and dashes are ignored.")
    label: str | None = Field(None, description='Who or what it is ("Anna\'s car"), carried in events.')


def _watched_plate(value: object) -> object:
    # `plates: [AB123CD]` is shorthand for `plates: [{plate: AB123CD}]`.
    return {"plate": value} if isinstance(value, str | int) else value


STRICT_MIN_SCORE = 0.8
"""A strict list's lowest plate score by default: Plate Recognizer's scores of a plate read well."""


class WatchListConfig(StrictModel):
    """A named list of plates (and patterns) that events are matched against."""

    plates: list[WatchedPlate] = Field(default_factory=list, description="The plates on the list.")
    patterns: list[str] = Field(
        default_factory=list, description="Regular expressions a normalized plate may fully match."
    )
    tolerance: float = Field(
        1.0,
        ge=0,
        description="Largest edit distance still counted as a match; O/0, I/1, B/8... count half. "
        "A strict list matches exactly (0).",
    )
    strict: bool = Field(
        False,
        description="Access control (a list that opens a gate): only an exact match of a result's own plate "
        "(after normalisation: case, spaces, dashes) counts, no look-alike, no other candidate, with at "
        "least `min_score`, and never a reading reused without proof that the plate is the same one "
        "(`cached_reason: interval`). Lists that notify keep the fuzzy matching.",
    )
    min_score: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Lowest reader score of a plate for it to match; null: 0.8 for a strict list, no minimum "
        "otherwise.",
    )

    @model_validator(mode="after")
    def _strict_is_exact(self) -> WatchListConfig:
        if self.strict:
            if "tolerance" in self.model_fields_set and self.tolerance != 0:
                raise ValueError(
                    f"a strict list matches exactly: tolerance {self.tolerance:g} cannot go with strict: true"
                )
            self.tolerance = 0.0
        return self

    @property
    def lowest_score(self) -> float:
        """The score a plate needs to match: `min_score`, else 0.8 for a strict list, else 0."""
        if self.min_score is not None:
            return self.min_score
        return STRICT_MIN_SCORE if self.strict else 0.0

    @field_validator("plates", mode="before")
    @classmethod
    def _shorthand_plates(cls, value: object) -> object:
        return [_watched_plate(item) for item in value] if isinstance(value, list) else value

    @field_validator("patterns")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {pattern!r} is not a regular expression: {exc}") from None
        return value
