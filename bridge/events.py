"""The events the bridge publishes, built from a message; their shape is `schemas/*-event.schema.json`."""

from __future__ import annotations

import json
from typing import Any

from bridge.errors import BridgeError
from bridge.messages import Message, iso_utc


def plate_event(msg: Message) -> dict[str, Any]:
    """A plate event: the reader's response plus where and when the frame came from."""
    event: dict[str, Any] = dict(msg.result or {"results": []})
    event["camera_id"] = msg.camera_id
    event["topic"] = msg.topic
    event["timestamp"] = iso_utc(msg.timestamp or msg.received_at)
    event["received_at"] = iso_utc(msg.received_at)
    event["route"] = msg.route
    if msg.scale is not None:
        event["scale"] = msg.scale
    if msg.metadata.get("cached"):
        event["cached"] = True
    results = event.get("results")
    if isinstance(results, list) and len(results) == 1 and msg.metadata.get("split"):
        event["plate"] = results[0].get("plate")
    return event


def error_event(msg: Message, error: BridgeError) -> dict[str, Any]:
    """An error event: a stable code and a human message; never the image, never a secret."""
    event: dict[str, Any] = {
        "code": error.code,
        "message": error.message,
        "camera_id": msg.camera_id,
        "topic": msg.topic,
        "received_at": iso_utc(msg.received_at),
        "route": msg.route,
    }
    for key in ("status_code", "retry_after", "schema"):
        value = error.context.get(key)
        if value is not None:
            event[key] = value
    if error.problems:
        event["problems"] = error.problems[:10]
    if msg.scale is not None:
        event["scale"] = msg.scale
    return event


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not a JSON value")


def decode_json(text: str | bytes) -> Any:
    """Parse JSON off the wire strictly: Python's parser also takes NaN and Infinity, which are not
    JSON (RFC 8259) and which no schema, subscriber or other parser handles the same way."""
    return json.loads(text, parse_constant=_not_json)
