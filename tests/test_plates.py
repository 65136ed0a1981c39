"""Plate normal form and distance: what watch lists, dedupe and consensus call 'the same plate'."""

from __future__ import annotations

import pytest

from bridge.core.plates import normalize_plate, plate_distance, same_plate


def test_normal_form_drops_separators_and_case() -> None:
    assert normalize_plate("ab-12 3") == "AB123"
    assert normalize_plate(" m·ab 1234 ") == "MAB1234"


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("ABC123", "ABC123", 0.0),
        ("ABC123", "ABC128", 1.0),  # a plain misread
        ("ABC123", "ABC12", 1.0),  # a character lost
        ("AB0123", "ABO123", 0.5),  # O/0, a near miss
        ("I8C123", "1BC123", 1.0),  # I/1 and 8/B: two near misses
        ("ABC123", "XYZ789", 6.0),
    ],
)
def test_distance(a: str, b: str, distance: float) -> None:
    assert plate_distance(a, b) == distance
    assert plate_distance(b, a) == distance


def test_same_plate_within_tolerance() -> None:
    assert same_plate("abc-123", "ABC128")
    assert not same_plate("ABC123", "ABD128")
    assert same_plate("ABC123", "ABD128", tolerance=2)
