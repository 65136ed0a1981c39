"""From a published event to the vehicles the history store keeps: one `Record` per plate read.

Runs on the history writer's thread, never on the frame path: the crop and the annotated snapshot
(JPEG encodes of a few milliseconds each) are made here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge.extensions.history.models import Record

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pending:
    """A vehicle event waiting for the writer: what the frame path hands over, nothing copied."""

    kind: str
    event: Mapping[str, Any]
    image: bytes | None
    scale: float | None
    camera: str
    seen_at: datetime


def _when(value: Any, default: datetime) -> datetime:
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return default
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return default


def _candidates(result: Mapping[str, Any]) -> tuple[str, ...]:
    found = []
    for candidate in result.get("candidates") or ():
        plate = candidate.get("plate") if isinstance(candidate, Mapping) else None
        if isinstance(plate, str) and plate.upper() not in found:
            found.append(plate.upper())
    return tuple(found[:10])


def _region(result: Mapping[str, Any]) -> str | None:
    region = result.get("region")
    code = region.get("code") if isinstance(region, Mapping) else None
    return str(code)[:16] if isinstance(code, str) and code else None


def records_of(pending: Pending, *, reader: str, images: bool) -> list[Record]:
    """The vehicles of one event: a vehicle event's voted plate, or each plate of a plate event."""
    event = pending.event
    results = [r for r in event.get("results") or () if isinstance(r, Mapping) and r.get("plate")]
    if not results:
        return []
    watched = [m for m in event.get("watched") or () if isinstance(m, Mapping)]
    reader_kind = event.get("reader") if isinstance(event.get("reader"), str) else reader
    if pending.kind == "vehicle":
        seen_at = _when(event.get("first_seen"), pending.seen_at)
        calls = int(event.get("calls") or 0)
        plates = [(str(event.get("plate") or results[0]["plate"]).upper(), results[0])]
    else:
        seen_at = pending.seen_at
        # A paid call, unless the frame reused a reading or the offline reader read it.
        calls = 0 if event.get("cached") or reader_kind == "local" else 1
        plates = [(str(result["plate"]).upper(), result) for result in results]
    snapshot = _snapshot(pending, results, watched) if images else None
    records = []
    for index, (plate, result) in enumerate(plates):
        lists = tuple(
            dict.fromkeys(
                str(m.get("list"))
                for m in watched
                if str(m.get("plate") or "").upper() == plate and m.get("list")
            )
        )
        score = result.get("score")
        records.append(
            Record(
                plate=plate,
                camera=pending.camera,
                seen_at=seen_at,
                score=float(score) if isinstance(score, int | float) else 0.0,
                candidates=_candidates(result),
                region=_region(result),
                watchlists=lists,
                reader=str(reader_kind),
                # A frame with two plates was one call: the first vehicle carries it.
                calls=calls if index == 0 else 0,
                crop=_crop(pending, result) if images else None,
                snapshot=snapshot,
            )
        )
    return records


def _snapshot(pending: Pending, results: Sequence[Mapping[str, Any]], watched: list[Any]) -> bytes | None:
    if not pending.image:
        return None
    from bridge.imaging.annotate import annotate

    try:
        return annotate(pending.image, results, watched, scale=pending.scale)
    except (ValueError, OSError) as exc:
        log.debug("history: no snapshot for %s: %s", pending.camera, exc)
        return None


def _crop(pending: Pending, result: Mapping[str, Any]) -> bytes | None:
    if not pending.image:
        return None
    from bridge.imaging.annotate import crop_best_plate

    try:
        return crop_best_plate(pending.image, [result], scale=pending.scale)
    except (ValueError, OSError) as exc:
        log.debug("history: no crop for %s: %s", pending.camera, exc)
        return None
