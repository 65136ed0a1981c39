"""The top level of the configuration: the bridge's own sections, and `compose()`, which adds the
sections of the extensions (each extension declares its model; the core names none of them)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, create_model, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from bridge.config.mqtt import MQTTConfig
from bridge.config.reader import ReaderConfig
from bridge.config.routes import RouteConfig
from bridge.config.watchlists import WatchListConfig
from bridge.core.redact import redacted

ENV_PREFIX = "PLATE_BRIDGE__"
DEFAULT_MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
# What a home's cameras have waiting at worst: a few dozen frames, far more than a reader working
# through them at a few frames a second can catch up on before they are stale.
DEFAULT_MAX_QUEUED_FRAMES = 100
DEFAULT_MAX_QUEUED_BYTES = 64 * 1024 * 1024


class CoreConfig(BaseSettings):
    """The bridge's own sections. `BridgeConfig` is this plus one section per installed extension
    (`compose()`, called by bridge/extensions/registry.py). Sources, strongest first: arguments,
    environment, YAML file."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    # Dict defaults are validated like user input (validate_default), so a problem in a default
    # (a bad environment value) is reported at its key like any other.
    mqtt: MQTTConfig = Field(default={}, description="The MQTT broker and the bridge's topics.")  # type: ignore[assignment]
    reader: ReaderConfig = Field(default={}, description="The plate reader: cloud, SDK or offline.")  # type: ignore[assignment]
    routes: list[RouteConfig] = Field(
        default=[{"topic": "cameras/+/image"}],  # type: ignore[list-item]
        min_length=1,
        description="Where frames arrive and what is done with them.",
    )
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
        "auto",
        description=(
            "CPUs `plate-bridge run` runs on (Linux). auto: one CPU, the least busy, re-chosen every "
            "10 s, while only Python runs (the bridge's threads take turns on Python's GIL, and "
            "handing it across cores cost a fifth to two fifths of its CPU per frame in benchmarks/); "
            "every CPU when the offline engine may read (local reader or local first). all: leave the "
            "CPU set alone; N: CPU number N."
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

    @property
    def uses_offline_engine(self) -> bool:
        """Whether the offline engine may read frames: the local reader, or local first anywhere."""
        return (
            self.reader.is_local
            or self.reader.local_first.enabled
            or any(route.local_first.enabled for route in self.routes)
        )

    def masked(self) -> dict[str, Any]:
        """The effective configuration as it may be shown (bridge/info, check-config): secrets and
        header values replaced by `**********`, URLs cut to scheme://host:port (bridge/core/redact.py)."""
        shown: dict[str, Any] = redacted(self.model_dump(mode="json"))
        return shown


CORE_KEYS = frozenset(CoreConfig.model_fields)
"""Top-level keys the bridge itself owns; no extension's section may take one."""


def compose(
    sections: Mapping[str, tuple[type[BaseModel], str]],
    checks: Sequence[Callable[[Any], None]] = (),
) -> type[CoreConfig]:
    """`CoreConfig` plus a field per section (`key: (model, description)`), and a validator that runs
    `checks` (whole-configuration cross-checks, raising ValueError) on the result, in order.

    A section's default is `{}` validated like user input, so it needs no key to be present.
    """
    taken = CORE_KEYS.intersection(sections)
    if taken:
        raise ValueError(f"section(s) {', '.join(sorted(taken))} belong to the bridge itself")
    fields: dict[str, Any] = {
        key: (model, Field(default={}, description=description))
        for key, (model, description) in sections.items()
    }

    def _extension_checks(config: CoreConfig) -> CoreConfig:
        for check in checks:
            check(config)
        return config

    composed: type[CoreConfig] = create_model(
        "BridgeConfig",
        __base__=CoreConfig,
        __module__="bridge.config",
        __doc__="The whole configuration: the bridge's own sections and those of its extensions.",
        __validators__={"extension_checks": model_validator(mode="after")(_extension_checks)},
        **fields,
    )
    return composed
