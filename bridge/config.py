"""Configuration: pydantic models, loaded from YAML and the environment by `load_config()`."""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SecretStr,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from bridge.errors import ConfigError
from bridge.messages import TopicFilter, check_publish_topic
from bridge.redact import redacted, shown_url
from bridge.regions import normalize_regions

CLOUD_URL = "https://api.platerecognizer.com/v1/plate-reader/"
LOCAL_READER = "local"
ENV_PREFIX = "PLATE_BRIDGE__"
TOKEN_ENV = "PLATE_RECOGNIZER_TOKEN"
DEFAULT_MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
# What a home's cameras have waiting at worst: a few dozen frames, far more than a reader working
# through them at a few frames a second can catch up on before they are stale.
DEFAULT_MAX_QUEUED_FRAMES = 100
DEFAULT_MAX_QUEUED_BYTES = 64 * 1024 * 1024


class StrictModel(BaseModel):
    """User configuration rejects unknown keys: a typo must be an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class TLSConfig(StrictModel):
    ca_certs: Path | None = Field(None, description="CA bundle that signed the broker's certificate.")
    certfile: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    keyfile: Path | None = Field(None, description="Private key of the client certificate.")
    insecure: bool = Field(
        False,
        description="Skip the broker hostname check (self-signed test brokers); logged as a warning.",
    )

    @model_validator(mode="after")
    def _files_load(self) -> TLSConfig:
        if self.keyfile and not self.certfile:
            raise ValueError("tls.keyfile is set without tls.certfile")
        # Checked here, so `check-config` fails on what `run` would fail on: each file by its path.
        for key in ("ca_certs", "certfile", "keyfile"):
            path = getattr(self, key)
            if path is not None and not path.is_file():
                raise ValueError(f"{key} {path}: no such file")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if self.ca_certs is not None:
            try:
                context.load_verify_locations(cafile=str(self.ca_certs))
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(
                    f"ca_certs {self.ca_certs}: cannot be loaded as a CA bundle: {_ssl_reason(exc)}"
                ) from None
        if self.certfile is not None:
            try:
                context.load_cert_chain(str(self.certfile), str(self.keyfile) if self.keyfile else None)
            except (OSError, ssl.SSLError) as exc:
                files = f"{self.certfile}" + (f" with {self.keyfile}" if self.keyfile else "")
                raise ValueError(
                    f"certfile {files}: cannot be loaded as a certificate and its key: {_ssl_reason(exc)}"
                ) from None
        return self


# OpenSSL's reason codes for files that do not load, in words.
_SSL_REASONS = {
    "PEM_LIB": "not readable as PEM",
    "KEY_VALUES_MISMATCH": "the key does not belong to the certificate",
    "NO_CERTIFICATE_OR_CRL_FOUND": "no certificate in it",
    "NO_START_LINE": "not PEM",
}


def _ssl_reason(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        # Python leaves `reason` empty for some errors: "[SSL] PEM lib (_ssl.c:3905)".
        reason = exc.reason or ("PEM_LIB" if "PEM lib" in str(exc) else str(exc))
        return _SSL_REASONS.get(reason, reason.lower().replace("_", " "))
    return str(exc.strerror or exc)


# Tags of the `tls` union's two forms; left out of the key a problem is reported at.
_TLS_SWITCH, _TLS_FILES = "tls-switch", "tls-files"
_UNION_TAGS = {_TLS_SWITCH, _TLS_FILES}


class MQTTConfig(StrictModel):
    host: str = Field("localhost", description='Broker host, or "embedded" to run a broker in the bridge.')
    port: int = Field(1883, ge=0, le=65535, description="Broker port (0 with embedded: any free port).")
    username: str | None = Field(None, description="Broker user name.")
    password: SecretStr | None = Field(None, description="Broker password; never logged.")
    tls: Annotated[
        Annotated[bool, Tag(_TLS_SWITCH)] | Annotated[TLSConfig, Tag(_TLS_FILES)],
        # Told apart by the value's type, so a problem in the files is reported alone, not next to
        # "Input should be a valid boolean".
        Discriminator(lambda value: _TLS_SWITCH if isinstance(value, bool | str | int) else _TLS_FILES),
    ] = Field(False, description="false, true (system CAs) or CA/client cert files.")
    client_id: str = Field("plate-bridge", min_length=1, description="MQTT client id.")
    base_topic: str = Field("plate-bridge", min_length=1, description="Prefix of every topic published.")
    protocol: Literal["3.1.1", "5"] = Field("3.1.1", description="MQTT protocol version.")
    keepalive: int = Field(60, ge=5, le=65535, description="Keep-alive interval in seconds.")
    persistent_session: bool = Field(
        True,
        description="Keep the session across reconnects, so QoS 1 frames sent meanwhile are delivered.",
    )
    session_expiry: int = Field(
        3600, ge=0, description="MQTT 5: seconds the broker keeps the session after a disconnect."
    )
    health_interval: float = Field(
        60.0, ge=0, description="Seconds between health documents on {base_topic}/bridge/health; 0: never."
    )

    @field_validator("base_topic")
    @classmethod
    def _base_topic_publishable(cls, value: str) -> str:
        return check_publish_topic(value.rstrip("/"))

    @model_validator(mode="after")
    def _password_needs_username(self) -> MQTTConfig:
        if self.password is not None and not self.username:
            raise ValueError("mqtt.password is set without mqtt.username")
        return self

    @property
    def embedded(self) -> bool:
        return self.host == "embedded"


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
        from bridge.reader.client import is_cloud_url  # the reader's knowledge; imported when asked

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
    """When a camera's frame reuses a recent reading instead of a reader call (bridge/signature.py)."""

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


class HomeAssistantConfig(StrictModel):
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


class RequestsConfig(StrictModel):
    """MQTT 5 request/response: a frame that names a response topic gets its event there too."""

    enabled: bool = Field(
        False,
        description="Answer a frame published with an MQTT 5 response_topic on that topic (with its "
        "correlation_data); needs mqtt.protocol '5'.",
    )
    qos: Literal[0, 1, 2] = Field(1, description="QoS of the answers.")
    message_expiry: int | None = Field(
        60, ge=1, description="Seconds the broker keeps an answer nobody has taken yet; null: forever."
    )
    allowed_topics: tuple[str, ...] = Field(
        (),
        description="MQTT filters a response topic must match to be answered; empty: any topic the bridge "
        "does not itself publish or read, nor Home Assistant's discovery prefix, nor a $ topic.",
    )

    @field_validator("allowed_topics")
    @classmethod
    def _filters(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            if TopicFilter.parse(text).share_group:
                raise ValueError(f"{text!r}: a response topic is published to, not shared")
        return value


class MetricsConfig(StrictModel):
    """Prometheus `/metrics` and an orchestrator's `/health`, served over HTTP by the bridge."""

    enabled: bool = Field(False, description="Serve /metrics (Prometheus) and /health over HTTP.")
    host: str = Field(
        "127.0.0.1", min_length=1, description="Address to listen on; 0.0.0.0 to be scraped from elsewhere."
    )
    port: int = Field(9108, ge=0, le=65535, description="Port to listen on (0: any free port).")
    latency_buckets: tuple[float, ...] = Field(
        (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
        min_length=1,
        description="Upper bounds (seconds) of the frame-to-event latency histogram's buckets.",
    )


class FrigateConfig(StrictModel):
    """Frigate as a source: follow `frigate/events`, read each tracked vehicle's snapshot once."""

    enabled: bool = Field(False, description="Follow Frigate's events and read the plates of its vehicles.")
    url: str = Field(
        "http://frigate:5000",
        description="Frigate's HTTP API (the internal, unauthenticated port 5000), without /api.",
    )
    topic_prefix: str = Field("frigate", min_length=1, description="Frigate's mqtt.topic_prefix.")
    labels: tuple[str, ...] = Field(("car", "motorcycle"), min_length=1, description="Object labels read.")
    cameras: tuple[str, ...] = Field((), description="Frigate cameras followed; empty: all.")
    zones: tuple[str, ...] = Field(
        (), description="Only objects in (or having entered) one of these zones; empty: anywhere."
    )
    min_score: float = Field(0.0, ge=0, le=1, description="Smallest top_score of an object worth reading.")
    crop: bool = Field(True, description="Ask Frigate for the snapshot cropped to the object.")
    height: int | None = Field(None, ge=16, description="Ask Frigate to resize the snapshot to this height.")
    quality: int = Field(95, ge=1, le=100, description="JPEG quality asked of Frigate (plates need detail).")
    max_reads_per_event: int = Field(
        2,
        ge=1,
        le=20,
        description="Reader calls per Frigate event at most: the first snapshot, then only a better one.",
    )
    topic: str = Field(
        "frigate/{camera}/{label}/event_snapshot",
        description="Topic the fetched snapshots are handed to the routes on ({camera}, {label}); a route "
        "must match it (they are not published to the broker).",
    )
    sub_label: bool = Field(
        False, description="Write the plate (or its watch-list label) back as the Frigate event's sub label."
    )
    timeout: float = Field(10.0, gt=0, le=120, description="Seconds to wait for one Frigate HTTP call.")
    tracked_events: int = Field(1000, ge=10, description="Frigate events remembered at most (oldest go).")
    queue_size: int = Field(32, ge=1, description="Frigate HTTP calls waiting at most; more are dropped.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"frigate.url {shown_url(value)!r} must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("topic")
    @classmethod
    def _topic_placeholders(cls, value: str) -> str:
        try:
            check_publish_topic(value.format(camera="c", label="l"))
        except (KeyError, IndexError) as exc:
            raise ValueError(f"{value!r}: only {{camera}} and {{label}} may be used ({exc})") from None
        return value


class WebhookListenConfig(StrictModel):
    """Receive Plate Recognizer webhooks (SDK, Stream) and publish them as plate events."""

    enabled: bool = Field(False, description="Listen for Plate Recognizer webhooks over HTTP.")
    host: str = Field("127.0.0.1", min_length=1, description="Address to listen on; 0.0.0.0 for others.")
    port: int = Field(8081, ge=0, le=65535, description="Port to listen on (0: any free port).")
    path: str = Field("/plate-recognizer", description="URL path the webhook is POSTed to.")
    token: SecretStr | None = Field(
        None,
        description="Shared secret a sender must give (?token= or `Authorization: Token ...`); never logged.",
    )
    topic: str = Field(
        "plate-recognizer/webhook/{camera_id}",
        description="Topic the readings are handed to the routes on ({camera_id}); a route must match it.",
    )

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must start with /")
        return value

    @field_validator("topic")
    @classmethod
    def _topic_placeholders(cls, value: str) -> str:
        try:
            check_publish_topic(value.format(camera_id="c"))
        except (KeyError, IndexError) as exc:
            raise ValueError(f"{value!r}: only {{camera_id}} may be used ({exc})") from None
        return value

    @model_validator(mode="after")
    def _token_off_loopback(self) -> WebhookListenConfig:
        # Whoever reaches the port can publish plate events (watch-list alerts, gate automations):
        # beyond this machine, only with the shared secret.
        if self.enabled and self.token is None and not is_loopback(self.host):
            raise ValueError(
                f"host {self.host!r} takes webhooks from other machines: set webhooks.listen.token "
                "(senders add ?token=... or `Authorization: Token ...`), or listen on 127.0.0.1"
            )
        return self


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only: `localhost` or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another name: it may resolve to any address


class WebhookTarget(StrictModel):
    url: str = Field(description="Where plate events are POSTed as JSON.")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Headers sent with each POST (Authorization, ...); never logged."
    )
    events: tuple[Literal["plate", "error"], ...] = Field(
        ("plate",),
        min_length=1,
        description="Kinds sent: plate (a consensus route's vehicle events, not its frames'), error.",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("a webhook URL must start with http:// or https://")
        return value


class WebhooksConfig(StrictModel):
    """Webhooks in (Plate Recognizer to the bridge) and out (plate events to your URLs)."""

    listen: WebhookListenConfig = Field(default={}, description="Receiving Plate Recognizer webhooks.")  # type: ignore[assignment]
    targets: list[WebhookTarget] = Field(default_factory=list, description="URLs plate events are sent to.")
    timeout: float = Field(10.0, gt=0, le=120, description="Seconds to wait for one delivery.")
    retries: int = Field(
        5, ge=0, le=20, description="Retries of a delivery that failed (5xx, 429, no answer)."
    )
    backoff_initial: float = Field(1.0, ge=0, description="First retry's backoff ceiling, seconds.")
    backoff_max: float = Field(60.0, ge=0, description="Largest backoff, seconds (full jitter below it).")
    queue_size: int = Field(
        100, ge=1, description="Deliveries waiting at most; the oldest is dropped beyond."
    )


class BridgeConfig(BaseSettings):
    """The whole configuration. Sources, strongest first: arguments, environment, YAML file."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    # Dict defaults are validated like user input (validate_default), so a problem in a default
    # (a bad environment value) is reported at its key like any other.
    mqtt: MQTTConfig = Field(default={})  # type: ignore[assignment]
    reader: ReaderConfig = Field(default={})  # type: ignore[assignment]
    homeassistant: HomeAssistantConfig = Field(default={})  # type: ignore[assignment]
    requests: RequestsConfig = Field(default={})  # type: ignore[assignment]
    metrics: MetricsConfig = Field(default={})  # type: ignore[assignment]
    frigate: FrigateConfig = Field(default={})  # type: ignore[assignment]
    webhooks: WebhooksConfig = Field(default={})  # type: ignore[assignment]
    routes: list[RouteConfig] = Field(default=[{"topic": "cameras/+/image"}], min_length=1)  # type: ignore[list-item]
    watchlists: dict[str, WatchListConfig] = Field(
        default_factory=dict,
        description="Named watch lists (family, blocked, ...) every route's events are matched against.",
    )
    max_payload_bytes: int = Field(
        DEFAULT_MAX_PAYLOAD_BYTES, gt=0, description="Frames above this size are refused before decoding."
    )
    queued_frames_per_camera: int = Field(
        2,
        ge=1,
        description="Frames a camera may have waiting for the reader; a newer frame pushes out the oldest.",
    )
    max_queued_frames: int = Field(
        DEFAULT_MAX_QUEUED_FRAMES,
        ge=1,
        description="Frames all cameras together may have waiting; a new frame pushes out the oldest.",
    )
    max_queued_bytes: int = Field(
        DEFAULT_MAX_QUEUED_BYTES,
        gt=0,
        description="Bytes of frames all cameras together may have waiting; at least max_payload_bytes.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    cpu_affinity: str | int = Field(
        "all",
        description=(
            "CPUs `plate-bridge run` runs on (Linux). all: leave the CPU set alone; N: CPU number N; "
            "auto: one CPU when the reader is remote (the bridge's threads take turns on Python's GIL, "
            "and handing it across cores cost about a third of its CPU per frame in benchmarks/), "
            "every CPU for the offline engine."
        ),
    )

    @model_validator(mode="after")
    def _requests_need_mqtt5(self) -> BridgeConfig:
        if self.requests.enabled and self.mqtt.protocol != "5":
            raise ValueError("requests.enabled needs mqtt.protocol '5' (response topics are MQTT 5)")
        return self

    @model_validator(mode="after")
    def _frigate_topic_routed(self) -> BridgeConfig:
        if not self.frigate.enabled:
            return self
        camera = self.frigate.cameras[0] if self.frigate.cameras else "camera"
        topic = self.frigate.topic.format(camera=camera, label=self.frigate.labels[0])
        if not any(route.topic_filter.match(topic) is not None for route in self.routes):
            raise ValueError(
                f"frigate.topic: no route takes {topic!r}; add a route such as "
                f"{{topic: {self.frigate.topic.format(camera='+', label='+')!r}}}"
            )
        return self

    @model_validator(mode="after")
    def _webhook_topic_routed(self) -> BridgeConfig:
        listen = self.webhooks.listen
        topic = listen.topic.format(camera_id="camera")
        if listen.enabled and not any(route.topic_filter.match(topic) is not None for route in self.routes):
            raise ValueError(
                f"webhooks.listen.topic: no route takes {topic!r}; add a route such as "
                f"{{topic: {listen.topic.format(camera_id='+')!r}}}"
            )
        return self

    @field_validator("cpu_affinity", mode="before")
    @classmethod
    def _cpu_choice(cls, value: object) -> str | int:
        if value in ("auto", "all"):
            return str(value)
        text = str(value).strip()
        if isinstance(value, int | str) and not isinstance(value, bool) and text.isdigit():
            return int(text)
        raise ValueError(f"{value!r} is not auto, all or a CPU number (0, 1, ...)")

    @field_validator("max_queued_bytes")
    @classmethod
    def _a_frame_fits_the_queue(cls, value: int, info: ValidationInfo) -> int:
        # Declared after max_payload_bytes, so that one is already checked (absent if it failed).
        payload = info.data.get("max_payload_bytes")
        if payload is not None and value < payload:
            raise ValueError(
                f"{value:,} is less than max_payload_bytes ({payload:,}): a frame the bridge accepts "
                "must fit in its queue"
            )
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML document is passed in as init arguments by load_config(), below the environment.
        return env_settings, init_settings

    def masked(self) -> dict[str, Any]:
        """The effective configuration as it may be shown (bridge/info, check-config): secrets and
        header values replaced by `**********`, URLs cut to scheme://host:port (bridge/redact.py)."""
        shown: dict[str, Any] = redacted(self.model_dump(mode="json"))
        return shown


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, not {type(document).__name__}")
    return document


def _merge_token(document: dict[str, Any]) -> None:
    """Take the token from PLATE_RECOGNIZER_TOKEN when no other source sets it."""
    token = os.environ.get(TOKEN_ENV)
    if not token or os.environ.get(f"{ENV_PREFIX}READER__TOKEN"):
        return
    reader = document.setdefault("reader", {})
    if isinstance(reader, dict) and not reader.get("token"):
        reader["token"] = token


def format_problems(error: ValidationError) -> list[str]:
    """One line per problem: the dotted key, then what is wrong with it (no input values echoed)."""
    lines = []
    for problem in error.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in problem["loc"] if part not in _UNION_TAGS) or "configuration"
        message = problem["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and level)"
        lines.append(redacted(f"{where}: {message}"))
    return lines


def load_config(path: Path | str | None = None, **overrides: Any) -> BridgeConfig:
    """Load the configuration from a YAML file (optional), the environment and keyword overrides.

    Raises ConfigError listing every problem, one line each.
    """
    document = _read_yaml(Path(path)) if path is not None else {}
    document.update(overrides)
    _merge_token(document)
    try:
        return BridgeConfig(**document)
    except ValidationError as exc:
        problems = format_problems(exc)
        raise ConfigError(f"{len(problems)} configuration problem(s)", problems=problems) from None
