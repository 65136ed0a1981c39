"""Reading the configuration: YAML file, environment and overrides, problems one line each."""

from __future__ import annotations

import os
from importlib import import_module
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bridge.config.core import ENV_PREFIX, CoreConfig
from bridge.config.mqtt import UNION_TAGS
from bridge.config.reader import TOKEN_ENV
from bridge.core.errors import ConfigError
from bridge.core.redact import redacted

# Where the installed extensions are found and the configuration model composed from their sections.
# Imported by name, when first needed: the extension layer depends on this package, not the reverse.
REGISTRY_MODULE = "bridge.extensions.registry"


def _registry() -> Any:
    """The extension layer's registry (bridge.extensions.registry.Registry), not typed here so that
    no import, not even for type checking, points from the configuration up to the extensions."""
    return import_module(REGISTRY_MODULE).registry()


def bridge_config() -> type[CoreConfig]:
    """The configuration model: the bridge's own sections plus the installed extensions' (built once)."""
    return _registry().config


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
        where = ".".join(str(part) for part in problem["loc"] if part not in UNION_TAGS) or "configuration"
        message = problem["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and level)"
            if len(problem["loc"]) == 1:
                # A top-level key may be the section of an extension that is not installed.
                message = (
                    "unknown key (check its spelling; an extension's section needs its extension installed)"
                )
        lines.append(redacted(f"{where}: {message}"))
    return lines


def load_config(path: Path | str | None = None, **overrides: Any) -> CoreConfig:
    """Load the configuration from a YAML file (optional), the environment and keyword overrides.

    Returns a `BridgeConfig`. Raises ConfigError listing every problem, one line each: an installed
    extension that cannot be loaded is one of them, so the bridge never runs without it unnoticed.
    """
    registry = _registry()
    document = _read_yaml(Path(path)) if path is not None else {}
    document.update(overrides)
    _merge_token(document)
    problems = list(registry.problems)
    try:
        config = registry.config(**document)
    except ValidationError as exc:
        problems += format_problems(exc)
    if problems:
        raise ConfigError(f"{len(problems)} configuration problem(s)", problems=problems)
    return config
