"""The recognize node's memory of recent readings: bounded by camera (LRU), by readings per camera, by age.

What is kept of a frame that was read is its digest, its signature (bridge/signature.py, ~2 kB) and the
reader's answer: never the image, so a camera sending 10 MB frames costs the same as one sending 50 kB.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bridge.signature import Signature

__all__ = ["CameraLocks", "Reading", "RepeatCache"]


@dataclass(frozen=True, slots=True)
class Reading:
    """One reader call's answer for a camera's frame, and what is needed to recognise that frame again."""

    digest: bytes
    signature: Signature | None
    parameters: tuple[Any, ...]
    result: Mapping[str, Any]
    scale: float | None
    frame_time: float
    """When the frame was taken (the camera's timestamp, else when it arrived), Unix seconds."""
    read_at: float
    """The bridge's monotonic clock when it was read."""
    has_plate: bool
    nbytes: int
    """What the cache counts for it: digest, signature and the answer as JSON."""


class RepeatCache:
    """Each camera's last `history` readings, for at most `cameras` cameras (the least recently seen is
    forgotten first), each usable for `window` seconds of both the camera's and the bridge's clock."""

    def __init__(self, *, cameras: int, history: int, window: float) -> None:
        self.max_cameras = cameras
        self.history = history
        self.window = window
        self._lock = threading.Lock()
        self._cameras: OrderedDict[Hashable, deque[Reading]] = OrderedDict()
        self._nbytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._cameras)

    @property
    def nbytes(self) -> int:
        """Bytes held by every reading kept (digests, signatures, answers as JSON)."""
        with self._lock:
            return self._nbytes

    def recent(self, camera: Hashable, frame_time: float, now: float) -> list[Reading]:
        """The camera's readings still usable for a frame taken at `frame_time`, oldest first."""
        with self._lock:
            readings = self._cameras.get(camera)
            if readings is None:
                return []
            self._cameras.move_to_end(camera)
            live = [reading for reading in readings if not self._expired(reading, frame_time, now)]
            if len(live) != len(readings):
                self._nbytes -= sum(reading.nbytes for reading in readings) - sum(r.nbytes for r in live)
                readings.clear()
                readings.extend(live)
            return live

    def _expired(self, reading: Reading, frame_time: float, now: float) -> bool:
        # Both clocks: the camera's, so a burst of queued frames is judged by when they were taken, and
        # the bridge's, so a camera whose clock is stuck or wrong cannot keep a reading forever.
        return now - reading.read_at > self.window or abs(frame_time - reading.frame_time) > self.window

    def add(self, camera: Hashable, reading: Reading) -> None:
        with self._lock:
            readings = self._cameras.get(camera)
            if readings is None:
                readings = self._cameras[camera] = deque()
            self._cameras.move_to_end(camera)
            readings.append(reading)
            self._nbytes += reading.nbytes
            while len(readings) > self.history:
                self._nbytes -= readings.popleft().nbytes
            while len(self._cameras) > self.max_cameras:
                _, forgotten = self._cameras.popitem(last=False)
                self._nbytes -= sum(old.nbytes for old in forgotten)


class CameraLocks:
    """One lock per camera, only while someone holds or waits for it: a camera's frames are decided one
    after the other (the second waits for the first's reading, which it may then reuse), while other
    cameras' frames go ahead. Bounded by the number of workers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[Hashable, tuple[threading.Lock, list[int]]] = {}

    @contextmanager
    def hold(self, camera: Hashable) -> Iterator[None]:
        with self._lock:
            entry = self._held.get(camera)
            if entry is None:
                entry = self._held[camera] = (threading.Lock(), [0])
            entry[1][0] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._lock:
                entry[1][0] -= 1
                if not entry[1][0]:
                    del self._held[camera]

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)
