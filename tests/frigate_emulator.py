"""A small Frigate emulator: the two HTTP endpoints the bridge calls, and frigate/events messages.

Built from Frigate's documented wire format (docs.frigate.video: integrations/mqtt for the
`before`/`after` event messages; the HTTP API's `GET /api/events/{id}/snapshot.jpg` with its
`download`, `timestamp`, `bbox`, `crop`, `height`, `quality` query parameters, and
`POST /api/events/{id}/sub_label` with `{"subLabel", "subLabelScore"}`, answered with
`{"success", "message"}`). A real HTTP server on 127.0.0.1; tests publish the MQTT messages.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

SNAPSHOT_PARAMETERS = {"download", "timestamp", "bbox", "crop", "height", "quality"}


@dataclass
class FrigateEvent:
    """A tracked object as Frigate keeps it: its snapshot and what the API set on it."""

    event_id: str
    camera: str
    label: str
    snapshot: bytes
    sub_label: tuple[str, float | None] | None = None


@dataclass
class FrigateRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any = None


@dataclass
class FrigateEmulator:
    """`with FrigateEmulator() as frigate:` — `frigate.url`, `add_event(...)`, `requests`."""

    events: dict[str, FrigateEvent] = field(default_factory=dict)
    requests: list[FrigateRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _changed: threading.Condition = field(default_factory=threading.Condition)
    # Snapshots are answered while set; a test clears it to keep the bridge's fetch waiting.
    release: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.release.set()

    def add_event(self, event_id: str, camera: str, label: str, snapshot: bytes) -> FrigateEvent:
        event = FrigateEvent(event_id, camera, label, snapshot)
        with self._lock:
            self.events[event_id] = event
        return event

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def snapshot_requests(self, event_id: str | None = None) -> list[FrigateRequest]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.method == "GET"
                and (event_id is None or r.path == f"/api/events/{event_id}/snapshot.jpg")
            ]

    def wait_for_snapshot_requests(
        self, event_id: str, count: int, timeout: float = 15.0
    ) -> list[FrigateRequest]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.snapshot_requests(event_id)) >= count, timeout)
        found = self.snapshot_requests(event_id)
        assert len(found) >= count, f"{len(found)} snapshot request(s) of {event_id}, wanted {count}"
        return found

    def wait_for_sub_label(self, event_id: str, timeout: float = 15.0) -> tuple[str, float | None]:
        with self._changed:
            self._changed.wait_for(lambda: self.events[event_id].sub_label is not None, timeout)
        label = self.events[event_id].sub_label
        assert label is not None, f"no sub label set on {event_id} after {timeout} s"
        return label

    def __enter__(self) -> FrigateEmulator:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="frigate-emulator", daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _answer(self, method: str, raw_path: str, body: bytes) -> tuple[int, str, bytes]:
        parts = urlsplit(raw_path)
        query = parse_qs(parts.query)
        levels = parts.path.split("/")
        parsed_body: Any = None
        if body:
            try:
                parsed_body = json.loads(body)
            except ValueError:
                return _json(HTTPStatus.UNPROCESSABLE_ENTITY, {"detail": "body is not JSON"})
        with self._lock:
            self.requests.append(FrigateRequest(method, unquote(parts.path), query, parsed_body))
        with self._changed:
            self._changed.notify_all()
        # /api/events/<id>/<leaf>
        if len(levels) != 5 or levels[:3] != ["", "api", "events"]:
            return _json(HTTPStatus.NOT_FOUND, {"detail": "Not Found"})
        event_id, leaf = unquote(levels[3]), levels[4]
        with self._lock:
            event = self.events.get(event_id)
        if method == "GET" and leaf == "snapshot.jpg":
            unknown = set(query) - SNAPSHOT_PARAMETERS
            if unknown:
                return _json(
                    HTTPStatus.UNPROCESSABLE_ENTITY, {"detail": f"unknown parameters {sorted(unknown)}"}
                )
            if event is None:
                return _json(HTTPStatus.NOT_FOUND, {"success": False, "message": "Event not found"})
            self.release.wait(30)
            return HTTPStatus.OK, "image/jpeg", event.snapshot
        if method == "POST" and leaf == "sub_label":
            problem = _sub_label_problem(parsed_body)
            if problem:
                return _json(HTTPStatus.UNPROCESSABLE_ENTITY, {"detail": problem})
            if event is None:
                return _json(
                    HTTPStatus.NOT_FOUND, {"success": False, "message": f"Event {event_id} not found"}
                )
            with self._changed:
                event.sub_label = (parsed_body["subLabel"], parsed_body.get("subLabelScore"))
                self._changed.notify_all()
            return _json(
                HTTPStatus.OK,
                {"success": True, "message": f"Event {event_id} sub label set to {parsed_body['subLabel']}"},
            )
        return _json(HTTPStatus.METHOD_NOT_ALLOWED, {"detail": "Method Not Allowed"})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                status, content_type, body = emulator._answer(method, self.path, self.rfile.read(length))
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def _json(status: int, body: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(body).encode()


def _sub_label_problem(body: Any) -> str | None:
    """Frigate's EventsSubLabelBody: subLabel a string of at most 100, subLabelScore in (0, 1]."""
    if not isinstance(body, dict) or not isinstance(body.get("subLabel"), str):
        return "subLabel: field required"
    if len(body["subLabel"]) > 100:
        return "subLabel: at most 100 characters"
    score = body.get("subLabelScore")
    if score is not None and not (isinstance(score, int | float) and 0 < score <= 1):
        return "subLabelScore: must be > 0 and <= 1"
    return None


def event_message(
    kind: str,
    event_id: str,
    *,
    camera: str = "driveway",
    label: str = "car",
    top_score: float = 0.8,
    snapshot_time: float = 1_700_000_000.5,
    zones: tuple[str, ...] = (),
    has_snapshot: bool = True,
    sub_label: str | None = None,
) -> bytes:
    """A frigate/events message as Frigate (0.14+) publishes it: `type`, `before` and `after`."""
    start = 1_700_000_000.0

    def state(score: float, snapshot_at: float) -> dict[str, Any]:
        return {
            "id": event_id,
            "camera": camera,
            "frame_time": snapshot_at,
            "snapshot": {
                "frame_time": snapshot_at,
                "box": [415, 489, 528, 700],
                "area": 12728,
                "region": [260, 446, 660, 846],
                "score": score,
                "attributes": [],
            },
            "label": label,
            "sub_label": sub_label,
            "top_score": score,
            "false_positive": False,
            "start_time": start,
            "end_time": snapshot_at + 5 if kind == "end" else None,
            "score": score,
            "box": [424, 500, 536, 712],
            "area": 23744,
            "ratio": 2.113207,
            "region": [264, 450, 667, 853],
            "current_zones": list(zones),
            "entered_zones": list(zones),
            "thumbnail": None,
            "has_snapshot": has_snapshot,
            "has_clip": True,
            "stationary": False,
            "motionless_count": 0,
            "position_changes": 1,
            "attributes": {},
        }

    return json.dumps(
        {
            "type": kind,
            "before": state(max(0.1, top_score - 0.1), start + 0.5),
            "after": state(top_score, snapshot_time),
        }
    ).encode()
