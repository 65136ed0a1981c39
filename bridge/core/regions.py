"""Region codes the Plate Recognizer API accepts, checked before any call is made.

The API document lists 182 codes, but the service reads any ISO 3166 code: ISO 3166-1 countries
(`jp`) and ISO 3166-2 subdivisions (`ca-qc`, `th-37`), which it also answers with. The codes come
from `pycountry` (the ISO 3166 tables, maintained and shipped in its wheel), plus the document's list.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from bridge.core import schemas


@cache
def document_region_codes() -> frozenset[str]:
    """Every code of the API document, lower case, from `schemas/region-code.schema.json`."""
    return frozenset(schemas.schema("region-code")["enum"])


@cache
def known_region_codes() -> frozenset[str]:
    """Every code the bridge sends: the document's, ISO 3166-1 alpha-2 and ISO 3166-2, lower case.

    Loaded on first use (pycountry reads its tables in ~0.2 s), not at import.
    """
    import pycountry

    countries = {country.alpha_2.lower() for country in pycountry.countries}
    subdivisions = {subdivision.code.lower() for subdivision in pycountry.subdivisions}
    return document_region_codes() | countries | subdivisions


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
            f"unknown region code {value!r}: use an ISO 3166-1 country code such as 'gb' or 'jp', or an"
            " ISO 3166-2 subdivision code such as 'us-ca' or 'ca-qc'"
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
