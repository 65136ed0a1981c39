"""The web page's query parameters and request bodies, checked before the store sees them, and the
store's records as JSON. Every refusal is a `BadRequest` whose message the client is shown (400)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

MAX_QUERY = 2048
"""Characters of a query string accepted."""
MAX_PLATE = 16
MAX_NAME = 100
MAX_LABEL = 200
MAX_LIMIT = 500
"""Rows of one page of results (the CSV export takes up to `MAX_EXPORT`)."""
MAX_EXPORT = 10_000
_PLATE = re.compile(r"^[A-Za-z0-9 -]{1,16}$")
_NAME = re.compile(r"^[\w][\w .\-]{0,99}$")
_CAMERA = re.compile(r"^[^\x00-\x1f]{1,100}$")


class BadRequest(ValueError):
    """Raised when a request's parameters or body are not what the page accepts (answered 400)."""


def query(raw: str, allowed: set[str]) -> dict[str, str]:
    """The query string's parameters, each given once and known; blank ones left out."""
    if len(raw) > MAX_QUERY:
        raise BadRequest(f"the query is longer than {MAX_QUERY} characters")
    try:
        parsed = parse_qs(raw, keep_blank_values=True, strict_parsing=False, max_num_fields=20)
    except ValueError:
        raise BadRequest("too many query parameters") from None
    unknown = sorted(set(parsed) - allowed)
    if unknown:
        raise BadRequest(f"unknown parameter {unknown[0][:40]!r}; known: {', '.join(sorted(allowed))}")
    found = {}
    for key, values in parsed.items():
        if len(values) > 1:
            raise BadRequest(f"{key} is given {len(values)} times")
        if values[0].strip():
            found[key] = values[0].strip()
    return found


def plate(text: str, what: str = "plate") -> str:
    if not _PLATE.match(text):
        raise BadRequest(f"{what} must be 1-{MAX_PLATE} letters, digits, spaces or dashes")
    return text.upper()


def list_name(text: str) -> str:
    if not _NAME.match(text):
        raise BadRequest("a list name is 1-100 letters, digits, spaces, dots, dashes or underscores")
    return text


def camera(text: str) -> str:
    if not _CAMERA.match(text):
        raise BadRequest("camera must be 1-100 printable characters")
    return text


def integer(text: str, what: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"{what} must be a whole number, not {text[:20]!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"{what} must be {low}-{high}, not {value}")
    return value


def moment(text: str, what: str) -> datetime:
    """An ISO 8601 time; one without a zone is UTC."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 moved across a day
        raise BadRequest(f"{what} must be an ISO 8601 time such as 2026-12-08T09:30:00Z") from None


SEARCH_KEYS = {"plate", "tolerance", "camera", "list", "since", "until", "limit", "before"}


@dataclass(frozen=True, slots=True)
class Search:
    """A search of the store, as `HistoryStore.search` takes it."""

    plate: str | None = None
    tolerance: int = 0
    camera: str | None = None
    watchlist: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    before_id: int | None = None

    def arguments(self) -> dict[str, Any]:
        return {
            "tolerance": self.tolerance,
            "camera": self.camera,
            "watchlist": self.watchlist,
            "since": self.since,
            "until": self.until,
            "limit": self.limit,
            "before_id": self.before_id,
        }


def search(raw: str, *, max_limit: int = MAX_LIMIT) -> Search:
    given = query(raw, SEARCH_KEYS)
    since = moment(given["since"], "since") if "since" in given else None
    until = moment(given["until"], "until") if "until" in given else None
    if since and until and since >= until:
        raise BadRequest("since must be before until")
    return Search(
        plate=plate(given["plate"]) if "plate" in given else None,
        tolerance=integer(given.get("tolerance", "0"), "tolerance", 0, 2),
        camera=camera(given["camera"]) if "camera" in given else None,
        watchlist=list_name(given["list"]) if "list" in given else None,
        since=since,
        until=until,
        limit=integer(given.get("limit", "50"), "limit", 1, max_limit),
        before_id=integer(given["before"], "before", 1, 2**62) if "before" in given else None,
    )


def watch_entry(body: Mapping[str, Any]) -> tuple[str, str | None]:
    """The plate and label of a watch-list entry's JSON body."""
    if not isinstance(body, Mapping) or set(body) - {"plate", "label"}:
        raise BadRequest('the body must be a JSON object {"plate": ..., "label": ...}')
    text = body.get("plate")
    if not isinstance(text, str):
        raise BadRequest("plate is missing")
    label = body.get("label")
    if label is not None and (not isinstance(label, str) or len(label) > MAX_LABEL):
        raise BadRequest(f"label must be text of at most {MAX_LABEL} characters")
    return plate(text.strip()), (label.strip() or None) if label else None


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def sighting_json(sighting: Any) -> dict[str, Any]:
    return {
        "id": sighting.id,
        "plate": sighting.plate,
        "candidates": list(sighting.candidates),
        "score": sighting.score,
        "region": sighting.region,
        "camera": sighting.camera,
        "seen_at": iso(sighting.seen_at),
        "watchlists": list(sighting.watchlists),
        "reader": sighting.reader,
        "calls": sighting.calls,
        "has_crop": sighting.has_crop,
        "has_snapshot": sighting.has_snapshot,
        "visit_id": sighting.visit_id,
    }


def visit_json(visit: Any) -> dict[str, Any]:
    return {
        "id": visit.id,
        "plate": visit.plate,
        "first_seen": iso(visit.first_seen),
        "last_seen": iso(visit.last_seen),
        "dwell_seconds": int(visit.dwell.total_seconds()),
        "cameras": list(visit.cameras),
        "open": visit.open,
    }


CSV_COLUMNS = (
    "id",
    "plate",
    "seen_at",
    "camera",
    "score",
    "region",
    "watchlists",
    "reader",
    "calls",
    "visit_id",
)


def csv_row(sighting: Any) -> list[str]:
    row = sighting_json(sighting)
    row["watchlists"] = " ".join(row["watchlists"])
    # A cell starting with = + - @ is a formula to a spreadsheet: quote it as text (CSV injection).
    return [_cell(row[column]) for column in CSV_COLUMNS]


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
