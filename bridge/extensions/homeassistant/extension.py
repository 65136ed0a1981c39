"""Home Assistant discovery as an extension: announce, keep the per-camera state, clear it, count."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bridge.extensions.base import Extension, ExtensionContext, PublishedEvent
from bridge.extensions.homeassistant.config import HomeAssistantConfig
from bridge.extensions.homeassistant.entities import Entities, Topics
from bridge.extensions.homeassistant.state import camera_state, cleared_state, plate_events

if TYPE_CHECKING:
    from bridge.config import BridgeConfig
    from bridge.core.messages import Message
    from bridge.mqtt import InboundMessage

log = logging.getLogger(__name__)

CONFIGURED = "config"
AUTO = "auto"
RECORD_WAIT = 3.0  # seconds to wait for the previous run's retained record before writing ours
FORGET_DELAY = 5.0  # seconds between removing a camera's entities and deleting its retained state


def configured_cameras(config: BridgeConfig) -> list[str]:
    """Cameras known before any frame: `homeassistant.cameras` and routes with a literal camera_id."""
    cameras = list(config.homeassistant.cameras)
    cameras += [route.camera_id for route in config.routes if route.camera_id]
    return list(dict.fromkeys(cameras))


def _usage_document(body: Mapping[str, Any], source: str) -> dict[str, Any] | None:
    """Calls used and left from `/v1/statistics/`, the SDK's `/info/` or an SDK answer's `usage`."""
    usage = body.get("usage")
    if not isinstance(usage, Mapping) or not isinstance(usage.get("calls"), int):
        return None
    total = body.get("total_calls", usage.get("max_calls"))
    total = total if isinstance(total, int) and total > 0 else None
    return {
        "calls": usage["calls"],
        "total": total,
        "left": max(0, total - usage["calls"]) if total is not None else None,
        "resets_on": usage.get("resets_on"),
        "source": source,
    }


class HomeAssistantExtension(Extension):
    """MQTT discovery for Home Assistant, Zigbee2MQTT-style: a device for the bridge and one per camera.

    Known cameras are announced on every connection and whenever Home Assistant says `online`; a camera
    first seen on the wire is announced only while `auto_add` allows it, up to `max_cameras`. What was
    announced is kept retained on `{base_topic}/bridge/ha_cameras`, so a camera gone from the
    configuration loses its entities at the next start. Each camera's state is a retained flat document
    (`{base_topic}/<camera>/state`), cleared `autoclear` seconds after its last plate.
    """

    name = "homeassistant"
    config_key = "homeassistant"
    config_model = HomeAssistantConfig

    def __init__(self, context: ExtensionContext) -> None:
        super().__init__(context)
        config = context.config
        self.settings = config.homeassistant
        self.topics = Topics(
            base=config.mqtt.base_topic, prefix=self.settings.discovery_prefix, node=_node(config)
        )
        self.entities = Entities(self.topics, node_id=config.mqtt.client_id, reader=config.reader.kind)
        self.watchlists = list(config.watchlists)
        self._configured = configured_cameras(config)
        self._lock = threading.Lock()
        self._cameras: dict[str, str] = dict.fromkeys(self._configured, CONFIGURED)  # camera -> how known
        self._announced: set[str] = set()
        self._discovery_topics: set[str] = set()  # every discovery config sent by this run
        self._recorded: dict[str, Any] | None = None  # the last record published
        self._record_seen = False  # the retained record of the previous run has been read
        self._record_wait_until = 0.0
        self._cap_logged = False
        self._clear_at: dict[str, float] = {}
        self._forget: dict[str, float] = {}  # removed camera -> when to delete its retained topics
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._last_stats: dict[str, Any] | None = None
        self._usage_at = 0.0
        self._trackers: dict[str, str] = {}  # watched plate -> the name its device_tracker was announced with
        self._answers_at = 0.0
        reader = context.reader
        self._usage_kind = _usage_kind(config, reader)

    @classmethod
    def enabled(cls, config: BridgeConfig) -> bool:
        return config.homeassistant.enabled

    @classmethod
    def published_subtrees(cls, config: BridgeConfig) -> Sequence[str]:
        return [config.homeassistant.discovery_prefix] if config.homeassistant.enabled else []

    def subscriptions(self) -> Sequence[tuple[str, int]]:
        topics = [(self.topics.ha_status, 1), (self.topics.record, 1)]
        if self.context.config.history.enabled:
            # Watched plates' presence (retained, by the history extension): one device_tracker each.
            # First, so that its retained documents arrive before the record, whose reconciling would
            # otherwise remove the trackers of the previous run and see them come back.
            topics.insert(0, (self.topics.presence("+"), 1))
        return topics

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="homeassistant", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(5)

    def on_connected(self) -> None:
        with self._lock:
            cameras = list(self._cameras)
            self._last_stats = None
        self._announce_bridge()
        for camera in cameras:
            self._announce_camera(camera, fresh=camera not in self._announced)
        with self._lock:
            trackers = dict(self._trackers)
        for plate, name in trackers.items():
            self._send(*self.entities.tracker(plate, name))
        with self._wake:
            if not self._record_seen:
                # No retained record arrives when there is none (a first run): publish after a while.
                self._record_wait_until = time.monotonic() + RECORD_WAIT
            self._wake.notify_all()  # counters and usage go out now, not at the next tick

    def on_message(self, inbound: InboundMessage) -> None:
        if inbound.topic == self.topics.ha_status:
            if inbound.payload.strip().lower() == b"online":
                log.info("Home Assistant is online: announcing again")
                self.on_connected()
        elif inbound.topic == self.topics.record:
            self._reconcile(inbound.payload)
        elif inbound.topic.startswith(self.topics.presence("")):
            self._track(inbound.topic.removeprefix(self.topics.presence("")), inbound.payload)

    def _track(self, plate: str, payload: bytes) -> None:
        """Announce a watched plate's device_tracker on its first presence document; remove it when
        its presence topic is emptied (the plate left every watch list)."""
        if not plate or "/" in plate:
            return
        try:
            document = json.loads(payload) if payload else None
        except ValueError:
            document = None
        topic, config = self.entities.tracker(
            plate, document.get("label") if isinstance(document, dict) else None
        )
        if document is None:
            with self._lock:
                known = topic in self._discovery_topics
                self._discovery_topics.discard(topic)
                self._trackers.pop(plate, None)
            if known:
                self.context.publisher.publish(topic, b"", qos=1, retain=True)
                self._publish_record()
            return
        with self._lock:
            if self._trackers.get(plate) == config["name"]:
                return
            self._trackers[plate] = config["name"]
            self._discovery_topics.add(topic)
        self._send(topic, config)
        self._publish_record()

    # -- cameras -------------------------------------------------------------------------------

    def on_frame(self, msg: Message) -> None:
        camera = msg.camera_id or "unknown"
        if camera in self._cameras:  # the common case, lock-free
            return
        with self._lock:
            if camera in self._cameras:
                return
            if not self.settings.auto_add:
                return
            if len(self._cameras) >= self.settings.max_cameras:
                if not self._cap_logged:
                    log.warning(
                        "not announcing camera %r to Home Assistant: homeassistant.max_cameras (%d) "
                        "reached; list the cameras you want in homeassistant.cameras",
                        camera,
                        self.settings.max_cameras,
                    )
                    self._cap_logged = True
                return
            self._cameras[camera] = AUTO
            self._forget.pop(camera, None)  # back before its old retained state was deleted
        log.info("announcing camera %r to Home Assistant", camera)
        self._announce_camera(camera, fresh=True)
        self._publish_record()

    def _announce_camera(self, camera: str, *, fresh: bool) -> None:
        documents = self.entities.camera(camera, watchlists=self.watchlists, snapshot=self.settings.snapshot)
        for topic, document in documents:
            self._send(topic, document)
        with self._lock:
            self._discovery_topics.update(topic for topic, _ in documents)
        if fresh:
            # A retained state from before this run has no autoclear timer any more: start clean.
            self._publish_json(self.topics.camera(camera, "state"), cleared_state(camera))
            self._announced.add(camera)

    def _forget_camera(self, camera: str) -> None:
        """Delete a removed camera's retained state and images. Not at once: entities that Home
        Assistant has not yet removed would read the empty state and log template errors (seen on HA
        2024.3); until then the record keeps the camera under `forget`, so a stop in between loses
        nothing."""
        for leaf in ("state", "snapshot", "plate_crop"):
            self.context.publisher.publish(self.topics.camera(camera, leaf), b"", qos=1, retain=True)
        with self._lock:
            self._forget.pop(camera, None)
        self._publish_record()

    def _reconcile(self, payload: bytes) -> None:
        """The retained record of what was announced (by a previous run, or just now by this one).

        Auto-added cameras in it come back while `auto_add` allows; every discovery topic in it that
        this run does not announce (a camera gone from the configuration, a watch list removed, the
        snapshot turned off) gets an empty retained config, which removes the entity in Home Assistant.
        """
        try:
            recorded = json.loads(payload) if payload else {}
        except ValueError:
            recorded = None
        if not isinstance(recorded, dict):
            log.warning("ignoring an unreadable %s", self.topics.record)
            recorded = {}
        cameras = recorded.get("cameras") if isinstance(recorded.get("cameras"), dict) else {}
        discovery = recorded.get("discovery") if isinstance(recorded.get("discovery"), list) else []
        pending = recorded.get("forget") if isinstance(recorded.get("forget"), list) else []
        gone, restored = [], []
        with self._lock:
            self._record_seen = True
            for camera in pending:  # removed by an earlier run, which stopped before forgetting them
                if isinstance(camera, str) and camera not in self._cameras:
                    self._forget.setdefault(camera, 0.0)
            for camera, how in cameras.items():
                if not isinstance(camera, str) or camera in self._cameras:
                    continue
                if how == AUTO and self.settings.auto_add and len(self._cameras) < self.settings.max_cameras:
                    self._cameras[camera] = AUTO
                    restored.append(camera)
                else:
                    gone.append(camera)
        for camera in restored:
            self._announce_camera(camera, fresh=True)
        with self._lock:
            stale = {topic for topic in discovery if isinstance(topic, str)} - self._discovery_topics
        for topic in sorted(stale):
            if topic.startswith(f"{self.topics.prefix}/") and topic.endswith("/config"):
                self.context.publisher.publish(topic, b"", qos=1, retain=True)
        if gone:
            log.info("removing camera(s) %s from Home Assistant (no longer configured)", ", ".join(gone))
        with self._wake:
            for camera in gone:
                self._forget[camera] = time.monotonic() + FORGET_DELAY
            self._wake.notify_all()
        self._publish_record()

    def _publish_record(self) -> None:
        """Publish what this run announced, once the previous run's record has been read (or there was
        none): overwriting it first would lose what must be removed."""
        with self._lock:
            if not self._record_seen:
                return
            record = {
                "cameras": dict(self._cameras),
                "discovery": sorted(self._discovery_topics),
                "forget": sorted(self._forget),
            }
            if record == self._recorded:
                return
            self._recorded = record
        self._publish_json(self.topics.record, record)

    # -- the bridge ----------------------------------------------------------------------------

    def _announce_bridge(self) -> None:
        config = self.context.config
        local_first = not config.reader.is_local and (
            config.reader.local_first.enabled or any(route.local_first.enabled for route in config.routes)
        )
        documents = self.entities.bridge(usage=self._usage_kind is not None, local_first=local_first)
        for topic, document in documents:
            self._send(topic, document)
        with self._lock:
            self._discovery_topics.update(topic for topic, _ in documents)

    # -- events --------------------------------------------------------------------------------

    def on_event(self, published: PublishedEvent) -> None:
        """A vehicle is one plate_detected: on a route with a consensus node the state, events and
        snapshot follow its vehicle events (when the vehicle has left, with the voted plate), not the
        plate events of its frames; those still carry the SDK's usage."""
        if published.kind not in ("plate", "vehicle"):
            return
        camera = published.msg.camera_id or "unknown"
        if camera not in self._cameras:
            return  # not announced (auto_add off, or past max_cameras)
        event = published.event
        if self._usage_kind == "answers" and published.kind == "plate":
            self._publish_usage(_usage_document(event, "sdk"))
        if not published.per_vehicle:
            return
        state = camera_state(camera, event)
        if state is None:
            return  # no plate: the last plate stays until autoclear
        self._publish_json(self.topics.camera(camera, "state"), state)
        for document in plate_events(state, event):
            self._publish_json(self.topics.camera(camera, "event"), document, retain=False)
        if self.settings.autoclear > 0:
            with self._wake:
                self._clear_at[camera] = time.monotonic() + self.settings.autoclear
                self._wake.notify_all()
        if self.settings.snapshot and published.msg.image:
            self._publish_images(camera, published.msg.image, event)

    def _publish_images(self, camera: str, image: bytes, event: Mapping[str, Any]) -> None:
        from bridge.imaging.annotate import annotate, crop_best_plate

        results = list(event.get("results") or [])
        try:
            snapshot = annotate(image, results, watched=event.get("watched") or [])
            crop = crop_best_plate(image, results)
        except Exception:
            log.exception("could not draw the plates of camera %r; publishing the frame", camera)
            snapshot, crop = image, None
        self.context.publisher.publish(self.topics.camera(camera, "snapshot"), snapshot, qos=0, retain=True)
        if crop:
            self.context.publisher.publish(self.topics.camera(camera, "plate_crop"), crop, qos=0, retain=True)

    # -- the timer thread: autoclear, counters, usage ---------------------------------------------

    def _run(self) -> None:
        next_stats = 0.0
        while True:
            with self._wake:
                if self._stopping:
                    return
                now = time.monotonic()
                due = [camera for camera, at in self._clear_at.items() if at <= now]
                for camera in due:
                    del self._clear_at[camera]
                forget = [camera for camera, at in self._forget.items() if at <= now]
                deadlines = [next_stats, *self._clear_at.values(), *self._forget.values()]
                if self._usage_kind in ("statistics", "info"):
                    deadlines.append(self._usage_at)
                record_due = not self._record_seen and self._record_wait_until > 0
                if record_due:
                    deadlines.append(self._record_wait_until)
                    if now >= self._record_wait_until:
                        self._record_seen = True
                        due.append("")
                if not due and not forget and now < min(deadlines):
                    self._wake.wait(min(deadlines) - now)
                    continue
            for camera in forget:
                self._forget_camera(camera)
            for camera in due:
                if camera:
                    self._publish_json(self.topics.camera(camera, "state"), cleared_state(camera))
                else:
                    self._publish_record()
            if now >= next_stats:
                self._publish_stats()
                next_stats = now + self.settings.stats_interval
            if self._usage_kind in ("statistics", "info") and now >= self._usage_at:
                self._usage_at = now + self.settings.usage_interval
                self._fetch_usage()

    def _publish_stats(self) -> None:
        health = self.context.health()
        stats = {key: health.get(key, 0) for key in ("received", "processed", "dropped", "unrouted")}
        # Calls saved: by reuse (the repeat cache) and by local first (the offline reader trusted).
        credits = health.get("credits") or {}
        stats["calls_saved_local"] = credits.get("saved_local", 0)
        stats["calls_saved_reuse"] = credits.get("calls_saved", 0) - stats["calls_saved_local"]
        with self._lock:
            if stats == self._last_stats:
                return
            self._last_stats = stats
        self._publish_json(self.topics.stats, stats)

    def _fetch_usage(self) -> None:
        reader = self.context.reader
        try:
            ask = reader.statistics if self._usage_kind == "statistics" else reader.info  # type: ignore[union-attr]
            body = ask()
        except Exception as exc:  # a failed look-up costs nothing: try again next interval
            log.warning("could not read the reader's usage: %s", exc)
            return
        self._publish_usage(_usage_document(body, self._usage_kind or ""))

    def _publish_usage(self, document: dict[str, Any] | None) -> None:
        if document is None:
            return
        if self._usage_kind == "answers":
            now = time.monotonic()
            with self._lock:
                if now < self._answers_at:
                    return  # from answers: at most one update a minute
                self._answers_at = now + 60.0
        self._publish_json(self.topics.usage, document)

    # -- publishing ----------------------------------------------------------------------------

    def _send(self, topic: str, document: dict[str, Any]) -> None:
        # Retained, so Home Assistant finds the entities after its own restart too.
        self._publish_json(topic, document)

    def _publish_json(self, topic: str, document: Mapping[str, Any], *, retain: bool = True) -> None:
        self.context.publisher.publish(topic, json.dumps(document).encode(), qos=1, retain=retain)


def _node(config: BridgeConfig) -> str:
    # The node level of discovery topics (and part of unique ids): as earlier versions wrote it, so
    # an upgrade keeps the bridge's entities.
    return re.sub(r"[^a-zA-Z0-9_-]", "_", config.mqtt.client_id).strip("_").lower() or "plate-bridge"


def _usage_kind(config: BridgeConfig, reader: object) -> str | None:
    """Where usage comes from: the cloud's /v1/statistics/, an SDK's /info/, or nowhere (offline)."""
    if config.reader.is_local:
        return None
    if config.reader.is_cloud:
        return "statistics" if hasattr(reader, "statistics") else None
    return "info" if hasattr(reader, "info") else "answers"
