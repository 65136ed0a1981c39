"""The watch lists over MQTT, the way Zigbee2MQTT's `bridge/request` works.

A client publishes JSON on `{base}/bridge/request/watchlist/<action>` and gets the answer on
`{base}/bridge/response/watchlist/<action>`: `{"status": "ok", "data": {...}}` or
`{"status": "error", "data": {}, "error": "..."}`, carrying the request's `transaction` back when it
had one, so a client with several requests in flight tells the answers apart.

    add     {"list": "family", "plate": "AB123CD", "label": "Anna's car"}  -> data: the entry
    remove  {"list": "family", "plate": "AB123CD"}                        -> data: {..., "removed": bool}
    list    {"list": "family"} (or {} for every list)                     -> data: {"entries": [...]}
    import  {"list": "stolen", "csv": "plate,label\\n...", "replace": true} -> data: {"list", "count"}
    export  {"list": "stolen"}                                             -> data: {"list", "csv"}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from bridge.errors import BridgeError
from bridge.extensions.history.store import HistoryStore, WatchEntry

ACTIONS = ("add", "remove", "list", "import", "export")
MAX_TRANSACTION = 200


def _entry(entry: WatchEntry) -> dict[str, Any]:
    return {"list": entry.list, "plate": entry.plate, "label": entry.label, "source": entry.source}


def _text(request: Mapping[str, Any], key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BridgeError(f"the request needs {key!r} (a non-empty string)")
    return value


def handle(store: HistoryStore, action: str, payload: bytes, changed: Callable[[], None]) -> dict[str, Any]:
    """The response document to one request; `changed()` is called after an edit, before answering,
    so that the next frame is matched against the edited lists."""
    transaction: Any = None
    try:
        try:
            request = orjson.loads(payload) if payload.strip() else {}
        except orjson.JSONDecodeError:
            raise BridgeError("the request is not JSON") from None
        if not isinstance(request, dict):
            raise BridgeError("the request is not a JSON object")
        transaction = request.get("transaction")
        if not isinstance(transaction, str | int) or isinstance(transaction, bool):
            transaction = None
        elif isinstance(transaction, str):
            transaction = transaction[:MAX_TRANSACTION]
        data = _act(store, action, request, changed)
        response: dict[str, Any] = {"data": data, "status": "ok"}
    except BridgeError as exc:
        response = {"data": {}, "status": "error", "error": exc.message}
    if transaction is not None:
        response["transaction"] = transaction
    return response


def _act(
    store: HistoryStore, action: str, request: Mapping[str, Any], changed: Callable[[], None]
) -> dict[str, Any]:
    if action == "add":
        label = request.get("label")
        if label is not None and not isinstance(label, str):
            raise BridgeError("'label' must be a string")
        entry = store.add_watch(_text(request, "list"), _text(request, "plate"), label)
        changed()
        return _entry(entry)
    if action == "remove":
        name, plate = _text(request, "list"), _text(request, "plate")
        removed = store.remove_watch(name, plate)
        if removed:
            changed()
        return {"list": name, "plate": plate, "removed": removed}
    if action == "list":
        name = request.get("list")
        if name is not None and not isinstance(name, str):
            raise BridgeError("'list' must be a string")
        return {"entries": [_entry(entry) for entry in store.watch_entries(name)]}
    if action == "import":
        replace = request.get("replace", True)
        if not isinstance(replace, bool):
            raise BridgeError("'replace' must be true or false")
        name = _text(request, "list")
        count = store.import_csv(name, _text(request, "csv"), replace=replace)
        changed()
        return {"list": name, "count": count}
    if action == "export":
        name = _text(request, "list")
        return {"list": name, "csv": store.export_csv(name)}
    raise BridgeError(f"unknown watch-list request {action[:40]!r}; known: {', '.join(ACTIONS)}")
