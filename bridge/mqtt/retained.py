"""Retained frames: the broker hands the last retained message of a topic to every new subscription,
so each reconnect would read the same frame again (and pay for it). This remembers what was seen."""

from __future__ import annotations

import threading
from collections import OrderedDict

from bridge.imaging.digest import Digest, default_digest


class RetainedRepeats:
    """The digests of the last `per_topic` frames of the last `topics` topics, least recently used out.

    Every frame is remembered, whatever its retain flag: a broker delivers a live message with the
    flag cleared, even one published retained, and sets it only on messages it sends because of a
    new subscription (MQTT 3.1.1 §3.3.1.3, MQTT 5 §3.3.1.3). So a frame that arrives retained and
    whose digest is known has been seen before: a redelivery after a reconnect, not a new frame.
    Memory: about `topics * (per_topic * 80 + 200)` bytes, whatever publishers send.
    """

    def __init__(self, topics: int = 4096, per_topic: int = 4, digest: Digest | None = None) -> None:
        if topics < 1 or per_topic < 1:
            raise ValueError("topics and per_topic must be at least 1")
        self.digest = digest or default_digest()
        self._topics = topics
        self._per_topic = per_topic
        self._digests: OrderedDict[str, OrderedDict[bytes, None]] = OrderedDict()
        # paho's thread and sources (extensions) submitting frames from their own threads.
        self._lock = threading.Lock()

    def seen_before(self, topic: str, payload: bytes, *, retained: bool) -> bool:
        """Remember `payload` on `topic`; True when it arrived retained and was seen there before."""
        return self.seen_digest_before(topic, self.digest(payload), retained=retained)

    def seen_digest_before(self, topic: str, digest: bytes, *, retained: bool) -> bool:
        """`seen_before` for a payload already digested (with `self.digest`)."""
        with self._lock:
            known = self._digests.get(topic)
            if known is None:
                known = self._digests[topic] = OrderedDict()
                if len(self._digests) > self._topics:
                    self._digests.popitem(last=False)
            else:
                self._digests.move_to_end(topic)
            seen = digest in known
            known[digest] = None
            known.move_to_end(digest)
            if len(known) > self._per_topic:
                known.popitem(last=False)
            return retained and seen

    def __len__(self) -> int:
        """Topics remembered."""
        return len(self._digests)
