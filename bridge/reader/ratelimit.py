"""A call limiter shared by every route: at most N reader calls in any 1-second window."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class CallLimiter:
    """Lets a call start only when fewer than `max_per_second` calls are in flight or ended within the
    last second, so that no 1-second window *at the service* holds more than `max_per_second` arrivals.

    Why not a token bucket: a bucket full after an idle second lets N calls through and N more within
    the same second. Why the window counts from a call's end, not its start: the service counts
    arrivals, which happen somewhere between our start and our end (connection set-up, upload time,
    scheduling — 20 ms on loopback in benchmarks/, seconds for a large upload on a slow line); a
    window of start times let 13 calls arrive within one second at 8 calls/s. The price: with a
    reader that takes S seconds, at most N calls per 1 + S seconds.

    `pause_until()` makes every caller wait, e.g. for the Retry-After of a 429 one worker received.
    """

    def __init__(
        self,
        max_per_second: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.max_per_second = max_per_second
        # Fractional rates (0.5/s) become one call per 1/rate seconds.
        self._capacity = max(1, int(max_per_second)) if max_per_second else 0
        self._window = self._capacity / max_per_second if max_per_second else 0.0
        self._ends: deque[float] = deque()
        self._in_flight = 0
        self._paused_until = 0.0
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def pause_until(self, moment: float) -> None:
        """No call starts before `moment` (a value of the limiter's clock)."""
        with self._lock:
            self._paused_until = max(self._paused_until, moment)

    def pause_for(self, seconds: float) -> None:
        self.pause_until(self._clock() + seconds)

    def acquire(self) -> None:
        """Wait for a slot and take it; every acquire() must be followed by one release()."""
        while True:
            with self._lock:
                now = self._clock()
                wait = self._paused_until - now
                if wait <= 0:
                    if not self._capacity:
                        self._in_flight += 1
                        return
                    while self._ends and now - self._ends[0] >= self._window:
                        self._ends.popleft()
                    if self._in_flight + len(self._ends) < self._capacity:
                        self._in_flight += 1
                        return
                    # Full: the oldest ended call frees its slot first; an in-flight call frees one
                    # only after it ends, so poll briefly.
                    wait = self._ends[0] + self._window - now if self._ends else 0.005
            self._sleep(max(wait, 0.0005))

    def release(self) -> None:
        """The call that took a slot has ended: its slot is free one window from now."""
        with self._lock:
            self._in_flight -= 1
            if self._capacity:
                self._ends.append(self._clock())

    @contextmanager
    def slot(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()
