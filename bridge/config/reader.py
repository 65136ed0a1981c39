"""The `reader:` section: which plate reader (cloud, SDK, offline) and how it is called."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)

from bridge.config.base import StrictModel
from bridge.core.cloud import CLOUD_URL, is_cloud_url
from bridge.core.redact import shown_url

LOCAL_READER = "local"
TOKEN_ENV = "PLATE_RECOGNIZER_TOKEN"


class LocalFirstConfig(StrictModel):
    """Read a frame offline first and pay for a call only when unsure (bridge/reader/cascade.py)."""

    enabled: bool = Field(False, description="Read frames offline first (needs the [local] extra).")
    precision: float = Field(
        0.9,
        gt=0,
        le=1,
        description="Accept an offline reading whose calibrated precision (the lower end of a 90 % "
        "confidence interval of the precision measured on labelled photos at its score) is at least "
        "this; below, the paid reader answers. At 0.9, 54.5 % of the photos the shipped calibration held "
        "apart were answered offline, all of them exactly right; no reading is credited 0.95 by it "
        "(BENCHMARKS.md, docs/guides/local-first.md).",
    )
    calibration: Path | None = Field(
        None,
        description="A calibration made by `plate-bridge evaluate --calibrate` on your own labelled "
        "frames; null: the one shipped with the package.",
    )
    workers: int = Field(1, ge=1, le=16, description="Offline reads at the same time; busy: the paid reader.")
    calls_left_below: int | None = Field(
        100,
        ge=0,
        description="Below this many calls left this month (the reader's usage), read offline only; "
        "null: never for the quota (an open circuit still switches).",
    )
    usage_interval: float = Field(
        900.0, ge=1, description="Seconds between two looks at the cloud's /v1/statistics/."
    )


class RouteLocalFirstConfig(StrictModel):
    """A route's own `local_first` settings; null keeps the reader's."""

    enabled: bool | None = Field(None, description="null: reader.local_first.enabled.")
    precision: float | None = Field(None, gt=0, le=1, description="null: reader.local_first.precision.")


class ReaderConfig(StrictModel):
    url: str = Field(
        LOCAL_READER,
        description="Cloud plate-reader URL, an on-premise SDK URL, or 'local' (the offline engine). "
        "Default: the cloud when a token is set, else 'local'.",
    )
    token: SecretStr | None = Field(None, description="API token; also read from PLATE_RECOGNIZER_TOKEN.")
    timeout: float = Field(15.0, gt=0, le=600, description="Seconds to wait for one HTTP call.")
    max_calls_per_second: float | None = Field(
        1.0, gt=0, description="Client-side rate limit shared by all routes; null for none (SDK)."
    )
    concurrency: int = Field(2, ge=1, le=64, description="Frames read at the same time.")
    upload: Literal["file", "base64"] = Field(
        "file", description="How images are sent: multipart file bytes, or base64 text."
    )
    transport: Literal["auto", "curl", "urllib3"] = Field(
        "auto",
        description="HTTP transport: libcurl (pycurl, the [fast] extra) when installed, else urllib3.",
    )
    retries: int = Field(3, ge=0, le=10, description="Retries of a call that failed with 5xx/timeout/429.")
    backoff_initial: float = Field(0.5, ge=0, description="First retry's backoff ceiling, seconds.")
    backoff_max: float = Field(10.0, ge=0, description="Largest backoff, seconds (full jitter below it).")
    forbidden_cooldown: float = Field(300.0, ge=0, description="Seconds without calls after a 403.")
    breaker_threshold: int = Field(5, ge=1, description="Failed calls in a row that open the circuit.")
    breaker_reset: float = Field(30.0, ge=0, description="Seconds the circuit stays open before a probe.")
    retry_ambiguous: bool | None = Field(
        None,
        description="Re-send a call that went out whole and got no answer (timeout, dropped connection),"
        " which the service may have billed. null: off for the cloud, on for an SDK.",
    )

    local_first: LocalFirstConfig = Field(
        default_factory=LocalFirstConfig, description="Offline reading first; paid calls only when unsure."
    )

    _url_by_default: bool = PrivateAttr(False)

    @model_validator(mode="wrap")
    @classmethod
    def _default_url(cls, data: Any, handler: ModelWrapValidatorHandler[ReaderConfig]) -> ReaderConfig:
        # No URL given: the cloud when there is a token to pay for it, else the offline reader, so
        # a first run works without an account. An explicit cloud URL still needs its token.
        chosen = isinstance(data, dict) and data.get("url") is None
        if chosen:
            data = {**data, "url": CLOUD_URL if data.get("token") else LOCAL_READER}
        config = handler(data)
        if chosen:
            config._url_by_default = True
        return config

    @property
    def default_note(self) -> str | None:
        """A line saying which reader was chosen when the configuration names none, else None."""
        if not self._url_by_default:
            return None
        if self.is_local:
            return (
                "no reader.url and no token: plates are read offline (reader.url: local); "
                f"set {TOKEN_ENV} for the Plate Recognizer cloud"
            )
        return "no reader.url: the token is used with the Plate Recognizer cloud"

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value != LOCAL_READER and not value.startswith(("http://", "https://")):
            raise ValueError(
                f"reader.url {shown_url(value)!r} must start with http:// or https://, or be 'local'"
            )
        return value

    @model_validator(mode="after")
    def _cloud_needs_token(self) -> ReaderConfig:
        if self.is_cloud and self.token is None:
            raise ValueError(
                f"the cloud URL needs a token: set reader.token or {TOKEN_ENV}, or point reader.url at an SDK"
            )
        return self

    @property
    def is_cloud(self) -> bool:
        return is_cloud_url(self.url)

    @property
    def is_local(self) -> bool:
        return self.url == LOCAL_READER

    @property
    def kind(self) -> Literal["cloud", "sdk", "local"]:
        """Which reader: the Plate Recognizer cloud, an SDK (any other URL) or the offline one."""
        if self.is_local:
            return "local"
        return "cloud" if self.is_cloud else "sdk"

    @property
    def resends_ambiguous(self) -> bool:
        """`retry_ambiguous` resolved: off for the cloud, which bills every call it read; on for an SDK."""
        return self.retry_ambiguous if self.retry_ambiguous is not None else not self.is_cloud
