"""The history extension: every vehicle into the store, off the frame path, and the store's watch
lists back into every route.

On the frame path `on_event` only puts the event (a reference, nothing copied) on a bounded queue;
a full queue drops the vehicle, counts it (`stats()["dropped"]`) and logs, and never blocks. One
writer thread makes the pictures, writes in batches, places each vehicle in its visit, tells the
listeners (the web page's live feed), and between batches closes overdue visits, applies retention,
and picks up watch-list edits made by other replicas. Watch-list requests over MQTT run on a thread
of their own, so a slow database never holds up the MQTT thread.

A store that cannot be opened when the bridge starts (a PostgreSQL server still booting, a network
share not mounted yet) does not stop the bridge: plate events go on, vehicles wait on the same
bounded queue, and the writer tries the store again (5 s, then up to every minute) until it opens.
Only a store of a newer release stops the start: that needs the user, not time.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from bridge.core.redact import redacted
from bridge.extensions.base import Extension, ExtensionContext, PublishedEvent
from bridge.extensions.history.config import HistoryConfig
from bridge.extensions.history.models import HistoryError, Sighting, StoreTooNew, VisitRules
from bridge.extensions.history.presence import presence_documents, presence_topic, watched_plates
from bridge.extensions.history.records import Pending, records_of
from bridge.extensions.history.watchapi import handle

if TYPE_CHECKING:
    from bridge.config import BridgeConfig
    from bridge.extensions.history.store import HistoryStore
    from bridge.mqtt import InboundMessage

log = logging.getLogger(__name__)

BATCH = 50
VISIT_SWEEP = 10.0  # seconds between closing overdue visits
RETENTION_EVERY = 60.0  # seconds between retention passes
WATCH_POLL = 5.0  # seconds between looks for another replica's watch-list edits
REQUEST_QUEUE = 64
DROP_LOG_EVERY = 60.0
STORE_RETRY_FIRST = 5.0  # seconds before trying an unreachable store again, doubling ...
STORE_RETRY_MAX = 60.0  # ... up to this

T = TypeVar("T")


def _said(exc: Exception) -> str:
    """An exception as it may be logged: a driver's message with any URL cut short, and no SQL."""
    text = str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else type(exc).__name__
    return redacted(text)[:300]


def keep_trying(attempt: Callable[[], T], stopping: threading.Event, who: str) -> T | None:
    """`attempt()` after `STORE_RETRY_FIRST` seconds, then less and less often (up to
    `STORE_RETRY_MAX`), for as long as it raises HistoryError (the store cannot be opened yet): its
    result, or None once `stopping` is set. The history writer and the web page both wait this way."""
    delay = STORE_RETRY_FIRST
    while not stopping.wait(delay):
        try:
            return attempt()
        except HistoryError as exc:
            delay = min(STORE_RETRY_MAX, 2 * delay)
            log.warning(
                "%s: the history store is still not open: %s (next try in %g s)", who, _said(exc), delay
            )
    return None


def visit_rules(settings: HistoryConfig) -> VisitRules:
    """The store's visit rules from `history:` (for the extension and `plate-bridge web`)."""
    roles = {
        camera: frozenset({"entry", "exit"}) if role == "both" else frozenset({role})
        for camera, role in settings.cameras.items()
    }
    return VisitRules(
        gap=timedelta(seconds=settings.visit_gap), max_stay=timedelta(seconds=settings.max_stay), roles=roles
    )


def open_store(config: BridgeConfig) -> HistoryStore:
    """The store `history:` names, with the configuration's watch lists and visit rules."""
    from bridge.extensions.history.store import HistoryStore  # SQLAlchemy: only when history is on

    settings = config.history
    store = HistoryStore.open(settings.url, settings.data_dir, yaml_lists=config.watchlists)
    store.rules = visit_rules(settings)
    return store


class HistoryExtension(Extension):
    """Keeps every vehicle; see the module's docstring. `store` is open between start() and stop()."""

    name = "history"
    config_key = "history"
    config_model = HistoryConfig
    edits_watchlists = True

    def __init__(self, context: ExtensionContext) -> None:
        super().__init__(context)
        self.settings = context.config.history
        self.store: HistoryStore | None = None
        self._queue: queue.Queue[Pending | None] = queue.Queue(self.settings.queue_size)
        self._requests: queue.Queue[tuple[str, bytes] | None] = queue.Queue(REQUEST_QUEUE)
        self._listeners: list[Callable[[Sighting], None]] = []
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._usage: Counter[tuple[str, str]] = Counter()  # (month, kind) -> count, not yet written
        self._dropped_logged_at = 0.0
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._reader = context.config.reader.kind
        self._watch_version = -1
        self._presence: dict[str, bytes] = {}  # plate -> last document published
        self._queued_bytes = 0
        self._presence_lock = threading.Lock()
        # Presence follows the gap closely: a short gap is swept more often (at least every second).
        self._sweep_every = max(1.0, min(VISIT_SWEEP, self.settings.visit_gap / 4))

    @classmethod
    def enabled(cls, config: BridgeConfig) -> bool:
        return config.history.enabled

    @property
    def request_prefix(self) -> str:
        return f"{self.context.base_topic}/bridge/request/watchlist/"

    @property
    def presence_prefix(self) -> str:
        return presence_topic(self.context.base_topic, "")

    def subscriptions(self) -> Sequence[tuple[str, int]]:
        # Presence too: a retained document of a plate taken off its lists while the bridge was
        # stopped is emptied, so its Home Assistant tracker goes.
        return [(f"{self.request_prefix}+", 1), (f"{self.presence_prefix}+", 1)]

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        try:
            self.store = open_store(self.context.config)
        except StoreTooNew:
            raise
        except HistoryError as exc:
            log.error(
                "history: %s: plate events go on; vehicles wait in memory (history.queue_size, "
                "queue_bytes) while the store is tried again every %g-%g s",
                _said(exc),
                STORE_RETRY_FIRST,
                STORE_RETRY_MAX,
            )
        else:
            self._reload_watchlists()
        for target, name in (
            (self._write_until_stopped, "history-writer"),
            (self._answer, "history-requests"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopping.set()
        for q in (self._queue, self._requests):
            with contextlib.suppress(queue.Full):
                q.put(None, timeout=5)
        for thread in self._threads:
            thread.join(30)
        if self.store is not None:
            self._flush_usage()
            self.store.close()

    def add_listener(self, callback: Callable[[Sighting], None]) -> Callable[[], None]:
        """Call `callback` with each stored vehicle (on the writer thread: return quickly); the
        function returned unsubscribes."""
        with self._lock:
            self._listeners.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return unsubscribe

    def stats(self) -> dict[str, int]:
        with self._lock:
            counts = dict(self._counts)
        counts["queued"] = self._queue.qsize()
        counts["store_open"] = int(self.store is not None)
        return counts

    # -- the frame path ------------------------------------------------------------------------

    def on_event(self, published: PublishedEvent) -> None:
        if published.kind == "error":
            return
        event = published.event
        msg = published.msg
        # Every frame's plate event counts for usage, whether or not it stands for a vehicle.
        # A frame the offline reader read is neither a call nor a reuse (its events say `reader: local`).
        kind = ""
        if published.kind == "plate" and event.get("cached"):
            kind = "saved_by_reuse"
        elif published.kind == "plate":
            kind = "read_offline" if event.get("reader") == "local" else "calls"
        month = (msg.timestamp or msg.received_at).astimezone(UTC).strftime("%Y-%m")
        with self._lock:
            if kind:
                self._usage[(month, kind)] += 1
            if published.kind == "vehicle":
                self._usage[(month, "saved_by_consensus")] += max(0, int(event.get("frames") or 1) - 1)
        if not published.per_vehicle or not event.get("results"):
            return
        pending = Pending(
            kind=published.kind,
            event=event,
            image=msg.image,
            scale=msg.scale,
            camera=msg.camera_id or "unknown",
            seen_at=msg.timestamp or msg.received_at,
        )
        size = len(msg.image or b"")
        with self._lock:
            fits = self._queued_bytes + size <= self.settings.queue_bytes
            if fits:
                self._queued_bytes += size
        try:
            if not fits:
                raise queue.Full
            self._queue.put_nowait(pending)
        except queue.Full:
            if fits:
                with self._lock:
                    self._queued_bytes -= size
            now = time.monotonic()
            with self._lock:
                self._counts["dropped"] += 1
                dropped = self._counts["dropped"]
                due = now - self._dropped_logged_at >= DROP_LOG_EVERY
                if due:
                    self._dropped_logged_at = now
            if due:
                log.warning(
                    "history: the writer is behind (history.queue_size %d or queue_bytes %d reached): "
                    "vehicles are not being stored (%d dropped so far)",
                    self.settings.queue_size,
                    self.settings.queue_bytes,
                    dropped,
                )

    # -- the writer ----------------------------------------------------------------------------

    def _wait_for_store(self) -> bool:
        """Try the store again, less and less often, until it opens (True) or the bridge stops."""
        store = keep_trying(lambda: open_store(self.context.config), self._stopping, "history")
        if store is None:
            return False
        self.store = store
        log.info("history: the store is open; %d vehicle(s) waited for it", self._queue.qsize())
        self._reload_watchlists()
        return True

    def _discard_waiting(self) -> None:
        """The bridge stops before the store ever opened: say what was not stored, rather than lose it
        silently."""
        lost = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            lost += item is not None
        with self._lock:
            self._counts["not_stored"] += lost
            self._queued_bytes = 0
            usage = sum(self._usage.values())
        if lost or usage:
            log.error(
                "history: the store never opened: %d vehicle(s) and %d usage count(s) of this run were not "
                "stored",
                lost,
                usage,
            )

    def _write_until_stopped(self) -> None:
        if self.store is None and not self._wait_for_store():
            self._discard_waiting()
            return
        due = {"visits": time.monotonic() + self._sweep_every, "retention": time.monotonic(), "watch": 0.0}
        while True:
            try:
                first = self._queue.get(timeout=1.0)
            except queue.Empty:
                first = ...
            if first is None:
                self._drain()
                return
            batch = [] if first is ... else [first]
            while len(batch) < BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._write(batch)
                    self._drain()
                    return
                batch.append(item)
            if batch:
                self._write(batch)
            self._housekeeping(due)

    def _drain(self) -> None:
        rest = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                rest.append(item)
        self._write(rest)

    def _write(self, batch: list[Pending]) -> None:
        with self._lock:
            self._queued_bytes -= sum(len(pending.image or b"") for pending in batch)
        if not batch or self.store is None:
            return
        started = time.thread_time()
        records = []
        for pending in batch:
            try:
                records += records_of(pending, reader=self._reader, images=self.settings.images)
            except Exception:
                log.exception("history: cannot make the record of an event of %s", pending.camera)
        try:
            stored = self.store.record(records) if records else []
        except Exception as exc:
            with self._lock:
                self._counts["write_errors"] += 1
            log.error("history: cannot store %d vehicle(s): %s", len(records), _said(exc))
            return
        with self._lock:
            self._counts["stored"] += len(stored)
            self._counts["writer_cpu_us"] += int((time.thread_time() - started) * 1e6)
            listeners = list(self._listeners)
        for sighting in stored:
            for listener in listeners:
                try:
                    listener(sighting)
                except Exception:
                    log.exception("history: a listener failed")
        if any(sighting.watchlists for sighting in stored) or self._presence:
            self._publish_presence()

    def _housekeeping(self, due: dict[str, float]) -> None:
        now = time.monotonic()
        store = self.store
        if store is None:
            return
        try:
            self._flush_usage()
            if now >= due["watch"]:
                due["watch"] = now + WATCH_POLL
                if store.watch_version() != self._watch_version:
                    self._reload_watchlists()
            if now >= due["visits"]:
                due["visits"] = now + self._sweep_every
                if store.close_overdue_visits():
                    self._publish_presence()
            if now >= due["retention"]:
                due["retention"] = now + RETENTION_EVERY
                settings = self.settings
                max_age = timedelta(days=settings.max_age_days) if settings.max_age_days else None
                deleted = store.apply_retention(max_age=max_age, max_bytes=settings.max_bytes)
                if deleted:
                    with self._lock:
                        self._counts["expired"] += deleted
        except Exception as exc:
            log.error("history: housekeeping failed: %s", _said(exc))

    def _flush_usage(self) -> None:
        with self._lock:
            usage, self._usage = self._usage, Counter()
        if usage and self.store is not None:
            months: dict[str, dict[str, int]] = {}
            for (month, kind), count in usage.items():
                months.setdefault(month, {})[kind] = count
            for month, counts in months.items():
                self.store.add_usage(month, **counts)

    # -- watch lists ---------------------------------------------------------------------------

    def _reload_watchlists(self) -> None:
        """The store's lists into every route's watchlist node, and presence for their plates."""
        store = self.store
        if store is None:
            return
        version = store.watch_version()
        live = self.context.watchlists
        if live is not None:
            live.replace(store.store_lists())
        self._watch_version = version
        self._publish_presence()

    def on_connected(self) -> None:
        with self._lock:
            self._presence.clear()  # a broker that restarted may have lost them: publish all again
        with contextlib.suppress(queue.Full):
            self._requests.put_nowait(("", b""))  # presence, published from the requests thread

    def on_message(self, inbound: InboundMessage) -> None:
        if inbound.topic.startswith(self.presence_prefix):
            if inbound.retain and inbound.payload:
                with contextlib.suppress(queue.Full):
                    self._requests.put_nowait(("", inbound.topic.removeprefix(self.presence_prefix).encode()))
            return
        action = inbound.topic.removeprefix(self.request_prefix)
        if "/" in action or not action:
            return
        try:
            self._requests.put_nowait((action, inbound.payload))
        except queue.Full:
            response = {"data": {}, "status": "error", "error": "too many watch-list requests at once; retry"}
            self._respond(action, response)

    def _answer(self) -> None:
        while True:
            item = self._requests.get()
            if item is None:
                return
            action, payload = item
            if not action:
                self._publish_presence(stale=payload.decode() if payload else None)
                continue
            if self.store is None:
                error = "the history store is not open yet (it is being tried again); retry later"
                self._respond(action, {"data": {}, "status": "error", "error": error})
                continue
            response = handle(self.store, action, payload, self._reload_watchlists)
            self._respond(action, response)

    def _respond(self, action: str, response: dict[str, Any]) -> None:
        topic = f"{self.context.base_topic}/bridge/response/watchlist/{action[:40]}"
        self.context.publisher.publish(topic, orjson.dumps(response), qos=1, retain=False)

    def _publish_presence(self, stale: str | None = None) -> None:
        """Publish the presence of each watched plate that changed; empty the topics of plates no
        longer on any list (`stale`: one seen retained on the broker, perhaps from an earlier run).
        One thread at a time (the writer and the requests thread both call it): a plate's documents
        go out in the order they were read."""
        with self._presence_lock:
            self._publish_presence_locked(stale)

    def _publish_presence_locked(self, stale: str | None) -> None:
        store = self.store
        if store is None:
            return
        try:
            watched = watched_plates(store.watch_entries())
            documents = presence_documents(watched, store.present(datetime.now(UTC)))
        except Exception as exc:
            log.error("history: cannot read the watched plates' presence: %s", _said(exc))
            return
        base = self.context.base_topic
        with self._lock:
            gone = [plate for plate in self._presence if plate not in documents]
            changed = {}
            for plate, document in documents.items():
                payload = orjson.dumps(document)
                if self._presence.get(plate) != payload:
                    changed[plate] = payload
                    self._presence[plate] = payload
            for plate in gone:
                del self._presence[plate]
            if stale and stale not in documents and stale not in gone:
                gone.append(stale)
        for plate, payload in changed.items():
            self.context.publisher.publish(presence_topic(base, plate), payload, qos=1, retain=True)
        for plate in gone:
            self.context.publisher.publish(presence_topic(base, plate), b"", qos=1, retain=True)
