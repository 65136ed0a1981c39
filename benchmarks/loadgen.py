"""The cameras: publish frames on MQTT, closed or open loop, and time every frame until its event."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.procs import HOST
from benchmarks.systems import BASE_TOPIC

PROBE_CAMERA = "probe"
PROBE_SECONDS = 0.25
PROBE_STRAGGLER_SECONDS = 2.0
PROBE_QUIET_SECONDS = 0.3


@dataclass(frozen=True)
class Trace:
    """What a run saw: when each frame went out, and (published, answered, was an error) per answer."""

    published: tuple[float, ...]
    answered: tuple[tuple[float, float, bool], ...]
    unanswered: int
    unexpected_events: int


class Cameras:
    """`count` cameras (`cameras/camN/image`) on one MQTT connection.

    Each frame's result or error event (`{base_topic}/camN/result|error`) is matched to the oldest
    unanswered frame of that camera: every system answers each frame once, in order per camera.
    Closed loop: a camera publishes its next frame when the event for the last one arrives.
    Open loop: frames go out at a fixed total rate, round-robin over the cameras.
    Either way publishing stops at `max_frames` frames or at the deadline, whichever comes first.
    """

    def __init__(self, broker_port: int, frames: Sequence[bytes], count: int) -> None:
        if not frames or count < 1:
            raise ValueError("cameras need at least one frame and one camera")
        self._frames = list(frames)
        self._names = [f"cam{number}" for number in range(1, count + 1)]
        self._index = {name: index for index, name in enumerate(self._names)}
        self._port = broker_port
        self._lock = threading.Lock()
        self._pending: list[deque[float]] = [deque() for _ in self._names]
        self._sent = [0] * count
        self._published: list[float] = []
        self._answered: list[tuple[float, float, bool]] = []
        self._unexpected = 0
        self._publishing = False
        self._closed_loop = False
        self._max_frames = 0
        self._deadline = 0.0
        self._stop = threading.Event()
        self._pacer: threading.Thread | None = None
        self._subscribed = threading.Event()
        self._probe_answered = threading.Event()
        self._probe_events = 0
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-cameras-{os.getpid()}")
        # paho holds back QoS 1 publishes beyond 20 unacknowledged ones; the harness must not pace itself.
        self._client.max_inflight_messages_set(65535)
        self._client.on_connect = self._on_connect
        # paho leaves Nagle's algorithm on: the tail of a frame would wait for the broker's delayed ACK.
        self._client.on_socket_open = lambda _client, _userdata, sock: sock.setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_event

    # connection

    def connect(self, timeout: float = 10.0) -> Cameras:
        self._client.connect(HOST, self._port)
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            self.close()
            raise TimeoutError(f"no SUBACK from the broker on {HOST}:{self._port} within {timeout:g} s")
        return self

    def close(self) -> None:
        self.stop()
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: paho.Client, *_: Any) -> None:
        # QoS 0 for the events: the systems still publish them with QoS 1 to the broker.
        client.subscribe([(f"{BASE_TOPIC}/+/result", 0), (f"{BASE_TOPIC}/+/error", 0)])

    # readiness

    def probe(self, alive: Callable[[], bool], timeout: float) -> None:
        """Publish a probe frame every PROBE_SECONDS until the system answers one (it is subscribed and its
        reader works), then let the answers to earlier probes arrive so none lands in the run."""
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            if not alive():
                raise RuntimeError("the system exited before it answered a frame")
            self._client.publish(f"cameras/{PROBE_CAMERA}/image", self._frames[0], qos=1)
            if self._probe_answered.wait(PROBE_SECONDS):
                self._wait_for_quiet()
                return
        raise TimeoutError(f"the system answered no probe frame within {timeout:g} s")

    def _wait_for_quiet(self) -> None:
        """Until no probe answer came for PROBE_QUIET_SECONDS (probes sent before the system subscribed
        are lost, so their count cannot be awaited), at most PROBE_STRAGGLER_SECONDS."""
        give_up = time.monotonic() + PROBE_STRAGGLER_SECONDS
        seen = -1
        while time.monotonic() < give_up:
            with self._lock:
                if self._probe_events == seen:
                    return
                seen = self._probe_events
            time.sleep(PROBE_QUIET_SECONDS)

    # the run

    def start(self, *, rate: float | None, max_frames: int, deadline: float) -> None:
        """Start publishing: closed loop when `rate` is None, else `rate` frames/s over all cameras."""
        with self._lock:
            self._publishing = True
            self._closed_loop = rate is None
            self._max_frames = max_frames
            self._deadline = deadline
        if rate is None:
            for index in range(len(self._names)):
                self._publish(index)
        else:
            self._pacer = threading.Thread(target=self._pace, args=(rate,), name="cameras-pacer", daemon=True)
            self._pacer.start()

    def stop(self) -> None:
        """No frame goes out after this returns."""
        with self._lock:
            self._publishing = False
        self._stop.set()
        if self._pacer is not None:
            self._pacer.join(5)

    @property
    def done_publishing(self) -> bool:
        with self._lock:
            return len(self._published) >= self._max_frames

    @property
    def answered_count(self) -> int:
        with self._lock:
            return len(self._answered)

    @property
    def unanswered(self) -> int:
        with self._lock:
            return sum(len(pending) for pending in self._pending)

    def wait(self, until: float, stop_early: Callable[[], bool]) -> None:
        """Sleep until `until` (a time.monotonic() value) or until `stop_early()` holds (polled at 20 Hz)."""
        while time.monotonic() < until and not stop_early():
            time.sleep(min(0.05, max(0.0, until - time.monotonic())))

    def trace(self) -> Trace:
        with self._lock:
            return Trace(
                tuple(self._published),
                tuple(self._answered),
                sum(len(pending) for pending in self._pending),
                self._unexpected,
            )

    def _pace(self, rate: float) -> None:
        started = time.monotonic()
        for sequence in range(self._max_frames):
            delay = started + sequence / rate - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            if not self._publish(sequence % len(self._names)):
                return

    def _publish(self, index: int) -> bool:
        """Publish camera `index`'s next frame, unless the run is over; False when it is."""
        with self._lock:
            now = time.monotonic()
            if not self._publishing or len(self._published) >= self._max_frames or now >= self._deadline:
                return False
            payload = self._frames[(index + self._sent[index]) % len(self._frames)]
            self._sent[index] += 1
            # Recorded before the publish: the event can come back before publish() returns.
            self._pending[index].append(now)
            self._published.append(now)
        self._client.publish(f"cameras/{self._names[index]}/image", payload, qos=1)
        return True

    def _on_event(self, _client: paho.Client, _userdata: object, message: paho.MQTTMessage) -> None:
        answered_at = time.monotonic()
        levels = message.topic.split("/")
        camera = levels[1] if len(levels) == 3 else ""
        if camera == PROBE_CAMERA:
            with self._lock:
                self._probe_events += 1
            self._probe_answered.set()
            return
        index = self._index.get(camera)
        with self._lock:
            if index is None or not self._pending[index]:
                self._unexpected += 1
                return
            published = self._pending[index].popleft()
            self._answered.append((published, answered_at, levels[2] == "error"))
            closed_loop = self._closed_loop
        if closed_loop:
            self._publish(index)
