"""The flow layer's front door: which route takes a frame, what is refused before it is queued, and
the reader workers that run the routes' flows.

The frame path (docs/development/architecture.md): an inbound MQTT message goes to the extension
that listens on its topic, else is ignored when it is on one of the bridge's own topics, else the
first route whose filter matches takes it: refused over the size limit, skipped when it is a retained
frame already seen, else counted, shown to the `on_frame` hooks and queued per camera; a worker
takes it from the queue and runs the route's flow.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.config import BridgeConfig, RouteConfig
from bridge.core.errors import FrameDropped, PayloadTooLarge
from bridge.core.messages import Message, Origin, OwnTopics, TopicFilter, topic_level, utc_now
from bridge.flows.flow import Flow
from bridge.flows.framequeue import DropCause, FrameQueue
from bridge.flows.stats import DROP_REASONS, FrameStats
from bridge.imaging.digest import frame_digest
from bridge.mqtt import InboundMessage, RetainedRepeats
from bridge.nodes import NodeContext
from bridge.nodes.savings import credit_stats

log = logging.getLogger(__name__)

Listener = Callable[[InboundMessage], None]


@dataclass(frozen=True, slots=True)
class Route:
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


class Router:
    """Routes frames to the routes' flows through the per-camera queue and runs them on workers.

    `own_subtrees` are the topic prefixes the bridge publishes under (its base topic and what the
    extensions declare): frames there are ignored. `on_frame` is told of every frame a route queued.
    """

    def __init__(
        self,
        config: BridgeConfig,
        *,
        own_subtrees: Sequence[str] = (),
        on_frame: Callable[[Message], None] | None = None,
        stats: FrameStats | None = None,
    ) -> None:
        self.config = config
        self.stats = stats if stats is not None else FrameStats()
        self.own_topics = OwnTopics(
            [config.mqtt.base_topic, *own_subtrees],
            [template for route in config.routes for template in (route.result_topic, route.error_topic)],
            config.mqtt.base_topic,
        )
        self.routes: list[Route] = []
        self._on_frame = on_frame
        self._listeners: list[tuple[TopicFilter, Listener, str]] = []
        self._queue: FrameQueue[tuple[Route, Message]] = FrameQueue(
            config.queued_frames_per_camera,
            max_frames=config.max_queued_frames,
            max_bytes=config.max_queued_bytes,
        )
        self._retained = RetainedRepeats(digest=frame_digest)
        self._workers: list[threading.Thread] = []
        self.accepting = False

    def listen(self, topic: str, listener: Listener, name: str) -> None:
        """Send messages on `topic` (a filter) to `listener` instead of the routes; `name` is logged."""
        self._listeners.append((TopicFilter.parse(topic), listener, name))

    def warn_overlaps(self) -> None:
        for route in self.config.routes:
            overlap = self.own_topics.overlapping(route.topic_filter)
            if overlap:
                log.warning(
                    "route %r also matches the bridge's own topics (%s): what arrives there is ignored",
                    route.topic,
                    ", ".join(overlap),
                )

    def build(self, context: Callable[[RouteConfig], NodeContext]) -> None:
        """Build and start every route's flow, each with the node context `context(route)` gives."""
        for route in self.config.routes:
            flow = Flow.build(route, context(route))
            flow.start()
            self.routes.append(Route(route, route.topic_filter, flow))

    def start_workers(self, count: int) -> None:
        for index in range(count):
            worker = threading.Thread(target=self._work, name=f"reader-worker-{index}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def reads(self, topic: str) -> bool:
        """Whether a route or a listener takes messages on `topic`."""
        return any(f.match(topic) is not None for f, _, _ in self._listeners) or any(
            route.topic_filter.match(topic) is not None for route in self.config.routes
        )

    def accept(self, inbound: InboundMessage) -> None:
        """Called on paho's network thread: pass the message to a listener, or ignore it (the bridge's
        own topics), or route and queue the frame; return at once."""
        for topic_filter, listener, name in self._listeners:
            if topic_filter.match(inbound.topic) is not None:
                try:
                    listener(inbound)
                except Exception:
                    log.exception("extension %s failed on a message on %s", name, inbound.topic)
                return
        if self.own_topics.match(inbound.topic):
            # The bridge's own events (a route on '#'): reading them would make events about events.
            self.stats.count("own_topics_ignored")
            return
        # MQTT 5 request/response: the frame carries where its answer goes.
        responding = inbound.response_topic is not None
        if not self.route(
            inbound.topic,
            inbound.payload,
            retained=inbound.retain,
            response_topic=inbound.response_topic,
            correlation_data=inbound.correlation_data if responding else None,
        ):
            # Some brokers (amqtt) deliver retained messages the client never subscribed to.
            self.stats.count("unrouted")
            log.debug("ignoring %s: no route matches it", inbound.topic)

    def route(
        self,
        topic: str,
        payload: bytes,
        metadata: Mapping[str, Any] | None = None,
        *,
        retained: bool = False,
        camera_id: str | None = None,
        taken_at: datetime | None = None,
        reading: Mapping[str, Any] | None = None,
        origin: Origin | None = None,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
    ) -> bool:
        """Refuse a frame over the size limit or a retained one already seen, else queue it (what the
        queue pushes out is reported); False when no route takes `topic`.

        MQTT frames come through `accept`; sources (extensions with frames they fetched themselves)
        call it as the extensions' `submit`: `camera_id` and `taken_at` replace the route's camera id
        and the frame's unknown time, `reading` is a reading made elsewhere, `origin` the source's.
        """
        for route in self.routes:
            captured = route.topic_filter.match(topic)
            if captured is None:
                continue
            limit = self.config.max_payload_bytes
            # The frame's one digest (the retained check; the repeat cache reuses it), unless refused.
            digest = frame_digest(payload) if len(payload) <= limit else None
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
                reading=reading,
                origin=origin,
                response_topic=response_topic,
                correlation_data=correlation_data,
                payload_digest=digest,
                metadata=metadata or {},
            )
            if digest is None:
                # Refused here, before it is queued: memory is bounded by configuration, not by
                # what publishers send. The event keeps nothing of the payload.
                self.stats.count("too_large")
                too_large = PayloadTooLarge(
                    f"payload of {len(payload):,} bytes is over the {limit:,}-byte limit", size=len(payload)
                )
                route.flow.report(msg.replace(payload=b""), too_large)
                return True
            if self._retained.seen_digest_before(topic, digest, retained=retained):
                # The broker sends a topic's retained frame again on every (re)subscription.
                self.stats.count("retained_skipped")
                log.debug("skipping the retained frame on %s: already seen", topic)
                return True
            self.stats.count("received")
            if not self.accepting:
                # Already acknowledged to the broker by paho: report it rather than lose it silently.
                self._drop(route, msg, "shutdown")
                return True
            self.stats.count_accepted(route.config.label)
            if self._on_frame is not None:
                self._on_frame(msg)
            # A route that reuses readings decides a camera's frames one after the other: one at work.
            serial = route.config.repeat_window > 0
            item = (route, msg)
            for evicted in self._queue.put((id(route), msg.camera_id), item, len(payload), serial=serial):
                self._drop(*evicted.item, evicted.cause)
            return True
        return False

    def _drop(self, route: Route, msg: Message, cause: DropCause) -> None:
        self.stats.count_dropped(cause)
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
                self.stats.count("processed")
                self._queue.task_done(item)

    def health(self) -> dict[str, Any]:
        """The frame counters, the queue and the nodes' savings, for `bridge/health`."""
        return {
            **self.stats.as_dict(),
            "queued": len(self._queue),
            "queued_bytes": self._queue.queued_bytes,
        }

    def credits(self) -> dict[str, int]:
        return credit_stats(node for route in self.routes for node in route.flow.nodes)

    def ended_workers(self) -> str | None:
        ended = sum(not worker.is_alive() for worker in self._workers)
        return f"{ended} of {len(self._workers)} reader workers have ended" if ended else None

    def idle(self) -> bool:
        return self._queue.idle()

    def wait_idle(self, timeout: float | None = None) -> bool:
        return self._queue.join(timeout)

    def stop(self, deadline: float, give_up: float) -> None:
        """Stop taking frames, let the queue drain within `deadline` seconds, report the rest as
        dropped, end the workers by the monotonic time `give_up`, then stop the flows."""
        self.accepting = False
        self.wait_idle(deadline)
        for route, msg in self._queue.close():
            self._drop(route, msg, "shutdown")
        for worker in self._workers:
            worker.join(max(0.0, give_up - time.monotonic()) + 0.5)
        for route in self.routes:
            route.flow.stop()
