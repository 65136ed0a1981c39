"""Whether each watched plate is present, as retained documents on `{base}/history/presence/<plate>`.

The history extension publishes one per plate of a watch list (the configuration's and the store's):
`{"state": "home" | "not_home", "plate", "label", "lists", "last_seen", "cameras"}`, and an empty
retained message when the plate leaves every list. The Home Assistant extension turns each into a
`device_tracker` (home/not_home); anything else on MQTT may read them too. A plate is home while a
visit of a plate within 1 of it (look-alikes counting half, as watch lists match) is open.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.extensions.history.store import Visit, WatchEntry
from bridge.messages import iso_utc
from bridge.plates import normalize_plate, plate_distance

TOLERANCE = 1.0


def presence_topic(base: str, plate: str) -> str:
    return f"{base}/history/presence/{plate}"


@dataclass(frozen=True, slots=True)
class Watched:
    plate: str
    label: str | None
    lists: tuple[str, ...]


def watched_plates(entries: Iterable[WatchEntry]) -> dict[str, Watched]:
    """Each listed plate once (normalized), with its first label and every list it is on."""
    found: dict[str, Watched] = {}
    for entry in entries:
        plate = normalize_plate(entry.plate)
        if not plate or not plate.isalnum():
            continue
        known = found.get(plate)
        if known is None:
            found[plate] = Watched(plate, entry.label, (entry.list,))
        elif entry.list not in known.lists:
            found[plate] = Watched(plate, known.label or entry.label, (*known.lists, entry.list))
    return found


def presence_documents(watched: Mapping[str, Watched], present: Sequence[Visit]) -> dict[str, dict[str, Any]]:
    """plate -> its presence document."""
    documents = {}
    for plate, item in watched.items():
        visit = next((v for v in present if plate_distance(plate, v.plate) <= TOLERANCE), None)
        documents[plate] = {
            "state": "home" if visit is not None else "not_home",
            "plate": plate,
            "label": item.label,
            "lists": list(item.lists),
            "last_seen": iso_utc(visit.last_seen) if visit is not None else None,
            "cameras": list(visit.cameras) if visit is not None else [],
        }
    return documents
