"""The recognize node's memory of recent readings: bounded by camera (LRU), by readings per camera, by age.

What is kept of a frame that was read is its digest, its signature (bridge/signature.py, ~2 kB) and the
reader's answer, and for a reading that found plates, what proves a later frame shows the same plates
(bridge/platecrops.py): a crop of each plate box, made from the frame the first time a similar frame
asks for it. Until then the frame itself is kept, for the camera's newest reading only and within
`frame_bytes` over all cameras (the oldest let go first); a reading that lost its frame before its
crops were made cannot be reused for a similar frame, and the frame is read again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bridge.platecrops import Box, PlateCrops
from bridge.signature import Signature

__all__ = ["CameraLocks", "PlateProof", "Reading", "RepeatCache"]


class PlateProof:
    """What a reading with plates keeps to prove that a later frame shows them unchanged: the plate
    boxes, and either the frame they were read from (until asked) or their crops (from then on).
    Changed only under the camera's lock (CameraLocks), read under it too."""

    __slots__ = ("boxes", "crops", "frame")

    def __init__(self, boxes: tuple[Box, ...], frame: bytes) -> None:
        self.boxes = boxes
        self.frame: bytes | None = frame
        self.crops: PlateCrops | None = None

    @property
    def nbytes(self) -> int:
        return (len(self.frame) if self.frame is not None else 0) + (self.crops.nbytes if self.crops else 0)


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
    """What the cache counts for it: digest, signature and the answer as JSON (its proof apart)."""
    proof: PlateProof | None = None
    """For a reading with plates: what proves a later frame shows the same plates; None when the
    answer's plates had no usable boxes (then no similar frame may reuse it)."""


class RepeatCache:
    """Each camera's last `history` readings, for at most `cameras` cameras (the least recently seen is
    forgotten first), each usable for `window` seconds of both the camera's and the bridge's clock."""

    def __init__(self, *, cameras: int, history: int, window: float, frame_bytes: int = 16 << 20) -> None:
        self.max_cameras = cameras
        self.history = history
        self.window = window
        self.frame_bytes = frame_bytes
        self._lock = threading.Lock()
        self._cameras: OrderedDict[Hashable, deque[Reading]] = OrderedDict()
        self._nbytes = 0
        # Readings whose proof still holds its frame, oldest first, and the bytes of those frames.
        self._framed: OrderedDict[int, PlateProof] = OrderedDict()
        self._framed_bytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._cameras)

    @property
    def nbytes(self) -> int:
        """Bytes held by every reading kept (digests, signatures, answers as JSON, frames and crops)."""
        with self._lock:
            return self._nbytes + self._framed_bytes

    def cropped(self, proof: PlateProof, crops: PlateCrops | None) -> None:
        """`proof`'s crops were made (None: could not be): its frame is let go."""
        with self._lock:
            self._let_go(proof)
            proof.crops = crops
            if crops is not None:
                self._nbytes += crops.nbytes

    def _let_go(self, proof: PlateProof) -> None:
        if self._framed.pop(id(proof), None) is not None and proof.frame is not None:
            self._framed_bytes -= len(proof.frame)
        proof.frame = None

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
                        self._forget(reading)
                readings.clear()
                readings.extend(live)
            return live

    def _forget(self, reading: Reading) -> None:
        self._nbytes -= reading.nbytes
        if reading.proof is not None:
            self._let_go(reading.proof)
            if reading.proof.crops is not None:
                self._nbytes -= reading.proof.crops.nbytes

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
                if older.proof is not None:
                    self._let_go(older.proof)
            readings.append(reading)
            self._nbytes += reading.nbytes
            proof = reading.proof
            if proof is not None and proof.frame is not None:
                if len(proof.frame) > self.frame_bytes:
                    proof.frame = None
                else:
                    self._framed[id(proof)] = proof
                    self._framed_bytes += len(proof.frame)
            while len(readings) > self.history:
                self._forget(readings.popleft())
            while len(self._cameras) > self.max_cameras:
                _, forgotten = self._cameras.popitem(last=False)
                for old in forgotten:
                    self._forget(old)
            while self._framed_bytes > self.frame_bytes:
                _, oldest = self._framed.popitem(last=False)
                self._framed_bytes -= len(oldest.frame or b"")
                oldest.frame = None


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
