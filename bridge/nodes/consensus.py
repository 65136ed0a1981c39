"""Consensus node: the readings of one vehicle's frames are voted into one event when it leaves.

A reader misreads a character now and then (B for 8, a dirty plate); the same vehicle filmed over a few
frames is read several times, and the misreads rarely agree with each other. The vote is per character
position, weighted by score, over every candidate of every reading of the vehicle (a reading's second
candidate is often the right plate), after a vote on the plate's length: a misread in one frame is
outvoted by the others even when each frame got a different character wrong, which a vote over whole
strings could not do (three different misreads and one right reading are four strings with one vote
each).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field, field_validator

from bridge.core.events import PublishedEvent, encode, plate_event
from bridge.core.messages import Message, check_publish_topic, iso_utc, route_topic
from bridge.core.plates import normalize_plate, same_plate
from bridge.nodes.base import Node, NodeContext, NodeSettings

log = logging.getLogger(__name__)

CloseReason = Literal["left", "max_wait", "stopped", "evicted"]


class ConsensusSettings(NodeSettings):
    gap: float = Field(
        3.0, gt=0, description="Seconds without a frame of the plate after which the vehicle has left."
    )
    max_wait: float = Field(
        30.0,
        gt=0,
        description="Longest a vehicle in view waits for its event (a parked car): then it goes out.",
    )
    tolerance: float = Field(
        1.0, ge=0, description="Largest edit distance between readings of one vehicle (bridge.core.plates)."
    )
    topic: str = Field(
        "{base_topic}/{camera_id}/vehicle",
        description="Where the vehicle events go ({base_topic}, {camera_id}, {route}).",
    )
    per_frame: bool = Field(
        True, description="Pass each frame's message on to the route's next nodes (its per-frame event)."
    )
    cameras: int = Field(64, ge=1, description="Cameras followed; the least recently seen is flushed first.")
    vehicles_per_camera: int = Field(8, ge=1, description="Vehicles followed at once per camera.")
    max_readings: int = Field(32, ge=1, description="Readings of a vehicle kept for its vote (the latest).")

    @field_validator("topic")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        try:
            check_publish_topic(value.format(base_topic="b", camera_id="c", route="r"))
        except (KeyError, IndexError) as exc:
            raise ValueError(f"{value!r}: only {{base_topic}}, {{camera_id}} and {{route}} ({exc})") from None
        return value


@dataclass
class _Reading:
    candidates: list[tuple[str, float]]
    result: Mapping[str, Any]
    msg: Message


@dataclass
class _Vehicle:
    first: Message
    last: Message
    texts: set[str]
    opened_at: float  # frame time
    last_at: float
    opened_clock: float  # the bridge's clock
    last_clock: float
    readings: list[_Reading] = field(default_factory=list)
    frames: int = 0
    calls: int = 0
    reported: bool = False


def vote(readings: list[list[tuple[str, float]]]) -> str:
    """The plate the readings agree on: the length with the most weight, then per position the character
    with the most weight, over every candidate (text, score) of that length."""
    lengths: Counter[int] = Counter()
    for candidates in readings:
        for text, score in candidates:
            lengths[len(text)] += score
    if not lengths:
        return ""
    length = max(lengths, key=lambda size: (lengths[size], -size))
    voted = []
    for position in range(length):
        chars: Counter[str] = Counter()
        for candidates in readings:
            for text, score in candidates:
                if len(text) == length:
                    chars[text[position]] += score
        voted.append(max(chars, key=lambda char: (chars[char], char)))
    return "".join(voted)


def _candidates(item: Mapping[str, Any]) -> list[tuple[str, float]]:
    found = []
    for candidate in item.get("candidates") or [
        {"plate": item.get("plate", ""), "score": item.get("score", 0)}
    ]:
        if isinstance(candidate, Mapping):
            text = normalize_plate(str(candidate.get("plate", "")))
            if text:
                found.append((text, float(candidate.get("score") or 0.0)))
    top = normalize_plate(str(item.get("plate", "")))
    if top and all(text != top for text, _ in found):
        found.insert(0, (top, float(item.get("score") or 0.0)))
    return found


def _watched(vehicle: _Vehicle, plate: str) -> tuple[dict[str, Any], ...] | None:
    """The watch-list matches of the vehicle's readings of the voted plate, best first, one per entry;
    None when its frames were not matched against watch lists (no watchlist node before this one).
    The vehicle event is what Home Assistant and webhooks act on, so its watched plates must be in it."""
    found: dict[tuple[Any, Any], dict[str, Any]] = {}
    matched = False
    for reading in vehicle.readings:
        matches = reading.msg.watched
        if matches is None:
            continue
        matched = True
        for match in matches:
            if not isinstance(match, Mapping) or normalize_plate(str(match.get("plate", ""))) != plate:
                continue
            key = (match.get("list"), match.get("entry"))
            kept = found.get(key)
            if kept is None or float(match.get("distance") or 0) < float(kept.get("distance") or 0):
                found[key] = {**match, "plate": plate.lower()}
    if not matched:
        return None
    return tuple(sorted(found.values(), key=lambda match: float(match.get("distance") or 0)))


class ConsensusNode(Node):
    """Follows each vehicle (a plate, within `tolerance`) on each camera over its frames and publishes one
    plate event on `topic` when it leaves (no frame with it for `gap` seconds, by the camera's clock when
    its frames carry one, and by the bridge's) or after `max_wait` (then no more for that visit). The
    event carries the voted plate, the best reading's box and vehicle, and what it cost: `frames` (with
    the vehicle in view), `calls` (of them, the ones a paid reader read; the others reused a reading or
    were read offline) and `readings`.
    Frames reusing a reading (`cached`) keep a vehicle in view but do not vote twice.

    Extensions are told of it as a `vehicle` event, and of the route's per-frame plate events as
    superseded: Home Assistant, webhooks and metrics count the vehicle once, when it has left
    (bridge.extensions.base.PublishedEvent). The event keeps the watch-list matches of the voted plate.
    """

    type = "consensus"
    Settings = ConsensusSettings
    settings: ConsensusSettings

    def __init__(self, settings: NodeSettings, context: NodeContext) -> None:
        super().__init__(settings, context)
        self._lock = threading.Lock()
        self._cameras: OrderedDict[Hashable, list[_Vehicle]] = OrderedDict()
        self._stopping = threading.Event()
        self._timer: threading.Thread | None = None
        self._counts: Counter[str] = Counter()
        self.clock: Callable[[], float] = time.monotonic

    def stats(self) -> dict[str, int]:
        """Vehicle events published, and the frames and reader calls they stand for."""
        with self._lock:
            return {f"vehicle_{name}": self._counts[name] for name in ("events", "frames", "calls")}

    def start(self) -> None:
        self._stopping.clear()
        self._timer = threading.Thread(target=self._sweep_until_stopped, name="consensus", daemon=True)
        self._timer.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._timer is not None:
            self._timer.join(5)
        with self._lock:
            left = [
                vehicle for vehicles in self._cameras.values() for vehicle in vehicles if not vehicle.reported
            ]
            self._cameras.clear()
        for vehicle in left:
            self._emit(vehicle, "stopped")

    def process(self, msg: Message) -> Message | None:
        now = (msg.timestamp or msg.received_at).timestamp()
        clock = self.clock()
        fresh = msg.reused is None
        results = (msg.result or {}).get("results")
        due: list[tuple[_Vehicle, CloseReason]] = []
        with self._lock:
            vehicles = self._vehicles_of(msg.camera_id, due)
            due += self._close_due(vehicles, now, clock, camera_clock=True)
            counted: set[int] = set()
            for item in results if isinstance(results, list) else []:
                if not isinstance(item, Mapping) or not normalize_plate(str(item.get("plate", ""))):
                    continue
                vehicle = self._vehicle_for(vehicles, item, msg, now, clock, due)
                if id(vehicle) not in counted:
                    counted.add(id(vehicle))
                    vehicle.frames += 1
                    # A paid call: read now, and not by the offline reader (local first, `local`).
                    vehicle.calls += int(fresh and msg.reader != "local")
                vehicle.last, vehicle.last_at, vehicle.last_clock = msg, max(vehicle.last_at, now), clock
                if fresh:
                    candidates = _candidates(item)
                    vehicle.texts.update(text for text, _ in candidates[:1])
                    vehicle.readings.append(_Reading(candidates, item, msg))
                    del vehicle.readings[: -self.settings.max_readings]
        for vehicle, reason in due:
            self._emit(vehicle, reason)
        return msg if self.settings.per_frame else None

    def _vehicles_of(self, camera: Hashable, due: list[tuple[_Vehicle, CloseReason]]) -> list[_Vehicle]:
        vehicles = self._cameras.pop(camera, None) or []
        self._cameras[camera] = vehicles
        while len(self._cameras) > self.settings.cameras:
            _, forgotten = self._cameras.popitem(last=False)
            due += [(vehicle, "evicted") for vehicle in forgotten if not vehicle.reported]
        return vehicles

    def _vehicle_for(
        self,
        vehicles: list[_Vehicle],
        item: Mapping[str, Any],
        msg: Message,
        now: float,
        clock: float,
        due: list[tuple[_Vehicle, CloseReason]],
    ) -> _Vehicle:
        text = normalize_plate(str(item.get("plate", "")))
        for vehicle in vehicles:
            if any(same_plate(text, known, self.settings.tolerance) for known in vehicle.texts):
                return vehicle
        vehicle = _Vehicle(
            first=msg,
            last=msg,
            texts={text},
            opened_at=now,
            last_at=now,
            opened_clock=clock,
            last_clock=clock,
        )
        vehicles.append(vehicle)
        if len(vehicles) > self.settings.vehicles_per_camera:
            oldest = vehicles.pop(0)
            if not oldest.reported:
                due.append((oldest, "evicted"))
        return vehicle

    def _close_due(
        self, vehicles: list[_Vehicle], now: float, clock: float, *, camera_clock: bool
    ) -> list[tuple[_Vehicle, CloseReason]]:
        """Take out the vehicles that left; return those and the ones whose max_wait is up, to publish."""
        gap, max_wait = self.settings.gap, self.settings.max_wait
        due: list[tuple[_Vehicle, CloseReason]] = []
        for vehicle in list(vehicles):
            left = clock - vehicle.last_clock > gap or (camera_clock and now - vehicle.last_at > gap)
            if left:
                vehicles.remove(vehicle)
                if not vehicle.reported:
                    due.append((vehicle, "left"))
            elif not vehicle.reported and (
                clock - vehicle.opened_clock >= max_wait
                or (camera_clock and now - vehicle.opened_at >= max_wait)
            ):
                vehicle.reported = True
                due.append((vehicle, "max_wait"))
        return due

    def _sweep_until_stopped(self) -> None:
        tick = min(1.0, max(0.05, min(self.settings.gap, self.settings.max_wait) / 4))
        while not self._stopping.wait(tick):
            with self._lock:
                due = [
                    found
                    for vehicles in self._cameras.values()
                    for found in self._close_due(vehicles, 0.0, self.clock(), camera_clock=False)
                ]
            for vehicle, reason in due:
                self._emit(vehicle, reason)

    def _emit(self, vehicle: _Vehicle, reason: CloseReason) -> None:
        if not vehicle.readings:
            return
        try:
            topic, event, msg = self._event(vehicle, reason)
            route = self.context.route
            self.context.publisher.publish(topic, encode(event), qos=route.qos, retain=route.retain)
        except Exception:
            log.exception("route %s: cannot publish a vehicle event", self.context.route.label)
            return
        with self._lock:
            self._counts.update({"events": 1, "frames": vehicle.frames, "calls": vehicle.calls})
        if self.context.on_event is not None:
            self.context.on_event(PublishedEvent("vehicle", topic, event, msg))

    def _event(self, vehicle: _Vehicle, reason: CloseReason) -> tuple[str, dict[str, Any], Message]:
        plate = vote([reading.candidates for reading in vehicle.readings])
        agreeing = [r for r in vehicle.readings if r.candidates and r.candidates[0][0] == plate]
        best = max(agreeing or vehicle.readings, key=lambda r: float(r.result.get("score") or 0.0))
        result = {**best.result, "plate": plate.lower()}
        # The vehicle's own message: the best frame's, without what only that frame had (its reuse,
        # split, source, request/response and metadata).
        msg = best.msg.replace(
            result={**(best.msg.result or {}), "results": [result]},
            watched=_watched(vehicle, plate),
            reused=None,
            split=None,
            origin=None,
            response_topic=None,
            correlation_data=None,
            reading=None,
            metadata={},
        )
        event = plate_event(msg)
        event["plate"] = plate  # as written on the plate; results[0] keeps the reader's lower case
        event["frames"] = vehicle.frames
        event["calls"] = vehicle.calls
        event["first_seen"] = iso_utc(datetime.fromtimestamp(vehicle.opened_at, UTC))
        event["last_seen"] = iso_utc(datetime.fromtimestamp(vehicle.last_at, UTC))
        event["closed"] = reason
        event["readings"] = [
            {
                "timestamp": iso_utc(reading.msg.timestamp or reading.msg.received_at),
                "plate": str(reading.result.get("plate", "")),
                "score": float(reading.result.get("score") or 0.0),
            }
            for reading in vehicle.readings
        ]
        topic = route_topic(self.settings.topic, self.context.base_topic, msg)
        return topic, event, msg
