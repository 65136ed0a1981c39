"""The running bridge, wiring only: configuration -> broker connection -> router and flows -> extensions.

What a frame goes through is the flow layer's (`bridge.flows.router`); what a feature adds is its
extension's (`bridge.extensions`). See docs/development/architecture.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from bridge.config import BridgeConfig, RouteConfig
from bridge.core.protocols import Reader
from bridge.extensions import ExtensionContext, Extensions, enabled_extensions
from bridge.flows.router import Router
from bridge.flows.stats import FrameStats
from bridge.mqtt import MqttClient
from bridge.mqtt.broker import EmbeddedBroker, start_embedded
from bridge.mqtt.client import PUBLISH_OVERHEAD_BYTES
from bridge.nodes import NodeContext
from bridge.nodes.watchlist import LiveWatchlists
from bridge.reader.cascade import LocalFirstRun
from bridge.reader.ratelimit import CallLimiter
from bridge.reader.resilience import ReaderGuard, ResiliencePolicy
from bridge.readers import build_reader, load_local_reader

log = logging.getLogger(__name__)


class Bridge:
    """Owns the broker connection, the router and the extensions; `start()`, then `stop()`."""

    def __init__(self, config: BridgeConfig, *, reader: Reader | None = None) -> None:
        self.config = config
        self.stats = FrameStats()
        self._reader = reader
        self._built_reader: Reader | None = None
        self._extension_types = enabled_extensions(config)
        self.extensions = Extensions()
        self.router = Router(
            config,
            own_subtrees=[p for kind in self._extension_types for p in kind.published_subtrees(config)],
            on_frame=self.extensions.on_frame,
            stats=self.stats,
        )
        self.own_topics = self.router.own_topics
        self.submit = self.router.route  # the extensions' `Submit`: a source's frame takes the MQTT path
        self._running = False  # from the end of start() to the beginning of stop()
        self._stopped = threading.Event()
        self.broker: EmbeddedBroker | None = None
        self.mqtt: MqttClient | None = None
        self.guard: ReaderGuard | None = None
        self.local_first = LocalFirstRun(self._set_state)

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
            self.broker = start_embedded(settings.port)
            host, port = self.broker.host, self.broker.port
        reader = self._reader
        if reader is None:
            # Built here, so closed here on stop (its keep-alive connections); a reader passed in
            # belongs to the caller.
            reader = self._built_reader = build_reader(self.config.reader)
        self.guard = ReaderGuard(
            ResiliencePolicy.from_config(self.config.reader),
            CallLimiter(self.config.reader.max_calls_per_second),
            on_state=self.local_first.reader_state_changed,
        )
        self.local_first.build(
            self.config.reader.local_first,
            routes_enable=any(route.local_first.enabled for route in self.config.routes),
            paid_reader=reader,
            load_offline=load_local_reader,
        )
        # Watch lists an extension edits at run time (from its store), one set for every route.
        edits = any(kind.edits_watchlists for kind in self._extension_types)
        self._live_watchlists = LiveWatchlists() if edits else None
        context = ExtensionContext(
            config=self.config,
            publisher=self,
            health=self.health,
            reader=reader,
            submit=self.submit,
            reads=self.router.reads,
            frame_stats=self.stats,
            watchlists=self._live_watchlists,
        )
        self.extensions.extend(kind(context) for kind in self._extension_types)
        self.router.warn_overlaps()
        subscriptions = [(route.topic_filter.subscription, route.qos) for route in self.config.routes]
        for extension in self.extensions:
            for topic, qos in extension.subscriptions():
                subscriptions.append((topic, qos))
                self.router.listen(topic, extension.on_message, extension.name)
        self.mqtt = MqttClient(
            settings,
            on_message=self.router.accept,
            on_connected=self.extensions.on_connected,
            subscriptions=subscriptions,
            host=host,
            port=port,
            # MQTT 5: the broker drops a frame the bridge would refuse as too large instead of sending it.
            max_packet_size=self.config.max_payload_bytes + PUBLISH_OVERHEAD_BYTES,
        )
        self.router.build(lambda route: self._node_context(route, reader))
        self.router.start_workers(self.config.reader.concurrency)
        self.local_first.start()
        self.extensions.start()
        self.router.accepting = True
        self.mqtt.start(wait=connect_wait)
        if settings.health_interval > 0:
            threading.Thread(target=self._report_health, name="health", daemon=True).start()
        self._running = True

    def _node_context(self, route: RouteConfig, reader: Reader) -> NodeContext:
        assert self.mqtt is not None
        return NodeContext(
            route=route,
            base_topic=self.config.mqtt.base_topic,
            publisher=self.mqtt,
            reader=reader,
            guard=self.guard,
            max_payload_bytes=self.config.max_payload_bytes,
            on_event=self.extensions.on_event,
            watchlists=self.config.watchlists,
            live_watchlists=self._live_watchlists,
            local_first=self.local_first.cascade,
        )

    def health(self) -> dict[str, Any]:
        """Counters for `{base_topic}/bridge/health`: what came in, what was read, what was dropped."""
        guard = self.guard
        return {
            **self.router.health(),
            "reader": guard.state if guard else None,
            "reader_calls": guard.calls if guard else 0,
            "reader_retries": guard.retries if guard else 0,
            "connected": self.mqtt.connected if self.mqtt else False,
            "credits": self.router.credits(),
            "local_first": self.local_first.state(),
            "extensions": self.extensions.stats(),
            "wedged": self.wedged(),
        }

    def wedged(self) -> list[str]:
        """Why this process cannot work any more however long it waits (empty while it can): its MQTT
        network thread or reader workers have ended. A broker or reader that is down is not in it:
        the bridge reconnects and the breaker retries by themselves, and a restart would not help."""
        if not self._running:
            return []  # starting, or stopping: the threads are not all there, on purpose
        problems = []
        if self.mqtt is not None and not self.mqtt.loop_alive:
            problems.append("the MQTT network thread has ended")
        if ended := self.router.ended_workers():
            problems.append(ended)
        return problems

    def _report_health(self) -> None:
        while not self._stopped.wait(self.config.mqtt.health_interval):
            if self.mqtt is not None:
                self.mqtt.publish_json("bridge/health", self.health())

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int,
        retain: bool,
        properties: Mapping[str, Any] | None = None,
    ) -> None:
        """The extensions' `Publisher`: the MQTT client's, once it exists (extensions are built first)."""
        if self.mqtt is None:
            raise RuntimeError("the bridge is not started")
        self.mqtt.publish(topic, payload, qos=qos, retain=retain, properties=properties)

    def _set_state(self, **fields: Any) -> None:
        if self.mqtt is not None:
            self.mqtt.set_state(**fields)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every frame taken so far has been handled; False on timeout."""
        return self.router.wait_idle(timeout)

    def stop(self, deadline: float = 10.0) -> None:
        """Stop taking frames, let queued and in-flight ones finish within `deadline` seconds, report
        the rest as dropped, publish `offline` and disconnect."""
        self._running = False
        self._stopped.set()
        # Flows first (a consensus node publishes the vehicles still open), then the extensions that
        # listen to their events, and the broker connection last, so nothing is published into it closed.
        self.router.stop(deadline, give_up=time.monotonic() + deadline)
        self.local_first.stop()
        self.extensions.stop()
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
