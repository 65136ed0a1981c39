"""Frigate as a source: follow `frigate/events`, read each tracked vehicle's snapshot once.

Frigate (the NVR) publishes on `frigate/events` a `{"type": "new"|"update"|"end", "before": {...},
"after": {...}}` document whenever a tracked object appears, changes zones, gets a better snapshot or
ends (docs.frigate.video, integrations/mqtt). For a vehicle in the configured cameras and zones, this
extension fetches the event's snapshot from Frigate's HTTP API (`GET /api/events/<id>/snapshot.jpg`,
cropped to the object), hands it to the routes like a camera frame with the event in its metadata, and
reads it again only when Frigate reports a better snapshot, up to `max_reads_per_event`. Optionally it
writes the plate back to Frigate as the event's sub label (`POST /api/events/<id>/sub_label`).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from pydantic import Field, field_validator

from bridge.config import StrictModel
from bridge.core.events import decode_json
from bridge.core.messages import Origin, check_publish_topic
from bridge.core.redact import shown_url
from bridge.extensions.base import Extension, ExtensionContext, PublishedEvent

if TYPE_CHECKING:
    import urllib3

    from bridge.config import BridgeConfig
    from bridge.mqtt import InboundMessage

log = logging.getLogger(__name__)

# Frigate's EventsSubLabelBody: subLabel at most 100 characters, subLabelScore in (0, 1].
SUB_LABEL_MAX_CHARS = 100
# The name of the frames' origin: plate events of Frigate's snapshots carry it (`frigate: {...}`).
ORIGIN = "frigate"


class FrigateConfig(StrictModel):
    """Frigate as a source: follow `frigate/events`, read each tracked vehicle's snapshot once."""

    enabled: bool = Field(False, description="Follow Frigate's events and read the plates of its vehicles.")
    url: str = Field(
        "http://frigate:5000",
        description="Frigate's HTTP API (the internal, unauthenticated port 5000), without /api.",
    )
    topic_prefix: str = Field("frigate", min_length=1, description="Frigate's mqtt.topic_prefix.")
    labels: tuple[str, ...] = Field(("car", "motorcycle"), min_length=1, description="Object labels read.")
    cameras: tuple[str, ...] = Field((), description="Frigate cameras followed; empty: all.")
    zones: tuple[str, ...] = Field(
        (), description="Only objects in (or having entered) one of these zones; empty: anywhere."
    )
    min_score: float = Field(0.0, ge=0, le=1, description="Smallest top_score of an object worth reading.")
    crop: bool = Field(True, description="Ask Frigate for the snapshot cropped to the object.")
    height: int | None = Field(None, ge=16, description="Ask Frigate to resize the snapshot to this height.")
    quality: int = Field(95, ge=1, le=100, description="JPEG quality asked of Frigate (plates need detail).")
    max_reads_per_event: int = Field(
        2,
        ge=1,
        le=20,
        description="Reader calls per Frigate event at most: the first snapshot, then only a better one.",
    )
    topic: str = Field(
        "frigate/{camera}/{label}/event_snapshot",
        description="Topic the fetched snapshots are handed to the routes on ({camera}, {label}); a route "
        "must match it (they are not published to the broker).",
    )
    sub_label: bool = Field(
        False, description="Write the plate (or its watch-list label) back as the Frigate event's sub label."
    )
    timeout: float = Field(10.0, gt=0, le=120, description="Seconds to wait for one Frigate HTTP call.")
    tracked_events: int = Field(1000, ge=10, description="Frigate events remembered at most (oldest go).")
    queue_size: int = Field(32, ge=1, description="Frigate HTTP calls waiting at most; more are dropped.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"frigate.url {shown_url(value)!r} must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("topic")
    @classmethod
    def _topic_placeholders(cls, value: str) -> str:
        try:
            check_publish_topic(value.format(camera="c", label="l"))
        except (KeyError, IndexError) as exc:
            raise ValueError(f"{value!r}: only {{camera}} and {{label}} may be used ({exc})") from None
        return value


@dataclass(slots=True)
class _Tracked:
    """What the bridge remembers of one Frigate event."""

    reads: int = 0
    top_score: float = -1.0
    snapshot: object = None  # the marker of the snapshot last read (its frame time)
    sub_label: str | None = None


@dataclass(frozen=True, slots=True)
class FrigateObject:
    """The `after` part of a frigate/events message, the fields the bridge uses."""

    event_id: str
    camera: str
    label: str
    zones: frozenset[str]
    has_snapshot: bool
    top_score: float
    snapshot: object
    frame_time: float | None

    @classmethod
    def parse(cls, payload: bytes) -> tuple[str, FrigateObject]:
        """The message's type and object; ValueError saying what is wrong with it."""
        try:
            document = decode_json(payload)
        except ValueError as exc:
            raise ValueError(f"not JSON ({exc})") from None
        if not isinstance(document, dict) or not isinstance(document.get("after"), dict):
            raise ValueError("no 'after' object")
        after = document["after"]
        event_id, camera, label = after.get("id"), after.get("camera"), after.get("label")
        if not all(isinstance(value, str) and value for value in (event_id, camera, label)):
            raise ValueError("'after' needs id, camera and label strings")
        zones = [
            zone
            for key in ("current_zones", "entered_zones")
            for zone in (after.get(key) or [])
            if isinstance(zone, str)
        ]
        scores = [after.get(key) for key in ("top_score", "score")]
        top_score = next(
            (float(s) for s in scores if isinstance(s, int | float) and not isinstance(s, bool)), 0.0
        )
        # A better snapshot shows as a new snapshot frame time: `after.snapshot.frame_time` since
        # Frigate 0.14, `after.snapshot_time` before.
        snapshot = after.get("snapshot")
        marker = snapshot.get("frame_time") if isinstance(snapshot, dict) else after.get("snapshot_time")
        frame_time = marker if isinstance(marker, int | float) and not isinstance(marker, bool) else None
        if frame_time is None and isinstance(after.get("frame_time"), int | float):
            frame_time = after["frame_time"]
        kind = document.get("type")
        return str(kind), cls(
            event_id,  # type: ignore[arg-type]
            camera,  # type: ignore[arg-type]
            label,  # type: ignore[arg-type]
            frozenset(zones),
            bool(after.get("has_snapshot")),
            top_score,
            marker,
            frame_time,
        )


def frame_time(value: float | None) -> datetime | None:
    """Frigate's frame time (Unix seconds) as a UTC datetime; None when absent or unusable."""
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def sub_label_for(event: Mapping[str, Any]) -> tuple[str, float | None] | None:
    """The sub label a plate event gives its Frigate event: the watch-list label of a watched plate,
    else the best plate in capitals; with the reading's score. None when no plate was read."""
    results = event.get("results") or []
    best = max(results, key=lambda result: result.get("score") or 0, default=None)
    if best is None or not best.get("plate"):
        return None
    score = best.get("score")
    score = float(score) if isinstance(score, int | float) and 0 < score <= 1 else None
    for match in event.get("watched") or []:
        if isinstance(match, dict) and (match.get("label") or match.get("entry")):
            return str(match.get("label") or match.get("entry"))[:SUB_LABEL_MAX_CHARS], score
    return str(best["plate"]).upper()[:SUB_LABEL_MAX_CHARS], score


class FrigateClient:
    """Frigate's HTTP API, the two calls the bridge makes (urllib3, with timeouts, no retries)."""

    def __init__(self, settings: FrigateConfig) -> None:
        import urllib3

        self.settings = settings
        self._http = urllib3.PoolManager(
            num_pools=1, maxsize=1, timeout=urllib3.Timeout(settings.timeout), retries=False
        )

    def _url(self, event_id: str, leaf: str) -> str:
        # The id comes off the wire: quoted, so it cannot walk to another path of the API.
        return f"{self.settings.url}/api/events/{quote(event_id, safe='')}/{leaf}"

    def snapshot(self, event_id: str) -> bytes:
        """The event's snapshot as JPEG; ValueError saying why not."""
        settings = self.settings
        query: dict[str, int] = {
            "bbox": 0,
            "timestamp": 0,
            "crop": int(settings.crop),
            "quality": settings.quality,
        }
        if settings.height:
            query["height"] = settings.height
        response = self._request("GET", self._url(event_id, f"snapshot.jpg?{urlencode(query)}"))
        if not response.data.startswith(b"\xff\xd8"):
            raise ValueError("Frigate's snapshot is not a JPEG")
        return response.data

    def set_sub_label(self, event_id: str, sub_label: str, score: float | None) -> None:
        body: dict[str, Any] = {"subLabel": sub_label}
        if score is not None:
            body["subLabelScore"] = round(score, 3)
        self._request("POST", self._url(event_id, "sub_label"), body=json.dumps(body).encode())

    def _request(self, method: str, url: str, body: bytes | None = None) -> urllib3.BaseHTTPResponse:
        import urllib3

        headers = {"Content-Type": "application/json"} if body is not None else None
        try:
            response = self._http.request(method, url, body=body, headers=headers)
        except urllib3.exceptions.HTTPError as exc:
            raise ValueError(
                f"Frigate at {shown_url(self.settings.url)} cannot be reached ({type(exc).__name__})"
            ) from None
        if response.status >= 300:
            detail = response.data[:200].decode("utf-8", "replace")
            raise ValueError(f"Frigate answered {response.status} ({detail})")
        return response

    def close(self) -> None:
        self._http.clear()


class FrigateExtension(Extension):
    """Follows `{topic_prefix}/events`; fetches snapshots and writes sub labels on a thread of its own."""

    name = "frigate"
    config_key = "frigate"
    config_model = FrigateConfig

    def __init__(self, context: ExtensionContext) -> None:
        super().__init__(context)
        self.settings = context.config.frigate
        self._tracked: OrderedDict[str, _Tracked] = OrderedDict()
        self._lock = threading.Lock()
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue(self.settings.queue_size)
        self._thread: threading.Thread | None = None
        self._client: FrigateClient | None = None

    @classmethod
    def enabled(cls, config: BridgeConfig) -> bool:
        return config.frigate.enabled

    @classmethod
    def check_config(cls, config: BridgeConfig) -> None:
        settings: FrigateConfig = config.frigate
        if not settings.enabled:
            return
        camera = settings.cameras[0] if settings.cameras else "camera"
        topic = settings.topic.format(camera=camera, label=settings.labels[0])
        if not any(route.topic_filter.match(topic) is not None for route in config.routes):
            raise ValueError(
                f"frigate.topic: no route takes {topic!r}; add a route such as "
                f"{{topic: {settings.topic.format(camera='+', label='+')!r}}}"
            )

    def subscriptions(self) -> Sequence[tuple[str, int]]:
        return [(f"{self.settings.topic_prefix}/events", 0)]

    def start(self) -> None:
        self._client = FrigateClient(self.settings)
        self._thread = threading.Thread(target=self._work, name="frigate", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            try:
                self._jobs.put(None, timeout=self.settings.timeout)
            except queue.Full:
                log.warning("frigate: the HTTP queue did not drain before shutdown")
            self._thread.join(self.settings.timeout + 1)
        if self._client is not None:
            self._client.close()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:
                log.exception("frigate: a job failed")

    def _enqueue(self, job: Callable[[], None], what: str) -> bool:
        """Queue `job` for the HTTP thread; False (and logged) when the queue is full and it is dropped."""
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            log.warning("frigate: %d calls already waiting; dropping %s", self.settings.queue_size, what)
            return False
        return True

    def wanted(self, obj: FrigateObject) -> bool:
        settings = self.settings
        return (
            obj.label in settings.labels
            and (not settings.cameras or obj.camera in settings.cameras)
            and (not settings.zones or not obj.zones.isdisjoint(settings.zones))
            and obj.top_score >= settings.min_score
            and obj.has_snapshot
        )

    def reads_of(self, event_id: str) -> int | None:
        """How many snapshot reads of a Frigate event are counted (under way or done); None if untracked."""
        with self._lock:
            tracked = self._tracked.get(event_id)
            return None if tracked is None else tracked.reads

    def on_message(self, inbound: InboundMessage) -> None:
        try:
            kind, obj = FrigateObject.parse(inbound.payload)
        except ValueError as exc:
            log.warning("frigate: ignoring a message on %s: %s", inbound.topic, exc)
            return
        if not self.wanted(obj):
            return
        with self._lock:
            tracked = self._tracked.get(obj.event_id)
            if tracked is None:
                tracked = self._tracked[obj.event_id] = _Tracked()
                if len(self._tracked) > self.settings.tracked_events:
                    self._tracked.popitem(last=False)
            else:
                self._tracked.move_to_end(obj.event_id)
            if tracked.reads >= self.settings.max_reads_per_event:
                return
            # Read the first snapshot; after that only a better one (Frigate found a higher-scoring
            # frame: a new snapshot with a higher top score).
            if tracked.reads and (obj.top_score <= tracked.top_score or obj.snapshot == tracked.snapshot):
                return
            # Counted now, so the updates Frigate sends while the fetch runs do not fetch again.
            before = tracked.top_score, tracked.snapshot
            tracked.reads += 1
            tracked.top_score, tracked.snapshot = obj.top_score, obj.snapshot
        log.debug("frigate: reading %s event %s (%s, read %d)", obj.label, obj.event_id, kind, tracked.reads)
        if not self._enqueue(lambda: self._read(obj, tracked), f"the snapshot of event {obj.event_id}"):
            with self._lock:
                # Never fetched: not counted against the event, so its next update may try again.
                tracked.reads -= 1
                tracked.top_score, tracked.snapshot = before

    def _read(self, obj: FrigateObject, tracked: _Tracked) -> None:
        assert self._client is not None and self.context.submit is not None
        try:
            image = self._client.snapshot(obj.event_id)
        except ValueError as exc:
            log.warning("frigate: no snapshot of event %s: %s", obj.event_id, exc)
            with self._lock:
                tracked.reads -= 1  # not read: the next update may try again
                tracked.snapshot = None
            return
        # The JPEG as it came, its camera and time beside it: as base64 in a JSON envelope it would be a
        # third larger against max_payload_bytes and cost an encode and a decode.
        taken_at = frame_time(obj.frame_time)
        topic = self.settings.topic.format(camera=obj.camera, label=obj.label)
        origin = Origin(ORIGIN, {"event_id": obj.event_id, "camera": obj.camera, "label": obj.label})
        if not self.context.submit(topic, image, origin=origin, camera_id=obj.camera, taken_at=taken_at):
            log.warning(
                "frigate: no route takes %s; the snapshot of event %s is not read", topic, obj.event_id
            )

    def on_event(self, published: PublishedEvent) -> None:
        origin = published.msg.origin
        if (
            not self.settings.sub_label
            or published.kind != "plate"
            or origin is None
            or origin.name != ORIGIN
        ):
            return
        frigate = origin.details
        chosen = sub_label_for(published.event)
        if chosen is None:
            return
        event_id = frigate["event_id"]
        with self._lock:
            tracked = self._tracked.get(event_id)
            if tracked is not None:
                if tracked.sub_label == chosen[0]:
                    return
                tracked.sub_label = chosen[0]
        self._enqueue(lambda: self._write_sub_label(event_id, *chosen), f"the sub label of event {event_id}")

    def _write_sub_label(self, event_id: str, sub_label: str, score: float | None) -> None:
        assert self._client is not None
        try:
            self._client.set_sub_label(event_id, sub_label, score)
        except ValueError as exc:
            log.warning("frigate: cannot set the sub label of event %s: %s", event_id, exc)
            return
        log.info("frigate: event %s sub label set to %s", event_id, sub_label)
