"""The flat, ready-made documents Home Assistant reads: a camera's state and its plate events.

Home Assistant gets no template over the reader's answer (that answer may have no plate, no region,
no vehicle: `tojson` over a missing key is how HA 2024.3 ended up logging `LoggingUndefined`). Every
state document has every key, null when unknown, so an attribute is never left over from the
previous plate.

Plates are shown as written on the plate, upper case (the reader answers in lower case): the sensor,
its attributes and the events say `NHK552`, as the snapshot's caption and the watch list's entry do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bridge.extensions.homeassistant.entities import PLATE_DETECTED, WATCHED_PLATE_DETECTED, trigger_name


def cleared_state(camera: str) -> dict[str, Any]:
    """A camera with no plate (at start-up, and `autoclear` seconds after its last plate)."""
    return {
        "camera": camera,
        "plate": None,
        "score": None,
        "region": None,
        "vehicle": None,
        "candidates": [],
        "watched": False,
        "list": None,
        "entry": None,
        "label": None,
        "distance": None,
        "lists": [],
        "timestamp": None,
    }


def _best_result(event: Mapping[str, Any]) -> Mapping[str, Any] | None:
    results = event.get("results")
    if not isinstance(results, Sequence) or not results:
        return None
    best = results[0]
    return best if isinstance(best, Mapping) else None


def display_plate(plate: object) -> str | None:
    """A plate as written on the plate (upper case); None stays None."""
    return str(plate).upper() if plate is not None else None


def _code(value: object, key: str) -> Any:
    return value.get(key) if isinstance(value, Mapping) else None


def watched_matches(event: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The event's watch-list matches, best first (the watchlist node's `watched` array)."""
    watched = event.get("watched")
    if not isinstance(watched, Sequence) or isinstance(watched, str):
        return []
    return [match for match in watched if isinstance(match, Mapping) and match.get("list")]


def camera_state(camera: str, event: Mapping[str, Any]) -> dict[str, Any] | None:
    """The state after a plate event, or None when the event has no plate (the state is kept)."""
    best = _best_result(event)
    if best is None or not best.get("plate"):
        return None
    matches = watched_matches(event)
    top = matches[0] if matches else {}
    candidates = [
        display_plate(item.get("plate")) for item in best.get("candidates") or () if isinstance(item, Mapping)
    ] or [display_plate(best.get("plate"))]
    return {
        **cleared_state(camera),
        "plate": display_plate(best.get("plate")),
        "score": best.get("score"),
        "region": _code(best.get("region"), "code"),
        "vehicle": _code(best.get("vehicle"), "type"),
        "candidates": candidates,
        "watched": bool(matches),
        "list": top.get("list"),
        "entry": top.get("entry"),
        "label": top.get("label"),
        "distance": top.get("distance"),
        "lists": list(dict.fromkeys(str(match["list"]) for match in matches)),
        "timestamp": event.get("timestamp"),
    }


def plate_events(state: Mapping[str, Any], event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The messages of the camera's event entity (and device triggers) for one plate: `plate_detected`,
    then one `watched_plate_detected` per matching list, with that list's best entry and label."""
    common = {
        "camera": state["camera"],
        "plate": state["plate"],
        "score": state["score"],
        "timestamp": state["timestamp"],
    }
    documents = [{"event_type": PLATE_DETECTED, "trigger": PLATE_DETECTED, **common}]
    seen: set[str] = set()
    for match in watched_matches(event):
        name = str(match["list"])
        if name in seen:
            continue  # best first: a list's first match is its best
        seen.add(name)
        documents.append(
            {
                "event_type": WATCHED_PLATE_DETECTED,
                "trigger": trigger_name(name),
                **common,
                "list": name,
                "entry": match.get("entry"),
                "label": match.get("label"),
                "distance": match.get("distance"),
                "candidate": display_plate(match.get("candidate")),
            }
        )
    return documents
