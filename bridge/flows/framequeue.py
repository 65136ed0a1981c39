"""Per-camera bounded frame queues served round-robin, under one cap on frames and bytes for them all."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass
from itertools import count
from typing import Generic, Literal, TypeVar

Item = TypeVar("Item")

DropCause = Literal["camera_queue", "queue_full", "shutdown"]


@dataclass(frozen=True, slots=True)
class Evicted(Generic[Item]):
    """A frame `put` pushed out, and why: its camera's queue was full, the whole queue was, or the
    queue is closed."""

    item: Item
    cause: DropCause


@dataclass(frozen=True, slots=True)
class _Entry(Generic[Item]):
    seq: int
    size: int
    item: Item


class FrameQueue(Generic[Item]):
    """Each camera keeps at most `per_camera` waiting frames; a new frame pushes out its oldest.

    On top of that, all cameras together keep at most `max_frames` frames and `max_bytes` bytes: a
    new frame pushes out the oldest frames of any camera until it fits. Memory is then bounded by
    configuration, however many cameras (topics) publishers invent.

    Workers take one frame per camera in turn, so a camera flooding the bridge only ever delays
    itself. A camera put `serial` has at most one frame taken at a time: its next frame waits in its
    queue (newest kept) while a worker reads the last one, instead of parking a second worker behind
    the first (a route that reuses readings decides a camera's frames one after the other). `put`
    returns the frames it pushed out (the caller reports them: nothing is lost silently). A worker
    calls `task_done(item)` after each frame it took; `join()` waits for all of them.
    """

    def __init__(
        self, per_camera: int = 1, *, max_frames: int | None = None, max_bytes: int | None = None
    ) -> None:
        if per_camera < 1:
            raise ValueError("per_camera must be at least 1")
        if max_frames is not None and max_frames < 1:
            raise ValueError("max_frames must be at least 1")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.per_camera = per_camera
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._queues: OrderedDict[Hashable, deque[_Entry[Item]]] = OrderedDict()
        # Every waiting frame by arrival (sequence number -> camera): the oldest is always at the
        # head of its camera's queue, so the global cap drops it in O(1).
        self._arrivals: OrderedDict[int, Hashable] = OrderedDict()
        self._sequence = count()
        # One lock, two conditions: workers wait for a frame they may take (`_ready`), `join` for
        # nothing left (`_settled`). A finished frame wakes a worker only when it freed a serial
        # camera with frames waiting, and `join` only when all is done: waking every worker after
        # every frame (notify_all) cost each of them a wake-up and a wait again, flat out.
        lock = threading.RLock()  # an RLock: Condition asks it whether it is held in C
        self._ready = threading.Condition(lock)
        self._settled = threading.Condition(lock)
        self._closed = False
        self._frames = 0
        self._bytes = 0
        self._unfinished = 0
        self._serial: set[Hashable] = set()
        self._busy: set[Hashable] = set()
        self._taken: dict[int, Hashable] = {}  # id of a serial camera's frame in work -> its camera
        self.dropped = 0

    def __len__(self) -> int:
        with self._ready:
            return self._frames

    @property
    def queued_bytes(self) -> int:
        with self._ready:
            return self._bytes

    def put(
        self, camera: Hashable, item: Item, size: int = 0, *, serial: bool = False
    ) -> list[Evicted[Item]]:
        """Queue `item` (of `size` bytes) for `camera`; return what had to go to make room for it.
        `serial`: the camera's frames are worked on one at a time.

        A frame larger than `max_bytes` on its own is refused: it comes back as evicted.
        """
        with self._ready:
            if serial:
                self._serial.add(camera)
            if self._closed:
                return [Evicted(item, "shutdown")]
            if self.max_bytes is not None and size > self.max_bytes:
                return [Evicted(item, "queue_full")]
            evicted: list[Evicted[Item]] = []
            queue = self._queues.get(camera)
            if queue is None:
                queue = self._queues[camera] = deque()
            if len(queue) >= self.per_camera:
                # The camera keeps its place in line; only its oldest frame goes.
                evicted.append(Evicted(self._pop_head(queue), "camera_queue"))
            while self._over(size):
                oldest = next(iter(self._arrivals.values()))
                oldest_queue = self._queues[oldest]
                evicted.append(Evicted(self._pop_head(oldest_queue), "queue_full"))
                if not oldest_queue and oldest != camera:
                    del self._queues[oldest]
                    if oldest not in self._busy:
                        self._serial.discard(oldest)
            entry = _Entry(next(self._sequence), size, item)
            queue.append(entry)
            self._arrivals[entry.seq] = camera
            self._frames += 1
            self._bytes += size
            self.dropped += len(evicted)
            self._ready.notify()
            return evicted

    def _over(self, size: int) -> bool:
        """Whether one more frame of `size` bytes would break a global cap."""
        return (self.max_frames is not None and self._frames + 1 > self.max_frames) or (
            self.max_bytes is not None and self._bytes + size > self.max_bytes
        )

    def _pop_head(self, queue: deque[_Entry[Item]]) -> Item:
        entry = queue.popleft()
        del self._arrivals[entry.seq]
        self._frames -= 1
        self._bytes -= entry.size
        return entry.item

    def _next_camera(self) -> Hashable | None:
        """The first camera in line with a frame a worker may take (not a serial one at work)."""
        if not self._busy:
            return next(iter(self._queues), None)
        return next((camera for camera in self._queues if camera not in self._busy), None)

    def get(self, timeout: float | None = None) -> Item | None:
        """The next frame, round-robin over cameras; None when closed and empty or on timeout."""
        with self._ready:
            if not self._ready.wait_for(lambda: self._closed or self._next_camera() is not None, timeout):
                return None
            camera = self._next_camera()
            if camera is None:
                return None
            queue = self._queues[camera]
            item = self._pop_head(queue)
            # The camera goes to the back of the line (round robin), or away when it has nothing left.
            if queue:
                self._queues.move_to_end(camera)
            else:
                del self._queues[camera]
            if camera in self._serial:
                self._busy.add(camera)
                self._taken[id(item)] = camera
            self._unfinished += 1
            return item

    def task_done(self, item: Item | None = None) -> None:
        """A worker finished `item`, a frame it got from `get()`: its camera's next frame may go."""
        with self._ready:
            camera = self._taken.pop(id(item), None) if item is not None else None
            if camera is not None:
                self._busy.discard(camera)
                if camera not in self._queues:
                    self._serial.discard(camera)  # nothing waiting: forget it (bounded by cameras seen)
                else:
                    self._ready.notify()  # its next frame may go now
            self._unfinished -= 1
            if not self._frames and not self._unfinished:
                self._settled.notify_all()

    def idle(self) -> bool:
        """Nothing waiting and nothing being worked on."""
        with self._ready:
            return self._frames == 0 and self._unfinished == 0

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every frame has been taken and finished (or taken out by `close()`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._ready:
            while self._frames or self._unfinished:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._settled.wait(left)
            return True

    def close(self) -> list[Item]:
        """Refuse new frames, wake every waiting worker, and return the frames still waiting."""
        with self._ready:
            self._closed = True
            left = [entry.item for queue in self._queues.values() for entry in queue]
            self._queues.clear()
            self._arrivals.clear()
            self._serial.clear()
            self._frames = 0
            self._bytes = 0
            self._ready.notify_all()
            self._settled.notify_all()
            return left
