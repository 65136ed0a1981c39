"""The web page's JSON API over the history store, its CSV exports and the live feed (server-sent
events): one function per endpoint, each given the checked `Request` (bridge/extensions/web/server.py
has already decided who may ask), and the table of their paths."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import queue
import re
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from bridge.core.plates import normalize_plate
from bridge.extensions.web import params
from bridge.extensions.web.params import BadRequest
from bridge.extensions.web.responses import REQUEST_DEADLINE, HTTPError, send

if TYPE_CHECKING:
    from bridge.extensions.web.server import Request

KEEPALIVE = 15.0
"""Seconds between a live-feed stream's comments when nothing arrives (proxies close idle streams)."""
EXPORT_PAGE = 1000
"""Rows read from the store at a time for a CSV export (its own limit per search)."""


def api_search(request: Request) -> None:
    search = params.search(request.query)
    found = request.server.store.search(search.plate, **search.arguments())
    request.send({"sightings": [params.sighting_json(s) for s in found]})


def api_export(request: Request) -> None:
    search = params.search(request.query, max_limit=params.MAX_EXPORT)
    wanted = search.limit if "limit=" in request.query else params.MAX_EXPORT
    found: list[Any] = []
    while len(found) < wanted:  # in pages the store's limit allows, newest first
        page = dataclasses.replace(search, limit=min(EXPORT_PAGE, wanted - len(found)))
        if found:
            page = dataclasses.replace(page, before_id=found[-1].id)
        batch = request.server.store.search(page.plate, **page.arguments())
        found.extend(batch)
        if len(batch) < page.limit:
            break
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(params.CSV_COLUMNS)
    writer.writerows(params.csv_row(s) for s in found)
    send(
        request.raw,
        HTTPStatus.OK,
        "text/csv; charset=utf-8",
        out.getvalue().encode(),
        {"Content-Disposition": 'attachment; filename="plates.csv"', "Cache-Control": "no-store"},
    )


def api_sighting(request: Request, number: str) -> None:
    request.no_query()
    sighting = request.server.store.sighting(params.integer(number, "id", 1, 2**62))
    if sighting is None:
        raise HTTPError(HTTPStatus.NOT_FOUND, f"no vehicle {number}")
    request.send({"sighting": params.sighting_json(sighting)})


def api_image(request: Request, number: str, kind: str) -> None:
    request.no_query()
    image = request.server.store.image(params.integer(number, "id", 1, 2**62), kind)
    if image is None:
        raise HTTPError(HTTPStatus.NOT_FOUND, f"no {kind} of vehicle {number}")
    send(request.raw, HTTPStatus.OK, "image/jpeg", image, {"Cache-Control": "private, max-age=3600"})


def api_plate(request: Request, text: str) -> None:
    plate = params.plate(text)
    given = params.query(request.query, {"tolerance"})
    tolerance = params.integer(given.get("tolerance", "0"), "tolerance", 0, 2)
    store = request.server.store
    sightings = store.search(plate, tolerance=tolerance, limit=100)
    visits = store.visits(plate, limit=50)
    normal = normalize_plate(plate)
    lists = [e for e in store.watch_entries() if e.plate == normal]
    request.send(
        {
            "plate": plate,
            "sightings": [params.sighting_json(s) for s in sightings],
            "visits": [params.visit_json(v) for v in visits],
            "watchlists": [{"list": e.list, "label": e.label, "source": e.source} for e in lists],
        }
    )


def api_present(request: Request) -> None:
    request.no_query()
    request.send({"visits": [params.visit_json(v) for v in request.server.store.present()]})


def api_cameras(request: Request) -> None:
    request.no_query()
    request.send({"cameras": request.server.store.cameras()})


def api_usage(request: Request) -> None:
    given = params.query(request.query, {"month"})
    month = given.get("month")
    if month is not None and not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
        raise BadRequest("month must look like 2026-12")
    usage = request.server.store.usage(month)
    request.send(
        {
            "month": usage.month,
            "calls": usage.calls,
            "saved_by_reuse": usage.saved_by_reuse,
            "saved_by_consensus": usage.saved_by_consensus,
            "read_offline": usage.read_offline,
        }
    )


def api_watchlists(request: Request) -> None:
    request.no_query()
    lists: dict[str, dict[str, Any]] = {}
    for entry in request.server.store.watch_entries():
        shown = lists.setdefault(entry.list, {"name": entry.list, "source": entry.source, "entries": []})
        shown["entries"].append({"plate": entry.plate, "label": entry.label})
    request.send({"lists": sorted(lists.values(), key=lambda item: item["name"])})


def api_add(request: Request, name: str) -> None:
    plate, label = params.watch_entry(request.json_body())
    entry = request.server.store.add_watch(params.list_name(name), plate, label)
    request.server.on_watch_change()
    request.send({"list": entry.list, "plate": entry.plate, "label": entry.label, "source": entry.source})


def api_remove(request: Request, name: str, text: str) -> None:
    request.no_query()
    removed = request.server.store.remove_watch(params.list_name(name), params.plate(text))
    if not removed:
        raise HTTPError(HTTPStatus.NOT_FOUND, f"{text} is not on {name}")
    request.server.on_watch_change()
    request.send({"removed": True})


def api_import(request: Request, name: str) -> None:
    request.no_query()
    raw = request.body(request.settings.max_upload_bytes, "text/csv")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("the CSV is not UTF-8 text") from None
    count = request.server.store.import_csv(params.list_name(name), text)
    request.server.on_watch_change()
    request.send({"imported": count})


def api_list_export(request: Request, name: str) -> None:
    request.no_query()
    text = request.server.store.export_csv(params.list_name(name))
    send(
        request.raw,
        HTTPStatus.OK,
        "text/csv; charset=utf-8",
        text.encode(),
        {"Content-Disposition": f'attachment; filename="{name}.csv"', "Cache-Control": "no-store"},
    )


def api_feed(request: Request) -> None:
    """Server-sent events: one `sighting` event per new vehicle, a comment every KEEPALIVE s."""
    request.no_query()
    server = request.server
    if not server.streams.acquire(blocking=False):
        raise HTTPError(HTTPStatus.SERVICE_UNAVAILABLE, "too many pages follow the live feed")
    follower = server.feed.follow()
    try:
        _stream(request, follower)
    finally:
        server.feed.unfollow(follower)
        server.streams.release()


def _stream(request: Request, follower: queue.Queue[Any]) -> None:
    raw = request.raw
    raw.close_connection = True

    def write(data: bytes) -> None:
        raw._deadline = time.monotonic() + REQUEST_DEADLINE  # each write has the whole deadline
        raw.wfile.write(data)

    raw._deadline = time.monotonic() + REQUEST_DEADLINE
    raw.send_response(HTTPStatus.OK)
    raw.send_header("Content-Type", "text/event-stream")
    raw.send_header("Cache-Control", "no-store")
    raw.send_header("X-Accel-Buffering", "no")  # nginx: pass each event on at once
    raw.end_headers()
    write(b"retry: 3000\n: following\n\n")
    while not request.server.feed.stopping:
        try:
            sighting = follower.get(timeout=KEEPALIVE)
        except queue.Empty:
            write(b": keepalive\n\n")
            continue
        if sighting is None:
            return
        data = json.dumps(params.sighting_json(sighting), separators=(",", ":"))
        write(f"event: sighting\nid: {sighting.id}\ndata: {data}\n\n".encode())


Handler = Callable[..., None]
ROUTES: tuple[tuple[re.Pattern[str], tuple[str, ...], Handler], ...] = tuple(
    (re.compile(pattern), methods, handler)
    for pattern, methods, handler in (
        (r"/api/feed", ("GET",), api_feed),
        (r"/api/search", ("GET", "HEAD"), api_search),
        (r"/api/search\.csv", ("GET", "HEAD"), api_export),
        (r"/api/sightings/(\d{1,19})", ("GET", "HEAD"), api_sighting),
        (r"/api/sightings/(\d{1,19})/(crop|snapshot)\.jpg", ("GET", "HEAD"), api_image),
        (r"/api/plates/([^/]{1,40})", ("GET", "HEAD"), api_plate),
        (r"/api/present", ("GET", "HEAD"), api_present),
        (r"/api/cameras", ("GET", "HEAD"), api_cameras),
        (r"/api/usage", ("GET", "HEAD"), api_usage),
        (r"/api/watchlists", ("GET", "HEAD"), api_watchlists),
        (r"/api/watchlists/([^/]{1,100})/entries", ("POST",), api_add),
        (r"/api/watchlists/([^/]{1,100})/entries/([^/]{1,40})", ("DELETE",), api_remove),
        (r"/api/watchlists/([^/]{1,100})/import", ("POST",), api_import),
        (r"/api/watchlists/([^/]{1,100})/export\.csv", ("GET", "HEAD"), api_list_export),
    )
)
