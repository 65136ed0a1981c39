"""Region codes the Plate Recognizer API accepts, checked before any call is made."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from bridge import schemas


@cache
def known_region_codes() -> frozenset[str]:
    """Every code of the API document, lower case, from `schemas/region-code.schema.json`."""
    return frozenset(schemas.schema("region-code")["enum"])


def normalize_region(value: object) -> str:
    """Return `value` as a known lower-case region code, or raise ValueError saying what is wrong."""
    if isinstance(value, bool):
        # YAML 1.1 reads an unquoted `no` (Norway) as False, and `on`/`yes` as True.
        spelled = "no" if value is False else "yes"
        raise ValueError(
            f"region {value!r} is not a region code: YAML turned an unquoted `{spelled}` into a boolean;"
            f' quote it, e.g. regions: ["{spelled}"]'
        )
    if not isinstance(value, str):
        raise ValueError(f"region {value!r} is not a region code: expected a string such as 'gb' or 'us-ca'")
    code = value.strip().lower().replace("_", "-")
    if code not in known_region_codes():
        raise ValueError(
            f"unknown region code {value!r}: use a code of the Plate Recognizer list, e.g. 'gb', 'us-ca'"
        )
    return code


def normalize_regions(values: Iterable[object] | str | None) -> tuple[str, ...]:
    """Normalize a list of region codes (a single string is one code); duplicates are dropped."""
    if values is None:
        return ()
    if isinstance(values, str | bool):
        values = [values]
    codes: list[str] = []
    for value in values:
        code = normalize_region(value)
        if code not in codes:
            codes.append(code)
    return tuple(codes)
