"""Per-camera bounded frame queues served round-robin: latest frame wins, no camera starves another."""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Hashable
from typing import Generic, TypeVar

Item = TypeVar("Item")


class FrameQueue(Generic[Item]):
    """Each camera keeps at most `per_camera` waiting frames; a new frame pushes out its oldest.

    Workers take one frame per camera in turn, so a camera flooding the bridge only ever delays
    itself. `put` returns the frame it pushed out (the caller reports it: nothing is lost silently).
    """

    def __init__(self, per_camera: int = 1) -> None:
        if per_camera < 1:
            raise ValueError("per_camera must be at least 1")
        self.per_camera = per_camera
        self._queues: OrderedDict[Hashable, deque[Item]] = OrderedDict()
        self._ready = threading.Condition()
        self._closed = False
        self.dropped = 0

    def __len__(self) -> int:
        with self._ready:
            return sum(len(queue) for queue in self._queues.values())

    def put(self, camera: Hashable, item: Item) -> Item | None:
        with self._ready:
            if self._closed:
                return item
            queue = self._queues.get(camera)
            if queue is None:
                queue = self._queues[camera] = deque()
            pushed_out = queue.popleft() if len(queue) >= self.per_camera else None
            if pushed_out is not None:
                self.dropped += 1
            queue.append(item)
            self._ready.notify()
            return pushed_out

    def get(self, timeout: float | None = None) -> Item | None:
        """The next frame, round-robin over cameras; None when closed and empty or on timeout."""
        with self._ready:
            if not self._ready.wait_for(lambda: self._queues or self._closed, timeout):
                return None
            if not self._queues:
                return None
            camera, queue = next(iter(self._queues.items()))
            item = queue.popleft()
            # The camera goes to the back of the line (round robin), or away when it has nothing left.
            del self._queues[camera]
            if queue:
                self._queues[camera] = queue
            return item

    def close(self) -> list[Item]:
        """Refuse new frames, wake every waiting worker, and return the frames still waiting."""
        with self._ready:
            self._closed = True
            left = [item for queue in self._queues.values() for item in queue]
            self._queues.clear()
            self._ready.notify_all()
            return left
