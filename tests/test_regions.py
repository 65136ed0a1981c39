"""Region codes: every ISO 3166 code the service reads is accepted, nonsense refused before any call."""

from __future__ import annotations

import pytest

from bridge.core import schemas
from bridge.core.regions import normalize_region, normalize_regions
from bridge.reader import PlateReader
from tests.emulator import ReaderEmulator
from tests.images import jpeg


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("ca-qc", "ca-qc"),  # an ISO 3166-2 subdivision the live service answers with
        ("th-37", "th-37"),
        ("jp", "jp"),  # an ISO 3166-1 country outside the API document's list
        ("US-CA", "us-ca"),
        ("br_sc", "br-sc"),
        (" gb ", "gb"),
        ("no", "no"),  # Norway, quoted
    ],
)
def test_iso_3166_codes_are_accepted(value: str, code: str) -> None:
    assert normalize_region(value) == code


@pytest.mark.parametrize("value", ["zz", "us-zz", "xx", "usa", "", "us-", "-ca", "ca-qc-x"])
def test_codes_that_are_in_no_iso_table_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match=r"unknown region code .*ISO 3166"):
        normalize_region(value)


def test_every_code_of_the_api_document_is_still_accepted() -> None:
    assert all(normalize_region(code) == code for code in schemas.schema("region-code")["enum"])


@pytest.mark.parametrize(("value", "spelled"), [(False, "no"), (True, "yes")])
def test_yaml_booleans_are_named_as_the_trap_they_are(value: bool, spelled: str) -> None:
    with pytest.raises(ValueError, match=f'quote it, e.g. regions: \\["{spelled}"\\]'):
        normalize_regions([value])


def test_a_bad_code_is_refused_before_any_call(emulator: ReaderEmulator) -> None:
    with PlateReader(emulator.url) as reader:
        with pytest.raises(ValueError, match="'us-zz'"):
            reader.read(jpeg(), regions=["ca-qc", "us-zz"])
        assert emulator.calls == 0
        reader.read(jpeg(), regions=["ca-qc", "th-37", "jp", "us-ca"])
    assert emulator.requests[0].fields["regions"] == ["ca-qc", "th-37", "jp", "us-ca"]
