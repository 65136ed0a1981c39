"""Configuration: pydantic models, loaded from YAML and the environment by `load_config()`."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from bridge.errors import ConfigError
from bridge.messages import TopicFilter, check_publish_topic
from bridge.regions import normalize_regions

CLOUD_URL = "https://api.platerecognizer.com/v1/plate-reader/"
LOCAL_READER = "local"
ENV_PREFIX = "PLATE_BRIDGE__"
TOKEN_ENV = "PLATE_RECOGNIZER_TOKEN"
DEFAULT_MAX_PAYLOAD_BYTES = 10 * 1024 * 1024


class StrictModel(BaseModel):
    """User configuration rejects unknown keys: a typo must be an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class TLSConfig(StrictModel):
    ca_certs: Path | None = Field(None, description="CA bundle that signed the broker's certificate.")
    certfile: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    keyfile: Path | None = Field(None, description="Private key of the client certificate.")
    insecure: bool = Field(False, description="Skip the broker hostname check (self-signed test brokers).")

    @model_validator(mode="after")
    def _certificate_needs_key(self) -> TLSConfig:
        if self.keyfile and not self.certfile:
            raise ValueError("tls.keyfile is set without tls.certfile")
        return self


class MQTTConfig(StrictModel):
    host: str = Field("localhost", description='Broker host, or "embedded" to run a broker in the bridge.')
    port: int = Field(1883, ge=0, le=65535, description="Broker port (0 with embedded: any free port).")
    username: str | None = Field(None, description="Broker user name.")
    password: SecretStr | None = Field(None, description="Broker password; never logged.")
    tls: bool | TLSConfig = Field(False, description="false, true (system CAs) or CA/client cert files.")
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


class ReaderConfig(StrictModel):
    url: str = Field(
        CLOUD_URL, description="Cloud plate-reader URL, an on-premise SDK URL, or 'local' (offline engine)."
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

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value != LOCAL_READER and not value.startswith(("http://", "https://")):
            raise ValueError(f"reader.url {value!r} must start with http:// or https://, or be 'local'")
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
        return "api.platerecognizer.com" in self.url

    @property
    def is_local(self) -> bool:
        return self.url == LOCAL_READER


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
        description="Seconds during which a frame identical to the camera's previous one reuses its "
        "reading instead of a new (paid) reader call; 0: always call.",
    )
    nodes: list[Annotated[NodeSpec, Field()]] = Field(
        default_factory=list, description="Extra nodes between validate and publish."
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


class WatchListConfig(StrictModel):
    """A named list of plates (and patterns) that events are matched against."""

    plates: list[WatchedPlate] = Field(default_factory=list, description="The plates on the list.")
    patterns: list[str] = Field(
        default_factory=list, description="Regular expressions a normalized plate may fully match."
    )
    tolerance: float = Field(
        1.0,
        ge=0,
        description="Largest edit distance still counted as a match; O/0, I/1, B/8... count half.",
    )

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


class BridgeConfig(BaseSettings):
    """The whole configuration. Sources, strongest first: arguments, environment, YAML file."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    # Dict defaults are validated like user input (validate_default), so a problem in a default
    # (the cloud URL without a token) is reported at its key like any other.
    mqtt: MQTTConfig = Field(default={})  # type: ignore[assignment]
    reader: ReaderConfig = Field(default={})  # type: ignore[assignment]
    homeassistant: HomeAssistantConfig = Field(default={})  # type: ignore[assignment]
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
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    cpu_affinity: str | int = Field(
        "auto",
        description=(
            "CPUs `plate-bridge run` runs on (Linux). auto: one CPU when the reader is remote — the "
            "bridge's threads take turns on Python's GIL, and handing it across cores cost a third of "
            "its CPU (benchmarks/) — and every CPU for the offline engine, whose inference uses them; "
            "all: never pin; N: CPU number N."
        ),
    )

    @field_validator("cpu_affinity", mode="before")
    @classmethod
    def _cpu_choice(cls, value: object) -> str | int:
        if value in ("auto", "all"):
            return str(value)
        text = str(value).strip()
        if isinstance(value, int | str) and not isinstance(value, bool) and text.isdigit():
            return int(text)
        raise ValueError(f"{value!r} is not auto, all or a CPU number (0, 1, ...)")

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
        """The effective configuration as plain data, secrets replaced by `**********`."""
        return self.model_dump(mode="json")


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
        where = ".".join(str(part) for part in problem["loc"]) or "configuration"
        message = problem["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and level)"
        lines.append(f"{where}: {message}")
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
