"""The running bridge: MQTT in → a route's flow on a worker pool → MQTT out."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bridge.config import BridgeConfig, ReaderConfig, RouteConfig
from bridge.errors import ConfigError, FrameDropped, PayloadTooLarge
from bridge.extensions import Extension, ExtensionContext, PublishedEvent, enabled_extensions
from bridge.flows import Flow
from bridge.flows.framequeue import DropCause, FrameQueue
from bridge.messages import Message, OwnTopics, TopicFilter, topic_level, utc_now
from bridge.mqtt import InboundMessage, MqttClient, RetainedFrames
from bridge.mqtt.broker import EmbeddedBroker, pick_port
from bridge.mqtt.client import PUBLISH_OVERHEAD_BYTES
from bridge.nodes import NodeContext, Reader
from bridge.nodes.savings import credit_stats
from bridge.reader.cascade import LocalFirst, UsagePoller, build_local_first
from bridge.reader.ratelimit import CallLimiter
from bridge.reader.resilience import ReaderGuard, ResiliencePolicy
from bridge.redact import shown_url

log = logging.getLogger(__name__)

EMBEDDED_HOST = "127.0.0.1"


def build_reader(settings: ReaderConfig, *, validate: bool = False) -> Reader:
    """The reader a configuration asks for: the offline engine, or the cloud or an SDK over HTTP.

    `validate=False` for the bridge: its flow's validate node checks every response, and checking
    twice would only cost time.
    """
    if settings.is_local:
        from bridge.engines.adapter import LocalReader

        reader = LocalReader()
        try:
            reader.load()
        except ImportError as exc:
            raise ConfigError(f"reader.url 'local': {exc}") from None
        return reader
    from bridge.reader import PlateReader

    try:
        reader = PlateReader(
            settings.url,
            token=settings.token.get_secret_value() if settings.token else None,
            timeout=settings.timeout,
            upload_base64=settings.upload == "base64",
            validate=validate,
            transport=settings.transport,
        )
    except ImportError as exc:
        raise ConfigError(str(exc)) from None
    log.info("reader: %s over %s", shown_url(reader.url), reader.transport)
    return reader


@dataclass(frozen=True, slots=True)
class _Route:
    config: RouteConfig
    topic_filter: TopicFilter
    flow: Flow

    def camera_id(self, topic: str, captured: tuple[str, ...]) -> str:
        """The route's literal camera id, else the level the first wildcard matched, else the last level."""
        if self.config.camera_id:
            return self.config.camera_id
        if captured:
            return topic_level(captured[0].split("/", 1)[0])
        return topic_level(topic.rsplit("/", 1)[-1])


DROP_REASONS: dict[DropCause, str] = {
    "camera_queue": "a newer frame of the same camera arrived first",
    "queue_full": "the queue of frames waiting for the reader is full (max_queued_frames/max_queued_bytes)",
    "shutdown": "the bridge is shutting down",
}


@dataclass
class BridgeStats:
    """The bridge's counters (`bridge/health`, Home Assistant's `bridge/stats`).

    `received` counts frames a route took as frames: not what extensions listen to (Home Assistant's
    `homeassistant/status`, the bridge's own retained records), not the bridge's own topics, not a
    retained frame the broker sends again, not one over the size limit (`too_large`). So it adds up:
    received = processed + dropped + queued, once the frames in progress are done.
    """

    received: int = 0
    unrouted: int = 0
    dropped: int = 0
    processed: int = 0
    too_large: int = 0
    retained_skipped: int = 0
    own_topics_ignored: int = 0
    dropped_by: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))


class Bridge:
    """Owns the broker connection, the flows and the workers; `start()`, then `stop()`."""

    def __init__(self, config: BridgeConfig, *, reader: Reader | None = None) -> None:
        self.config = config
        self.stats = BridgeStats()
        # Workers, paho's thread and stop() all count.
        self._stats_lock = threading.Lock()
        self._reader = reader
        self._built_reader: Reader | None = None
        self._queue: FrameQueue[tuple[_Route, Message]] = FrameQueue(
            config.queued_frames_per_camera,
            max_frames=config.max_queued_frames,
            max_bytes=config.max_queued_bytes,
        )
        self._retained = RetainedFrames()
        settings = config.mqtt
        self.own_topics = OwnTopics(
            [settings.base_topic]
            + ([config.homeassistant.discovery_prefix] if config.homeassistant.enabled else []),
            [template for route in config.routes for template in (route.result_topic, route.error_topic)],
            settings.base_topic,
        )
        self._workers: list[threading.Thread] = []
        self._routes: list[_Route] = []
        self._accepting = False
        self._running = False  # from the end of start() to the beginning of stop()
        self._stopped = threading.Event()
        self.broker: EmbeddedBroker | None = None
        self.mqtt: MqttClient | None = None
        self.guard: ReaderGuard | None = None
        self.local_first: LocalFirst | None = None
        self._usage_poller: UsagePoller | None = None
        # bridge/state's fields: the reader guard's and the quota guard's, each replacing its own.
        self._state_fields: dict[str, dict[str, Any]] = {}
        self.extensions: list[Extension] = []
        # (filter, extension) for the topics extensions listen to, matched before any route.
        self._extension_topics: list[tuple[TopicFilter, Extension]] = []

    @property
    def broker_address(self) -> tuple[str, int]:
        if self.mqtt is None:
            raise RuntimeError("the bridge is not started")
        return self.mqtt.host, self.mqtt.port

    def start(self, connect_wait: float = 10.0) -> None:
        """Start the embedded broker (if asked), the workers and the MQTT connection; on any failure
        stop what was started and raise."""
        try:
            self._start(connect_wait)
        except BaseException:
            self.stop(deadline=0)
            raise

    def _start(self, connect_wait: float) -> None:
        settings = self.config.mqtt
        host, port = settings.host, settings.port
        if settings.embedded:
            port = pick_port(EMBEDDED_HOST, settings.port)
            if settings.port and port != settings.port:
                log.warning("port %s is taken; the embedded broker uses %s instead", settings.port, port)
            self.broker = EmbeddedBroker(EMBEDDED_HOST, port)
            self.broker.start()
            host = EMBEDDED_HOST
        reader = self._reader
        if reader is None:
            # Built here, so closed here on stop (its keep-alive connections); a reader passed in
            # belongs to the caller.
            reader = self._built_reader = build_reader(self.config.reader)
        reader_settings = self.config.reader
        self.guard = ReaderGuard(
            ResiliencePolicy.from_config(reader_settings),
            CallLimiter(reader_settings.max_calls_per_second),
            on_state=self._reader_state_changed,
        )
        try:
            self.local_first, self._usage_poller = build_local_first(
                reader_settings.local_first,
                routes_enable=any(route.local_first.enabled for route in self.config.routes),
                paid_reader=reader,
                on_change=lambda state: self._set_state("local_first", state),
            )
        except (ValueError, ImportError) as exc:
            raise ConfigError(f"reader.local_first: {exc}") from None
        extension_context = ExtensionContext(
            config=self.config,
            publish=lambda topic, payload, qos, retain, properties=None: self._publisher().publish(
                topic, payload, qos=qos, retain=retain, properties=properties
            ),
            health=self.health,
            reader=reader,
            submit=self.submit,
            reads=self.reads,
        )
        self.extensions = [kind(extension_context) for kind in enabled_extensions(self.config)]
        for route in self.config.routes:
            overlap = self.own_topics.overlapping(route.topic_filter)
            if overlap:
                log.warning(
                    "route %r also matches the bridge's own topics (%s): what arrives there is ignored",
                    route.topic,
                    ", ".join(overlap),
                )
        subscriptions = [(route.topic_filter.subscription, route.qos) for route in self.config.routes]
        for extension in self.extensions:
            for topic, qos in extension.subscriptions():
                subscriptions.append((topic, qos))
                self._extension_topics.append((TopicFilter.parse(topic), extension))
        self.mqtt = MqttClient(
            settings,
            on_message=self._accept,
            on_connected=self._connected,
            subscriptions=subscriptions,
            host=host,
            port=port,
            # MQTT 5: the broker drops a frame the bridge would refuse as too large instead of sending it.
            max_packet_size=self.config.max_payload_bytes + PUBLISH_OVERHEAD_BYTES,
        )
        for route in self.config.routes:
            context = NodeContext(
                route=route,
                base_topic=settings.base_topic,
                publisher=self.mqtt,
                reader=reader,
                guard=self.guard,
                max_payload_bytes=self.config.max_payload_bytes,
                on_event=self._published,
                watchlists=self.config.watchlists,
                local_first=self.local_first,
            )
            flow = Flow.build(route, context)
            flow.start()
            self._routes.append(_Route(route, route.topic_filter, flow))
        for index in range(self.config.reader.concurrency):
            worker = threading.Thread(target=self._work, name=f"reader-worker-{index}", daemon=True)
            worker.start()
            self._workers.append(worker)
        if self._usage_poller is not None:
            self._usage_poller.start()
        for extension in self.extensions:
            extension.start()
        self._accepting = True
        self.mqtt.start(wait=connect_wait)
        if settings.health_interval > 0:
            health = threading.Thread(target=self._report_health, name="health", daemon=True)
            health.start()
        self._running = True

    def health(self) -> dict[str, Any]:
        """Counters for `{base_topic}/bridge/health`: what came in, what was read, what was dropped."""
        guard = self.guard
        return {
            "received": self.stats.received,
            "processed": self.stats.processed,
            "dropped": self.stats.dropped,
            "dropped_by": dict(self.stats.dropped_by),
            "too_large": self.stats.too_large,
            "retained_skipped": self.stats.retained_skipped,
            "own_topics_ignored": self.stats.own_topics_ignored,
            "unrouted": self.stats.unrouted,
            "queued": len(self._queue),
            "queued_bytes": self._queue.queued_bytes,
            "reader": guard.state if guard else None,
            "reader_calls": guard.calls if guard else 0,
            "reader_retries": guard.retries if guard else 0,
            "connected": self.mqtt.connected if self.mqtt else False,
            "credits": credit_stats(node for route in self._routes for node in route.flow.nodes),
            "local_first": self._local_first_state(),
            "extensions": {ext.name: stats for ext in self.extensions if (stats := ext.stats())},
            "wedged": self.wedged(),
        }

    def reads(self, topic: str) -> bool:
        """Whether a route or an extension of this bridge takes messages on `topic`."""
        return any(f.match(topic) is not None for f, _ in self._extension_topics) or any(
            route.topic_filter.match(topic) is not None for route in self.config.routes
        )

    def wedged(self) -> list[str]:
        """Why this process cannot work any more however long it waits (empty while it can): its MQTT
        network thread or reader workers have ended. A broker or reader that is down is not in it:
        the bridge reconnects and the breaker retries by themselves, and a restart would not help."""
        if not self._running:
            return []  # starting, or stopping: the threads are not all there, on purpose
        problems = []
        if self.mqtt is not None and not self.mqtt.loop_alive:
            problems.append("the MQTT network thread has ended")
        ended = sum(not worker.is_alive() for worker in self._workers)
        if ended:
            problems.append(f"{ended} of {len(self._workers)} reader workers have ended")
        return problems

    def _report_health(self) -> None:
        while not self._stopped.wait(self.config.mqtt.health_interval):
            if self.mqtt is not None:
                self.mqtt.publish_json("bridge/health", self.health())

    def _publisher(self) -> MqttClient:
        if self.mqtt is None:
            raise RuntimeError("the bridge is not started")
        return self.mqtt

    def _connected(self) -> None:
        for extension in self.extensions:
            try:
                extension.on_connected()
            except Exception:
                log.exception("extension %s failed on connect", extension.name)

    def _published(self, published: PublishedEvent) -> None:
        for extension in self.extensions:
            try:
                extension.on_event(published)
            except Exception:
                log.exception("extension %s failed on an event on %s", extension.name, published.topic)

    def _local_first_state(self) -> dict[str, Any] | None:
        quota = self.local_first.quota if self.local_first is not None else None
        return quota.state() if quota is not None else None

    def _reader_state_changed(self, state: dict[str, Any]) -> None:
        if self.local_first is not None and self.local_first.quota is not None:
            self.local_first.quota.reader_state(state.get("reader"))
        self._set_state("reader", state)

    def _set_state(self, part: str, fields: dict[str, Any]) -> None:
        self._state_fields[part] = fields
        if self.mqtt is not None:
            self.mqtt.set_state(**{k: v for part in self._state_fields.values() for k, v in part.items()})

    def _accept(self, inbound: InboundMessage) -> None:
        """Called on paho's network thread: pass the message to an extension, or ignore it (the
        bridge's own topics), or route and queue the frame; return at once."""
        for topic_filter, extension in self._extension_topics:
            if topic_filter.match(inbound.topic) is not None:
                try:
                    extension.on_message(inbound)
                except Exception:
                    log.exception("extension %s failed on a message on %s", extension.name, inbound.topic)
                return
        if self.own_topics.match(inbound.topic):
            # The bridge's own events (a route on '#'): reading them would make events about events.
            self.stats.own_topics_ignored += 1
            return
        # MQTT 5 request/response: the frame carries where its answer goes (the requests extension).
        metadata = None
        if inbound.response_topic is not None:
            metadata = {
                "response_topic": inbound.response_topic,
                "correlation_data": inbound.correlation_data,
            }
        if not self._route_frame(inbound.topic, inbound.payload, metadata, retained=inbound.retain):
            # Some brokers (amqtt) deliver retained messages the client never subscribed to.
            self.stats.unrouted += 1
            log.debug("ignoring %s: no route matches it", inbound.topic)

    def submit(
        self,
        topic: str,
        payload: bytes,
        metadata: Mapping[str, Any] | None = None,
        *,
        camera_id: str | None = None,
        taken_at: datetime | None = None,
    ) -> bool:
        """Hand a frame to the first route whose filter matches `topic`; False when none does.

        For sources (extensions) with frames they fetched themselves; MQTT frames take the same path.
        `camera_id` and `taken_at` replace the route's camera id and the frame's unknown time.
        """
        return self._route_frame(topic, payload, metadata, camera_id=camera_id, taken_at=taken_at)

    def _route_frame(
        self,
        topic: str,
        payload: bytes,
        metadata: Mapping[str, Any] | None = None,
        *,
        retained: bool = False,
        camera_id: str | None = None,
        taken_at: datetime | None = None,
    ) -> bool:
        """Refuse a frame over the size limit or a retained one already seen, else queue it (what the
        queue pushes out is reported); False when no route takes `topic`."""
        for route in self._routes:
            captured = route.topic_filter.match(topic)
            if captured is None:
                continue
            msg = Message(
                topic=topic,
                payload=payload,
                received_at=utc_now(),
                route=route.config.label,
                camera_id=topic_level(camera_id) if camera_id else route.camera_id(topic, captured),
                timestamp=taken_at,
                regions=route.config.regions,
                mmc=route.config.mmc,
                engine_config=route.config.config or None,
                metadata=metadata or {},
            )
            limit = self.config.max_payload_bytes
            if len(payload) > limit:
                # Refused here, before it is queued: memory is bounded by configuration, not by
                # what publishers send. The event keeps nothing of the payload.
                self.stats.too_large += 1
                too_large = PayloadTooLarge(
                    f"payload of {len(payload):,} bytes is over the {limit:,}-byte limit", size=len(payload)
                )
                route.flow.report(msg.replace(payload=b""), too_large)
                return True
            if self._retained.seen_before(topic, payload, retained=retained):
                # The broker sends a topic's retained frame again on every (re)subscription.
                self.stats.retained_skipped += 1
                log.debug("skipping the retained frame on %s: already seen", topic)
                return True
            with self._stats_lock:  # paho's thread and sources (submit) both count
                self.stats.received += 1
            if not self._accepting:
                # Already acknowledged to the broker by paho: report it rather than lose it silently.
                self._drop(route, msg, "shutdown")
                return True
            for extension in self.extensions:
                try:
                    extension.on_frame(msg)
                except Exception:
                    log.exception("extension %s failed on a frame on %s", extension.name, topic)
            # A route that reuses readings decides a camera's frames one after the other: one at work.
            serial = route.config.repeat_window > 0
            item = (route, msg)
            for evicted in self._queue.put((id(route), msg.camera_id), item, len(payload), serial=serial):
                self._drop(*evicted.item, evicted.cause)
            return True
        return False

    def _drop(self, route: _Route, msg: Message, cause: DropCause) -> None:
        with self._stats_lock:
            self.stats.dropped += 1
            self.stats.dropped_by[cause] += 1
        route.flow.report(msg, FrameDropped(f"frame dropped unread: {DROP_REASONS[cause]}"))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            route, msg = item
            try:
                route.flow.run(msg)
            except Exception:
                log.exception("route %s: flow failed", route.config.label)
            finally:
                with self._stats_lock:
                    self.stats.processed += 1
                self._queue.task_done(item)

    def idle(self) -> bool:
        """Nothing waiting for the reader and nothing being read."""
        return self._queue.idle()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every frame taken so far has been handled; False on timeout."""
        return self._queue.join(timeout)

    def stop(self, deadline: float = 10.0) -> None:
        """Stop taking frames, let queued and in-flight ones finish within `deadline` seconds, report
        the rest as dropped, publish `offline` and disconnect."""
        self._running = False
        self._accepting = False
        self._stopped.set()
        give_up = time.monotonic() + deadline
        self.wait_idle(deadline)
        for route, msg in self._queue.close():
            self._drop(route, msg, "shutdown")
        for worker in self._workers:
            worker.join(max(0.0, give_up - time.monotonic()) + 0.5)
        # Flows first (a consensus node publishes the vehicles still open), then the extensions that
        # listen to their events, and the broker connection last, so nothing is published into it closed.
        for route in self._routes:
            route.flow.stop()
        if self._usage_poller is not None:
            self._usage_poller.stop()
        for extension in reversed(self.extensions):
            try:
                extension.stop()
            except Exception:
                log.exception("extension %s failed to stop", extension.name)
        close = getattr(self._built_reader, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.exception("the reader failed to close")
        self._built_reader = None
        if self.mqtt is not None:
            self.mqtt.stop()
        if self.broker is not None:
            self.broker.stop()
