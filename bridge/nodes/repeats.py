"""The recognize node's memory of recent readings: bounded by camera (LRU), by readings per camera, by age.

What is kept of a frame that was read is its digest, the reader's answer and its `Evidence`: what
tells a later frame of the camera that it shows the same scene (its signature, bridge/imaging/signature.py,
~2 kB) and, for a reading that found plates, the same plates (a crop of each plate box,
bridge/imaging/platecrops.py). Both are made only when a later frame asks: most frames are never
compared with anything. Until then the frame itself is kept, for the camera's newest reading only and
within `frame_bytes` over all cameras (the oldest let go first); a reading that lost its frame before
what it needed was made cannot be reused for a similar frame, and that frame is read again.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from collections.abc import Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from bridge.imaging.platecrops import Box, PlateCrops
from bridge.imaging.signature import Signature

__all__ = [
    "BUSY_AFTER",
    "BUSY_LOOK_EVERY",
    "BUSY_LOOK_MAX",
    "CameraLocks",
    "Evidence",
    "FrameRepeats",
    "Pace",
    "Reading",
]

BUSY_AFTER = 10
"""Frames in a row read for a changed scene after which a camera counts as busy."""
BUSY_LOOK_EVERY = 0.5
"""Seconds of camera time between the frames a busy camera compares with its readings, at first."""
BUSY_LOOK_MAX = 2.0
"""The longest such interval: each look of a busy camera that finds its scene changed again doubles it."""


class Pace:
    """How often a camera's frames are compared with its recent readings.

    A frame is compared (its signature decoded, ~1 ms per 100 kB of JPEG) only to save a call. A
    camera whose last `BUSY_AFTER` frames were all new scenes — a busy road, a camera fed flat out —
    is compared once every `BUSY_LOOK_EVERY` seconds of its own clock instead of on every frame, then
    every 1, 2 s (`BUSY_LOOK_MAX`) while each look finds it changed again: the frames between are read,
    as they would have been anyway while the scene keeps changing. The first reuse makes it a calm
    camera again. The price: when a busy scene stops changing (a car parks after a stream of traffic),
    the frames of at most one interval are read before the next look finds it still. What an event
    says never depends on it: a frame is read or proven the same. Changed and read under the camera's
    lock only."""

    __slots__ = ("changed", "follow", "interval", "looked_at", "looking")

    def __init__(self) -> None:
        self.changed = 0
        self.interval = BUSY_LOOK_EVERY
        self.looked_at = -math.inf
        self.looking = False
        """The frame being decided is a busy camera's look."""
        self.follow = False
        """The next frame is compared with the look's reading: a busy camera keeps no other frame."""

    @property
    def busy(self) -> bool:
        return self.changed >= BUSY_AFTER

    def looks(self, frame_time: float) -> bool:
        """Whether the camera's frame taken at `frame_time` is compared with its readings."""
        if self.follow:
            self.follow = False
            self.looking = False
            return True
        if self.busy and abs(frame_time - self.looked_at) < self.interval:
            return False
        self.looked_at = frame_time
        self.looking = self.busy
        return True

    @property
    def keeps_frame(self) -> bool:
        """Whether the frame being decided, if read, keeps its frame for the comparisons to come: a
        calm camera's, or a busy camera's look (the frame after it is compared with it); the other
        frames of a busy camera are compared with nothing."""
        return not self.busy or self.looking

    def read(self) -> None:
        """A frame was read: its scene changed, or it was not compared."""
        self.changed += 1
        if self.looking:  # a busy camera's look found a new scene again: look less often
            self.interval = min(BUSY_LOOK_MAX, 2 * self.interval)
            self.follow = True
        self.looking = False

    def reused(self) -> None:
        self.changed = 0
        self.interval = BUSY_LOOK_EVERY
        self.looking = self.follow = False


class Evidence:
    """What a reading keeps to recognise its frame's scene and plates in a later frame: the frame's
    signature, its plate boxes and their crops, and the frame they are made from until then.
    Changed and read under the camera's lock (CameraLocks) only."""

    __slots__ = ("boxes", "crops", "frame", "signature")

    def __init__(
        self,
        *,
        frame: bytes | None,
        signature: Signature | None = None,
        boxes: tuple[Box, ...] | None = (),
    ) -> None:
        self.frame = frame
        self.signature = signature
        self.boxes = boxes
        """The plate boxes to prove unchanged: () for a reading without plates, None when the answer's
        plates had no usable boxes (then no similar frame may reuse it)."""
        self.crops: PlateCrops | None = None

    @property
    def nbytes(self) -> int:
        return (
            (len(self.frame) if self.frame is not None else 0)
            + (self.signature.nbytes if self.signature is not None else 0)
            + (self.crops.nbytes if self.crops is not None else 0)
        )

    @property
    def needs_frame(self) -> bool:
        """Whether something is still to be made from the frame."""
        return self.signature is None or (bool(self.boxes) and self.crops is None)


@dataclass(frozen=True, slots=True)
class Reading:
    """One reader call's answer for a camera's frame, and what is needed to recognise that frame again."""

    digest: bytes
    parameters: tuple[Any, ...]
    result: Mapping[str, Any]
    scale: float | None
    frame_time: float
    """When the frame was taken (the camera's timestamp, else when it arrived), Unix seconds."""
    read_at: float
    """The bridge's monotonic clock when it was read."""
    has_plate: bool
    nbytes: int
    """What the cache counts for it besides its evidence: digest and the answer as JSON."""
    evidence: Evidence = field(default_factory=lambda: Evidence(frame=None))
    reader: str | None = None
    """Which reader answered (`local`, `cloud`, `sdk`): a reused reading's event says the same."""


class FrameRepeats:
    """Each camera's last `history` readings, for at most `cameras` cameras (the least recently seen is
    forgotten first), each usable for `window` seconds of both the camera's and the bridge's clock."""

    def __init__(self, *, cameras: int, history: int, window: float, frame_bytes: int = 16 << 20) -> None:
        self.max_cameras = cameras
        self.history = history
        self.window = window
        self.frame_bytes = frame_bytes
        self._lock = threading.Lock()
        self._cameras: OrderedDict[Hashable, deque[Reading]] = OrderedDict()
        self._paces: dict[Hashable, Pace] = {}
        # Evidence still holding its frame, oldest first, and the bytes of those frames.
        self._framed: OrderedDict[int, Evidence] = OrderedDict()
        self._framed_bytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._cameras)

    @property
    def nbytes(self) -> int:
        """Bytes held by every reading kept (digests, answers as JSON, signatures, crops, frames)."""
        with self._lock:
            return sum(
                reading.nbytes + reading.evidence.nbytes
                for readings in self._cameras.values()
                for reading in readings
            )

    def pace(self, camera: Hashable) -> Pace:
        """The camera's pace (kept as long as its readings are)."""
        with self._lock:
            pace = self._paces.get(camera)
            if pace is None:
                pace = self._paces[camera] = Pace()
                if camera not in self._cameras:
                    # A camera with no readings yet: its pace is forgotten with the least recent ones.
                    self._trim_paces()
            return pace

    def _trim_paces(self) -> None:
        while len(self._paces) > 2 * self.max_cameras:
            stale = next((camera for camera in self._paces if camera not in self._cameras), None)
            if stale is None:
                return
            del self._paces[stale]

    def done_with_frame(self, evidence: Evidence) -> None:
        """What `evidence` needed of its frame is made (or cannot be): the frame is let go."""
        with self._lock:
            self._let_go(evidence)

    def _let_go(self, evidence: Evidence) -> None:
        if self._framed.pop(id(evidence), None) is not None and evidence.frame is not None:
            self._framed_bytes -= len(evidence.frame)
        evidence.frame = None

    def recent(self, camera: Hashable, frame_time: float, now: float) -> list[Reading]:
        """The camera's readings still usable for a frame taken at `frame_time`, oldest first."""
        with self._lock:
            readings = self._cameras.get(camera)
            if readings is None:
                return []
            self._cameras.move_to_end(camera)
            live = [reading for reading in readings if not self._expired(reading, frame_time, now)]
            if len(live) != len(readings):
                kept = {id(reading) for reading in live}
                for reading in readings:
                    if id(reading) not in kept:
                        self._let_go(reading.evidence)
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
            # Only the camera's newest reading keeps its frame: a parked car matches that one.
            for older in readings:
                self._let_go(older.evidence)
            readings.append(reading)
            evidence = reading.evidence
            if evidence.frame is not None:
                if len(evidence.frame) > self.frame_bytes or not evidence.needs_frame:
                    evidence.frame = None
                else:
                    self._framed[id(evidence)] = evidence
                    self._framed_bytes += len(evidence.frame)
            while len(readings) > self.history:
                self._let_go(readings.popleft().evidence)
            while len(self._cameras) > self.max_cameras:
                gone, forgotten = self._cameras.popitem(last=False)
                self._paces.pop(gone, None)
                for old in forgotten:
                    self._let_go(old.evidence)
            while self._framed_bytes > self.frame_bytes:
                self._let_go(next(iter(self._framed.values())))


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
