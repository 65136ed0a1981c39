"""Deletion-neighbourhood keys: a search with tolerance 1 as an index look-up.

Two strings within edit distance 1 share a key, where a string's keys are itself and each string
made by deleting one of its characters (a substitution deletes the same position from both; an
insertion is the longer one's deletion). Plates are folded first (O/0, I/1, B/8... made one
character, `bridge.nodes.watchlist.fold`), so a look-alike misread costs nothing in the index and
the exact, look-alike-aware `plate_distance` decides among the few plates the keys find. A 7-character
plate has at most 8 keys; a query reads at most 8 index ranges, whatever the store's size.
"""

from __future__ import annotations

from bridge.nodes.watchlist import fold


def deletion_keys(normal: str) -> set[str]:
    """The folded plate and each folded plate with one character deleted."""
    folded = fold(normal)
    keys = {folded}
    keys.update(folded[:index] + folded[index + 1 :] for index in range(len(folded)))
    return keys
