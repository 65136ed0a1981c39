"""The project's JSON Schemas (`schemas/*.schema.json`), loaded once and checked against offline."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.core.errors import SchemaViolation

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator
    from referencing import Registry

# Python's jsonschema (with referencing, attrs and rpds: ~10 MB resident) is imported only to explain
# a document that failed, or where jsonschema-rs has no wheel: a running bridge validates every answer
# with the compiled validator alone.

try:
    # A compiled (Rust) validator for the hot path: it checks a plate-reader response in ~4 µs where
    # the pure-Python jsonschema takes ~700 µs. Python's jsonschema still explains failures.
    import jsonschema_rs
except ImportError:  # pragma: no cover - a platform without a jsonschema-rs wheel
    jsonschema_rs = None

__all__ = ["is_valid", "names", "problems", "schema", "validate", "validator"]

SUFFIX = ".schema.json"
MAX_PROBLEMS = 10
# Longer renderings of a value are summarised: documents can carry megabytes of base64.
MAX_VALUE_CHARS = 60

# Inside a built wheel (pyproject force-includes `schemas` as `bridge/_schemas`), else the source tree.
_PACKAGED = Path(__file__).parent.parent / "_schemas"
_SOURCE = Path(__file__).resolve().parents[2] / "schemas"


@cache
def _folder() -> Path:
    for folder in (_PACKAGED, _SOURCE):
        if folder.is_dir():
            return folder
    raise FileNotFoundError(f"no schema folder: looked for {_PACKAGED} and {_SOURCE}")


@cache
def _documents() -> dict[str, dict[str, Any]]:
    folder = _folder()
    return {
        path.name.removesuffix(SUFFIX): json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(folder.glob(f"*{SUFFIX}"))
    }


@cache
def _registry() -> Registry:
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    # Every schema under its `$id`, so cross-file `$ref`s resolve here. The registry has no `retrieve`
    # function: an unknown reference fails loudly instead of being fetched over the network.
    resources = [
        (document["$id"], Resource.from_contents(document, default_specification=DRAFT202012))
        for document in _documents().values()
    ]
    return Registry().with_resources(resources).crawl()


def names() -> list[str]:
    """The available schema names, sorted, e.g. `plate-reader-response`."""
    return list(_documents())


@cache
def schema(name: str) -> dict[str, Any]:
    """The schema called `name` (the file name without `.schema.json`); shared, so do not modify it."""
    try:
        return _documents()[name]
    except KeyError:
        raise ValueError(f"no schema named {name!r}; known: {', '.join(names())}") from None


@cache
def validator(name: str) -> Validator:
    """A draft 2020-12 validator for `name`, built once, resolving references offline.

    `format` stays an annotation (the draft's default): `date-time` and `uri` checks would depend on
    optional packages being installed, so the schemas say what they require with `pattern` instead.
    """
    from jsonschema import Draft202012Validator

    document = schema(name)
    Draft202012Validator.check_schema(document)
    return Draft202012Validator(document, registry=_registry())


@cache
def _fast_validator(name: str) -> Any:
    if jsonschema_rs is None:
        return validator(name)
    registry = jsonschema_rs.Registry([(document["$id"], document) for document in _documents().values()])
    return jsonschema_rs.validator_for(schema(name), registry=registry)


def is_valid(name: str, document: object) -> bool:
    """True when `document` matches schema `name` (the fast check, no explanation)."""
    return bool(_fast_validator(name).is_valid(document))


def problems(name: str, document: object) -> list[str]:
    """Why `document` fails schema `name`, one line per problem sorted by path; empty when it matches."""
    try:
        errors = sorted(validator(name).iter_errors(document), key=_error_order)
        lines = [_describe(error) for error in errors[:MAX_PROBLEMS]]
    except RecursionError:
        # Python's validator and repr() recurse per level: a hostile document can be deeper than the
        # stack (the compiled validator is not, so this is the only place that needs to know).
        return ["(root): the document is nested too deeply to be checked"]
    if len(errors) > MAX_PROBLEMS:
        lines.append(f"... and {len(errors) - MAX_PROBLEMS} more problems")
    return lines


def validate(name: str, document: object) -> None:
    """Return if `document` matches schema `name`; otherwise raise SchemaViolation listing why."""
    # The fast path: most documents are valid, and only an invalid one needs explaining.
    if is_valid(name, document):
        return
    # The compiled validator is the judge; should Python's find nothing to explain (they agree on every
    # document of the schema tests), the verdict still stands, with a plain reason.
    found = problems(name, document) or ["(root): rejected by the compiled validator"]
    raise SchemaViolation(
        f"{_brief(document)} does not match {name}: {found[0]}", schema=name, problems=found
    )


def _error_order(error: ValidationError) -> tuple[tuple[tuple[bool, int | str], ...], str]:
    # Paths mix list indices and keys; tagging each part keeps ints and strs from being compared.
    return tuple((isinstance(part, str), part) for part in error.absolute_path), error.message


def _describe(error: ValidationError) -> str:
    path = "/".join(str(part) for part in error.absolute_path) or "(root)"
    if error.validator == "enum" and len(error.validator_value) > MAX_PROBLEMS:
        # The default message would list every allowed value: 182 of them for region codes.
        return (
            f"{path}: {_brief(error.instance)} is not one of the {len(error.validator_value)} allowed values"
        )
    title = error.schema.get("title") if isinstance(error.schema, dict) else None
    if error.validator == "pattern" and title:
        # A regular expression explains little; the schemas name what each pattern stands for.
        return f"{path}: {_brief(error.instance)} is not {title}"
    message = error.message
    shown = repr(error.instance)
    if len(shown) > MAX_VALUE_CHARS:
        # jsonschema's messages start with the failing value's repr; an image must not end up in a log.
        message = message.replace(shown, _brief(error.instance))
    return f"{path}: {message}"


def _brief(value: object) -> str:
    """`value`'s repr when short, else a summary that names its kind and size."""
    try:
        shown = repr(value)
    except RecursionError:
        shown = "?" * (MAX_VALUE_CHARS + 1)  # too deep to print: summarised below by its kind
    if len(shown) <= MAX_VALUE_CHARS:
        return shown
    if isinstance(value, dict):
        return f"{{...}} (an object, {_count(len(value), 'key')})"
    if isinstance(value, list):
        return f"[...] (an array, {_count(len(value), 'item')})"
    if isinstance(value, str):
        return f"{value[:20]!r}... (a string, {_count(len(value), 'character')})"
    return shown[:MAX_VALUE_CHARS] + "..."


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
