"""The `history:` section: where vehicles are kept, for how long, and how sightings make visits."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from bridge.config import StrictModel
from bridge.core.redact import shown_url


class HistoryConfig(StrictModel):
    """The history store (bridge/extensions/history/): every vehicle, its pictures, visits, watch lists."""

    enabled: bool = Field(
        False, description="Keep every vehicle read (plate, pictures, camera, time) in the history store."
    )
    url: str | None = Field(
        None,
        description="null: a SQLite file in data_dir; postgresql://user:password@host/db: a PostgreSQL "
        "server (several replicas may share it).",
    )
    data_dir: Path = Field(Path("data"), description="Folder of the SQLite file (made if missing).")
    max_age_days: float | None = Field(
        30.0, gt=0, description="Vehicles older than this are deleted with their pictures; null: no limit."
    )
    max_bytes: int | None = Field(
        1024**3,
        ge=1024**2,
        description="The oldest vehicles are deleted while the stored pictures and rows exceed this; null: "
        "no limit.",
    )
    images: bool = Field(True, description="Keep each vehicle's plate crop and annotated snapshot.")
    visit_gap: float = Field(
        300.0, gt=0, description="Seconds: sightings of a plate this close together are one visit."
    )
    max_stay: float = Field(
        86400.0,
        gt=0,
        description="Seconds a visit that came in through an entry camera stays open without an exit "
        "sighting (a parked car is out of view).",
    )
    cameras: dict[str, Literal["entry", "exit", "both"]] = Field(
        default_factory=dict,
        description="Each camera's role in visits: entry (opens a visit), exit (closes it), both (one "
        "gate camera: a sighting after visit_gap closes it). Other cameras extend visits.",
    )
    queue_size: int = Field(
        200,
        ge=1,
        le=100_000,
        description="Vehicles waiting for the writer; beyond it they are counted, dropped.",
    )
    queue_bytes: int = Field(
        64 * 1024**2,
        ge=1024**2,
        description="Bytes of frames (for the pictures) waiting for the writer; beyond it vehicles are "
        "counted, dropped.",
    )

    @field_validator("url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        scheme = value.partition("://")[0]
        if scheme not in ("postgresql", "postgres", "postgresql+psycopg", "sqlite"):
            raise ValueError(f"{shown_url(value)!r} is not a postgresql://... or sqlite:///... URL")
        return value
