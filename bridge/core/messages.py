"""The message that flows through a route's nodes, and the small topic types around it."""

from __future__ import annotations

import dataclasses
import re
import string
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SHARE_PREFIX = "$share/"


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, millisecond precision: what events carry and the API accepts."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class TopicFilter:
    """A validated MQTT subscription filter (`+` and `#` wildcards, optional `$share/GROUP/` prefix)."""

    filter: str
    share_group: str | None = None

    @classmethod
    def parse(cls, text: str) -> TopicFilter:
        """Parse and check a filter; raise ValueError with the rule it breaks (MQTT 3.1.1 §4.7)."""
        if not isinstance(text, str) or not text:
            raise ValueError("a topic filter must be a non-empty string")
        share_group = None
        if text.startswith(SHARE_PREFIX):
            share_group, _, text = text[len(SHARE_PREFIX) :].partition("/")
            if not share_group or any(c in share_group for c in "+#"):
                raise ValueError(f"'$share/{share_group}/...' needs a group name without wildcards")
            if not text:
                raise ValueError("'$share/GROUP/' must be followed by a topic filter")
        if "\x00" in text:
            raise ValueError(f"topic filter {text!r} contains a NUL character")
        levels = text.split("/")
        for index, level in enumerate(levels):
            if "#" in level and (level != "#" or index != len(levels) - 1):
                raise ValueError(f"topic filter {text!r}: '#' must be a whole level and the last one")
            if "+" in level and level != "+":
                raise ValueError(f"topic filter {text!r}: '+' must be a whole level")
        return cls(text, share_group)

    @property
    def subscription(self) -> str:
        """What to send in SUBSCRIBE: the filter with its `$share/GROUP/` prefix when shared."""
        return f"{SHARE_PREFIX}{self.share_group}/{self.filter}" if self.share_group else self.filter

    def match(self, topic: str) -> tuple[str, ...] | None:
        """The topic levels the wildcards matched (`#` gives its levels joined), or None if no match."""
        pattern = self.filter.split("/")
        levels = topic.split("/")
        # Wildcards at the first level do not match topics starting with '$' (MQTT 3.1.1 §4.7.2).
        if topic.startswith("$") and pattern[0] in ("+", "#"):
            return None
        captured: list[str] = []
        for index, part in enumerate(pattern):
            if part == "#":
                captured.append("/".join(levels[index:]))
                return tuple(captured)
            if index >= len(levels):
                return None
            if part == "+":
                captured.append(levels[index])
            elif part != levels[index]:
                return None
        return tuple(captured) if len(levels) == len(pattern) else None


def filters_overlap(first: str, second: str) -> bool:
    """Whether some topic matches both MQTT filters (`+` and `#` in either; no `$share/` prefix)."""
    a, b = first.split("/"), second.split("/")
    # Wildcards at the first level do not match topics starting with '$' (MQTT 3.1.1 §4.7.2).
    for mine, theirs in ((a[0], b[0]), (b[0], a[0])):
        if mine in ("+", "#") and theirs.startswith("$"):
            return False
    for mine, theirs in zip(a, b, strict=False):
        if "#" in (mine, theirs):
            return True
        if mine != theirs and "+" not in (mine, theirs):
            return False
    if len(a) == len(b):
        return True
    # 'x/#' also matches its parent 'x'.
    longer = a if len(a) > len(b) else b
    return len(longer) == min(len(a), len(b)) + 1 and longer[-1] == "#"


class OwnTopics:
    """The topics the bridge publishes on, to recognise its own messages when they come back.

    `subtrees` are whole prefixes (`{base_topic}`, what extensions declare they publish under);
    `templates` are event topic templates (`alpr/{camera_id}/plate`), where `{camera_id}` and
    `{route}` stand for the text of one level, as `route_topic` fills them.
    """

    def __init__(self, subtrees: Iterable[str], templates: Iterable[str], base_topic: str) -> None:
        self.filters: list[str] = []
        patterns: list[str] = []
        for prefix in dict.fromkeys(subtrees):
            self.filters.append(f"{prefix}/#")
            patterns.append(re.escape(prefix) + "(?:/.*)?")
        subtree_filters = list(self.filters)
        for template in dict.fromkeys(templates):
            topic_filter, pattern = self._template(template, base_topic)
            if not any(self._covers(subtree, topic_filter) for subtree in subtree_filters):
                self.filters.append(topic_filter)
                patterns.append(pattern)
        self._pattern = re.compile("|".join(f"(?:{pattern})" for pattern in patterns), re.DOTALL)

    @staticmethod
    def _template(template: str, base_topic: str) -> tuple[str, str]:
        """The template as an MQTT filter (a level with a placeholder becomes `+`) and as a regex."""
        pattern = []
        for literal, field_name, _, _ in string.Formatter().parse(template):
            pattern.append(re.escape(literal))
            if field_name == "base_topic":
                pattern.append(re.escape(base_topic))
            elif field_name is not None:
                pattern.append("[^/]+")
        # NUL cannot be in a topic: it marks the levels a placeholder fills.
        filled = template.format(base_topic=base_topic, camera_id="\x00", route="\x00")
        levels = ["+" if "\x00" in level else level for level in filled.split("/")]
        return "/".join(levels), "".join(pattern)

    @staticmethod
    def _covers(subtree: str, topic_filter: str) -> bool:
        """Whether every topic of `topic_filter` lies under `subtree` (a `prefix/#` filter)."""
        prefix = subtree.removesuffix("/#")
        return topic_filter == prefix or topic_filter.startswith(prefix + "/")

    def match(self, topic: str) -> bool:
        """Whether the bridge itself may have published `topic`."""
        return self._pattern.fullmatch(topic) is not None

    def overlapping(self, topic_filter: TopicFilter) -> list[str]:
        """The bridge's own topics (as filters) that a route's filter also matches."""
        return [own for own in self.filters if filters_overlap(topic_filter.filter, own)]


def check_publish_topic(topic: str) -> str:
    """Return `topic` if events may be published on it (no wildcards, not empty), else raise ValueError."""
    if not topic or "+" in topic or "#" in topic or "\x00" in topic:
        raise ValueError(f"cannot publish on {topic!r}: a topic must be non-empty and without '+' or '#'")
    return topic


MAX_TOPIC_LEVEL_CHARS = 128


def _unsafe_in_topic(char: str) -> bool:
    # Separators and wildcards change the topic's meaning; control characters make brokers drop the
    # connection (mosquitto: malformed packet); surrogates cannot be encoded as UTF-8 at all; and
    # Unicode non-characters are disallowed by MQTT 3.1.1 §1.5.3.
    code = ord(char)
    return (
        char in "/+#"
        or unicodedata.category(char) in ("Cc", "Cs")
        or 0xFDD0 <= code <= 0xFDEF
        or (code & 0xFFFE) == 0xFFFE
    )


def topic_level(text: str) -> str:
    """Make `text` safe as one topic level (a camera id from a payload): no separators, wildcards,
    control characters, surrogates or non-characters; at most 128 characters."""
    # The common case, on every frame: printable ASCII (no control characters), none of "/+#".
    if (
        text.isascii()
        and text.isprintable()
        and len(text) <= MAX_TOPIC_LEVEL_CHARS
        and "/" not in text
        and "+" not in text
        and "#" not in text
        and text.strip() == text
        and text
    ):
        return text
    cleaned = "".join("_" if _unsafe_in_topic(c) else c for c in text[:MAX_TOPIC_LEVEL_CHARS]).strip()
    return cleaned or "_"


@dataclass(frozen=True, slots=True)
class Reuse:
    """Why a frame carries an earlier reading instead of its own (the recognize node's repeat cache)."""

    reason: str
    """`identical`, `similar`, `interval`, ... (see `reuse` in the configuration)."""
    read_at: datetime | None = None
    """When the frame whose reading it is was taken."""


@dataclass(frozen=True, slots=True)
class SplitPart:
    """Which of the frame's results a message carries, after a split node."""

    index: int
    count: int


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a source (an extension that fetched the frame itself) got it: its events carry `details`
    under `name` (a Frigate snapshot: `frigate: {event_id, camera, label}`)."""

    name: str
    details: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Message:
    """One frame on its way through a route: each node returns a new one (`replace`), never mutates.

    A frozen dataclass rather than a pydantic model: it is built and copied several times per frame
    on the hot path, and its fields are already checked by the nodes that set them.
    """

    topic: str
    payload: bytes
    received_at: datetime
    route: str = ""
    camera_id: str | None = None
    timestamp: datetime | None = None
    image: bytes | None = None
    # Set when the frame arrived as base64 text: the reader can send it as is (`upload` accepts
    # base64), sparing a decode and re-encode.
    image_base64: bytes | None = None
    image_format: str | None = None
    regions: tuple[str, ...] = ()
    mmc: bool = False
    engine_config: Mapping[str, Any] | None = None
    result: Mapping[str, Any] | None = None
    scale: float | None = None
    # What steers the flow and the events, typed (set by the edge, a source or a node):
    reading: Mapping[str, Any] | None = None
    """A reading made elsewhere (a Plate Recognizer webhook): the flow starts at validate with it."""
    response_topic: str | None = None
    """MQTT 5: where the frame's publisher wants its answer (the frame's Response Topic property)."""
    correlation_data: bytes | None = None
    """MQTT 5: the frame's Correlation Data, returned with the answer."""
    origin: Origin | None = None
    reused: Reuse | None = None
    """Set when the result is an earlier frame's reading, not a reader call for this frame."""
    split: SplitPart | None = None
    watched: tuple[Mapping[str, Any], ...] | None = None
    """The watch-list matches of the frame's plates (None: no watchlist node; empty: no match)."""
    reader: str | None = None
    """Which reader answered: `local` (the offline reader, local first) or the paid one's kind
    (`cloud`, `sdk`); a reused reading keeps the reader that made it."""
    local_only: str | None = None
    """Why the offline reader answered alone (`calls_left`, `circuit_open`): the quota guard's word."""
    payload_digest: bytes | None = None
    """`bridge.imaging.digest.frame_digest` of the payload, taken once where the frame arrives."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """Free for third-party nodes and sources; nothing of the bridge reads it."""

    def replace(self, **changes: Any) -> Message:
        """A copy with `changes`: slot by slot, without `dataclasses.replace`'s keyword round trip
        through `__init__` (it runs several times per frame; a third of the time, measured)."""
        unknown = changes.keys() - _MESSAGE_FIELDS
        if unknown:
            raise TypeError(f"Message has no field {sorted(unknown)[0]!r}")
        copy = _new_object(Message)
        for name in _MESSAGE_FIELDS:
            _set_slot(copy, name, changes[name] if name in changes else getattr(self, name))
        return copy


_MESSAGE_FIELDS = tuple(item.name for item in dataclasses.fields(Message))
_new_object = object.__new__
_set_slot = object.__setattr__


def route_topic(template: str, base_topic: str, msg: Message) -> str:
    """Fill a route's result/error topic template for one message."""
    return template.format(
        base_topic=base_topic,
        camera_id=topic_level(msg.camera_id or "unknown"),
        route=topic_level(msg.route or "route"),
    )
