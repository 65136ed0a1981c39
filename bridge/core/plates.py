"""Plate text: one normal form, and a distance that knows which characters readers confuse.

Watch lists, plate dedupe and multi-frame consensus all ask "is this the same plate?"; they ask it
here, so a one-character misread means the same thing to each of them.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Pairs a reader confuses (each one way round; the lookup is symmetric): a substitution between them
# costs `NEAR_MISS_COST` instead of 1, so "AB0" is closer to "ABO" than to "ABQ".
CONFUSABLE_PAIRS = ("O0", "D0", "Q0", "I1", "L1", "T1", "B8", "S5", "Z2", "G6", "A4")
NEAR_MISS_COST = 0.5

_SEPARATORS = re.compile(r"[\s\-._·•]+")
_CONFUSABLE = frozenset(pair for a, b in CONFUSABLE_PAIRS for pair in ((a, b), (b, a)))


def normalize_plate(text: str) -> str:
    """Upper case, without spaces, dashes, dots or middle dots: `ab-12 3` -> `AB123`."""
    return _SEPARATORS.sub("", text).upper()


def substitution_cost(a: str, b: str) -> float:
    """0 for the same character, `NEAR_MISS_COST` for a confusable pair, 1 otherwise."""
    if a == b:
        return 0.0
    return NEAR_MISS_COST if (a, b) in _CONFUSABLE else 1.0


@lru_cache(maxsize=4096)
def plate_distance(a: str, b: str) -> float:
    """Edit distance between two normalized plates: insertions and deletions cost 1, substitutions
    `substitution_cost`. Symmetric; 0 only for equal plates."""
    if a == b:
        return 0.0
    if len(a) < len(b):
        a, b = b, a
    previous = [float(j) for j in range(len(b) + 1)]
    for i, char_a in enumerate(a, 1):
        current = [float(i)]
        for j, char_b in enumerate(b, 1):
            current.append(
                min(
                    previous[j] + 1,
                    current[j - 1] + 1,
                    previous[j - 1] + substitution_cost(char_a, char_b),
                )
            )
        previous = current
    return previous[-1]


def same_plate(a: str, b: str, tolerance: float = 1.0) -> bool:
    """Whether two readings are the same plate within `tolerance` (normalized first)."""
    return plate_distance(normalize_plate(a), normalize_plate(b)) <= tolerance
