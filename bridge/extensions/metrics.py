"""Observability: Prometheus `/metrics`, and `/health/live` and `/health/ready` for orchestrators, over HTTP.

Event counters come from the `on_event` hook; frame counters and gauges are read from the bridge's
frame-counter registry and health document when Prometheus scrapes, so nothing runs between scrapes.
The Prometheus registry is the extension's own (not prometheus_client's global one), so two bridges
in one process never mix.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from pydantic import Field

from bridge.config import StrictModel
from bridge.core.messages import utc_now
from bridge.extensions.base import Extension, ExtensionContext, PublishedEvent
from bridge.extensions.httpserver import HTTPListener, ListenerRequestHandler

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from bridge.config import BridgeConfig

log = logging.getLogger(__name__)

# The reader's states (bridge/reader/resilience.py); "unavailable" is the open circuit.
READER_STATES = ("ok", "forbidden", "unavailable")
CIRCUIT_OPEN = "unavailable"
# Scrapes and probes served at once; more are answered 503 (a scraper or an orchestrator retries).
CONCURRENT_REQUESTS = 4
# Seconds a client has for a whole request and its answer: a stalled or trickling one is cut off.
REQUEST_DEADLINE = 10.0
# Frames whose repeat-cache hit was already counted, so a split frame's events count once.
_SEEN_CACHED = 1024


def liveness_status(health: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The HTTP status and body of `/health/live`: 503 only when the process is wedged (its MQTT
    network thread or a reader worker has ended), which a restart heals; a broker or reader that is
    down keeps it 200, since a restarted bridge would meet the same broker and the same service."""
    problems = list(health.get("wedged") or [])
    body = {"status": "wedged" if problems else "alive", "problems": problems}
    return (HTTPStatus.SERVICE_UNAVAILABLE if problems else HTTPStatus.OK), body


def health_status(health: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The HTTP status and body of `/health/ready` (and of `/health`, kept with the meaning it always
    had): 200 when connected to the broker, the reader's circuit is not open and nothing is wedged,
    else 503. A refused token (`forbidden`) stays 200: no waiting heals it, and the body says so."""
    problems = []
    if not health.get("connected"):
        problems.append("not connected to the MQTT broker")
    if health.get("reader") == CIRCUIT_OPEN:
        problems.append("the reader's circuit is open (the service keeps failing)")
    problems.extend(health.get("wedged") or [])
    body = {"status": "unhealthy" if problems else "healthy", "problems": problems, **health}
    return (HTTPStatus.SERVICE_UNAVAILABLE if problems else HTTPStatus.OK), body


# `/health` keeps the meaning it always had (readiness): scripts and probes written against it see no
# change; container health checks and liveness probes move to `/health/live`.
HEALTH_PATHS = {
    "/health/live": liveness_status,
    "/health/ready": health_status,
    "/health": health_status,
}
NOT_FOUND = b"not found: try /metrics, /health/live or /health/ready\n"


class MetricsConfig(StrictModel):
    """Prometheus `/metrics` and an orchestrator's `/health`, served over HTTP by the bridge."""

    enabled: bool = Field(False, description="Serve /metrics (Prometheus) and /health over HTTP.")
    host: str = Field(
        "127.0.0.1", min_length=1, description="Address to listen on; 0.0.0.0 to be scraped from elsewhere."
    )
    port: int = Field(9108, ge=0, le=65535, description="Port to listen on (0: any free port).")
    latency_buckets: tuple[float, ...] = Field(
        (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
        min_length=1,
        description="Upper bounds (seconds) of the frame-to-event latency histogram's buckets.",
    )


class _HealthCollector:
    """Gauges read from the bridge's health document at scrape time."""

    def __init__(self, extension: MetricsExtension) -> None:
        self._extension = extension

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        health = self._extension.context.health()
        yield GaugeMetricFamily(
            "plate_bridge_queue_depth", "Frames waiting for a reader worker.", value=health.get("queued", 0)
        )
        yield GaugeMetricFamily(
            "plate_bridge_mqtt_connected",
            "1 while connected to the MQTT broker.",
            value=1 if health.get("connected") else 0,
        )
        state = GaugeMetricFamily(
            "plate_bridge_reader_state",
            "1 for the reader's current state: ok, forbidden (after a 403) or unavailable (circuit open).",
            labels=["state"],
        )
        for name in READER_STATES:
            state.add_metric([name], 1 if health.get("reader") == name else 0)
        yield state
        yield CounterMetricFamily(
            "plate_bridge_reader_calls",
            "Calls made to the reader, retries included.",
            health.get("reader_calls", 0),
        )
        yield CounterMetricFamily(
            "plate_bridge_reader_retries", "Reader calls that were retries.", health.get("reader_retries", 0)
        )
        credits = health.get("credits") or {}
        yield CounterMetricFamily(
            "plate_bridge_reader_calls_saved_local",
            "Frames local first answered from the offline reader instead of a paid call "
            "(reader.local_first); the repeat cache's savings are plate_bridge_reader_calls_saved.",
            credits.get("saved_local", 0),
        )
        yield CounterMetricFamily(
            "plate_bridge_local_first_busy",
            "Frames local first sent to the paid reader because every offline worker was busy.",
            credits.get("local_declined_busy", 0),
        )
        local_first = health.get("local_first") or {}
        yield GaugeMetricFamily(
            "plate_bridge_local_only",
            "1 while the quota guard has the offline reader answer alone (calls left low, circuit open).",
            value=1 if local_first.get("local_only") else 0,
        )
        yield CounterMetricFamily(
            "plate_bridge_frames_dropped",
            "Frames dropped unread (pushed out or at shutdown).",
            health.get("dropped", 0),
        )
        # From the bridge's one frame-counter registry, like bridge/health and bridge/stats.
        frames = CounterMetricFamily("plate_bridge_frames", "Frames a route accepted.", labels=["route"])
        stats = self._extension.context.frame_stats
        for route, count in sorted((stats.accepted() if stats is not None else {}).items()):
            frames.add_metric([route], count)
        yield frames


class MetricsExtension(Extension):
    """Serves `/metrics`, `/health/live` and `/health/ready` on `metrics.host:metrics.port`."""

    name = "metrics"
    config_key = "metrics"
    config_model = MetricsConfig

    def __init__(self, context: ExtensionContext) -> None:
        super().__init__(context)
        self.settings = context.config.metrics
        self._http = HTTPListener(
            "metrics",
            self.settings.host,
            self.settings.port,
            self._handler(),
            thread_name="metrics-http",
            max_concurrent=CONCURRENT_REQUESTS,
            deadline=REQUEST_DEADLINE,
        )
        self._cached_seen: OrderedDict[tuple[str, object], None] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def enabled(cls, config: BridgeConfig) -> bool:
        return config.metrics.enabled

    @property
    def port(self) -> int:
        """The port listened on (the chosen one when `metrics.port` is 0)."""
        return self._http.port

    def start(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry: CollectorRegistry = CollectorRegistry(auto_describe=True)
        self._events = Counter(
            "plate_bridge_events",
            "Events published, by route and kind: plate (one per frame, or per plate after a split), "
            "vehicle (one per vehicle, from a consensus node), error.",
            ["route", "kind"],
            registry=self.registry,
        )
        self._errors = Counter(
            "plate_bridge_errors", "Error events, by their stable code.", ["code"], registry=self.registry
        )
        self._saved = Counter(
            "plate_bridge_reader_calls_saved",
            "Frames answered from the repeat cache (routes[].repeat_window) instead of a reader call.",
            registry=self.registry,
        )
        self._latency = Histogram(
            "plate_bridge_event_latency_seconds",
            "From a frame's arrival to its plate event (queue wait and the reader call), cached ones aside.",
            ["route"],
            buckets=self.settings.latency_buckets,
            registry=self.registry,
        )
        self.registry.register(_HealthCollector(self))
        self._http.start()
        log.info(
            "metrics on http://%s:%d/metrics, health on /health/live and /health/ready",
            self.settings.host,
            self.port,
        )

    def stop(self) -> None:
        self._http.stop()

    def on_event(self, published: PublishedEvent) -> None:
        msg = published.msg
        self._events.labels(msg.route, published.kind).inc()
        if published.kind == "error":
            self._errors.labels(str(published.event.get("code", "unknown"))).inc()
            return
        if published.kind == "vehicle":
            return  # counted once above; latency and saved calls are the frames' (its plate events)
        if msg.reused is None:
            self._latency.labels(msg.route).observe((utc_now() - msg.received_at).total_seconds())
            return
        key = (msg.topic, msg.received_at)
        with self._lock:
            if key in self._cached_seen:
                return
            self._cached_seen[key] = None
            if len(self._cached_seen) > _SEEN_CACHED:
                self._cached_seen.popitem(last=False)
        self._saved.inc()

    def _handler(self) -> type[ListenerRequestHandler]:
        extension = self

        class Handler(ListenerRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    from prometheus_client.exposition import choose_encoder

                    encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                    self._send(HTTPStatus.OK, content_type, encoder(extension.registry))
                elif path in HEALTH_PATHS:
                    status, body = HEALTH_PATHS[path](extension.context.health())
                    self._send(status, "application/json", json.dumps(body).encode())
                else:
                    self._send(HTTPStatus.NOT_FOUND, "text/plain", NOT_FOUND)

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
