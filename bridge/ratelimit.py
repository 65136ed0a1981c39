"""A call limiter shared by every route: at most N reader calls in any 1-second window."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class CallLimiter:
    """Blocks callers so that no sliding 1-second window holds more than `max_per_second` calls.

    A sliding window of the last calls' start times rather than a token bucket: a bucket that is full
    after an idle second lets a burst of N through and then N more within the same second, which is
    exactly what the service's per-second plans answer with 429. `pause_until()` makes every caller
    wait, e.g. for the Retry-After of a 429 that one worker received.
    """

    def __init__(
        self,
        max_per_second: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.max_per_second = max_per_second
        # Fractional rates (0.5/s) keep one call per 1/rate seconds.
        self._capacity = max(1, int(max_per_second)) if max_per_second else 0
        self._window = self._capacity / max_per_second if max_per_second else 0.0
        self._starts: deque[float] = deque()
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

    def acquire(self, deadline: float | None = None) -> bool:
        """Wait for a slot and take it; False if `deadline` (clock value) would pass first."""
        while True:
            with self._lock:
                now = self._clock()
                wait = self._paused_until - now
                if self._capacity and wait <= 0:
                    while self._starts and now - self._starts[0] >= self._window:
                        self._starts.popleft()
                    if len(self._starts) < self._capacity:
                        self._starts.append(now)
                        return True
                    wait = self._starts[0] + self._window - now
                elif wait <= 0:
                    return True
            if deadline is not None and now + wait > deadline:
                return False
            self._sleep(max(wait, 0.0005))
