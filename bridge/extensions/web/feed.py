"""The live feed: new vehicles of the store, handed to every page that follows it (server-sent events).

The feed reads the store (the newest rows above the last one it saw, an index walk) twice a second
while someone follows it, rather than hooking the history extension's writer: `plate-bridge web`
runs in a process of its own, and a replica's page sees vehicles every replica stored. Each follower
has a bounded queue; one that does not keep up loses its oldest vehicles, never anyone else's.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

POLL = 0.5
"""Seconds between looks at the store while someone follows the feed."""
BATCH = 50
"""Vehicles read per look: more arriving within one look show only their newest 50 live."""
FOLLOWER_QUEUE = 100


class LiveFeed:
    """`follow()` gives a queue of new sightings; `unfollow(q)` ends it. `read_newest(limit)` is the
    store's `search(limit=...)`, newest first."""

    def __init__(self, read_newest: Callable[[int], list[Any]], poll: float = POLL) -> None:
        self._read_newest = read_newest
        self._poll = poll
        self._followers: list[queue.Queue[Any]] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._last_id: int | None = None
        self._thread: threading.Thread | None = None
        self.errors = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="web-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
            for follower in self._followers:
                with contextlib.suppress(queue.Full):
                    follower.put_nowait(None)
        if self._thread is not None:
            self._thread.join(5)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def follow(self) -> queue.Queue[Any]:
        """A new follower's queue: it gets every vehicle stored from now on."""
        follower: queue.Queue[Any] = queue.Queue(FOLLOWER_QUEUE)
        with self._lock:
            known = self._last_id is not None
        if not known:
            # Where "from now on" starts, read before the follower is told it is following, so a
            # vehicle stored right after is never taken for an old one.
            baseline = self._newest_id()
            with self._lock:
                if self._last_id is None:
                    self._last_id = baseline
        with self._lock:
            self._followers.append(follower)
            self._wake.notify_all()
        return follower

    def unfollow(self, follower: queue.Queue[Any]) -> None:
        with self._lock:
            if follower in self._followers:
                self._followers.remove(follower)
            if not self._followers:
                self._last_id = None  # nobody follows: the next follower starts from what is newest then

    def _newest_id(self) -> int | None:
        try:
            newest = self._read_newest(1)
        except Exception:  # the first look tries again
            return None
        return newest[0].id if newest else 0

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._followers and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
            self._look()
            with self._lock:
                if self._stopping:
                    return
                self._wake.wait(self._poll)

    def _look(self) -> None:
        try:
            newest = self._read_newest(BATCH)
        except Exception as exc:  # a database that went away: try again at the next look
            self.errors += 1
            log.warning("web: the live feed cannot read the history store: %s", type(exc).__name__)
            return
        with self._lock:
            if self._last_id is None:  # the store could not be read when the first page followed
                self._last_id = newest[0].id if newest else 0
                return
            fresh = [sighting for sighting in reversed(newest) if sighting.id > self._last_id]
            if not fresh:
                return
            self._last_id = fresh[-1].id
            followers = list(self._followers)
        for follower in followers:
            for sighting in fresh:
                try:
                    follower.put_nowait(sighting)
                except queue.Full:
                    with contextlib.suppress(queue.Empty):
                        follower.get_nowait()  # the slow page loses its oldest
                    with contextlib.suppress(queue.Full):
                        follower.put_nowait(sighting)
