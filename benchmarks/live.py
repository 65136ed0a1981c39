"""Live cameras (`python -m benchmarks.live [--smoke]`): vehicles that come, park and leave in front of
cameras sending frames in real time, through each system, against a reader with a plan of 4 calls/s.

    python -m benchmarks.live              # 16 cameras at 5 frames/s, 90 s per system after 30 s of
                                           # warm-up (~7 minutes); writes benchmarks/live_results.json
                                           # and BENCHMARKS.md's section
    python -m benchmarks.live --smoke      # 4 cameras, 20 s after 5 s, results in a temporary folder

Every camera shows an empty scene (a blurred photo: no plate) until a vehicle arrives (one of the
labelled photos of ../shared/data/plates, fitted into the frame with its plate box), parks for some
seconds to a minute and leaves. On every fourth camera a look-alike follows: the same photo, with a plate
drawn over its plate box for both, so the two differ only inside the box. The reader emulator answers
each frame with the plate truly in it and its box in frame coordinates, and 429 beyond 4 calls/s.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import contextlib
import csv
import hashlib
import io
import json
import os
import platform
import random
import shlex
import signal
import socket
import string
import struct
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter

from benchmarks.credits import EXAMPLES_DIR, PLATES_DIR, START, _font, _noise
from benchmarks.measure import percentile
from benchmarks.procs import HOST, Broker, Child, Emulator, cpu_model, cpu_seconds
from benchmarks.systems import BASE_TOPIC, LABELS, SYSTEMS, NodeRed, Target, find_node_red

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "live_results.json"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
SECTION = "## Live cameras"

FRAME_HEIGHT = 540
PLAN_CALLS_PER_SECOND = 4.0
SERVICE_TIME_S = 0.1
LOOKALIKE_EVERY = 4  # cameras 1, 5, 9, 13 see a look-alike arrive after their first vehicle left
# Distinct pictures per scene (noise, brightness, a pixel of shake, the clock, JPEG quality): encoding one
# at 960x540 takes ~10 ms, so not every frame of a 90-s run is its own picture; every frame is still its
# own bytes (a JPEG comment with its number), as a live camera never sends the same bytes twice.
VARIANTS = 25
DRAIN_SECONDS = 15.0
READY_SECONDS = 60.0
EMULATOR_RECORDS = 200_000
PROBE_CAMERA = "probe"


# --- the scenes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Photo:
    """A labelled photo: the picture, its plate and the plate's box (x, y, w, h) in the photo."""

    image: Image.Image
    plate: str
    box: tuple[int, int, int, int]
    region: str


def labelled_photos(folder: Path | None = None) -> tuple[list[Photo], str]:
    """The labelled photos with a plate box, and where they came from: `folder`, else
    ../shared/data/plates, else examples/images (no boxes there: a guessed box low in the middle)."""
    for place in [folder] if folder else [PLATES_DIR, EXAMPLES_DIR]:
        labels = place / "labels.tsv"
        if not labels.is_file():
            continue
        with labels.open(encoding="utf-8", newline="") as table:
            rows = [row for row in csv.DictReader(table, delimiter="\t") if row.get("plate")]
        found = []
        for row in rows:
            try:
                with Image.open(place / row["image"]) as picture:
                    image = picture.convert("RGB")
            except OSError:
                continue
            try:
                box = (int(row["x"]), int(row["y"]), int(row["w"]), int(row["h"]))
            except (KeyError, TypeError, ValueError):
                width, height = image.size
                box = (int(width * 0.4), int(height * 0.62), int(width * 0.2), int(height * 0.08))
            found.append(Photo(image, row["plate"], box, (row.get("set") or "us").lower()))
        if found:
            return found, str(place)
    raise FileNotFoundError(f"no labelled photos in {PLATES_DIR} or {EXAMPLES_DIR}")


@dataclass(frozen=True)
class Scene:
    """What a camera shows: a picture 2 px wider than the frame (for a pixel of shake either way), and
    the plate in it (None: nobody) with its box in the picture's pixels."""

    key: str
    picture: Image.Image
    plate: str | None = None
    box: tuple[int, int, int, int] | None = None
    region: str = "us"


def _fit(photo: Photo, height: int) -> tuple[Image.Image, tuple[int, int, int, int]] | None:
    """The photo scaled and centre-cropped to 16:9 (`height` px high, 2 px extra width), and the plate
    box moved along; None when the box does not fit in the frame whole."""
    width = round(height * 16 / 9) + 2
    scale = max(width / photo.image.width, height / photo.image.height)
    scaled = (max(width, round(photo.image.width * scale)), max(height, round(photo.image.height * scale)))
    left, top = (scaled[0] - width) // 2, (scaled[1] - height) // 2
    picture = photo.image.resize(scaled, Image.Resampling.BILINEAR).crop(
        (left, top, left + width, top + height)
    )
    x, y, w, h = photo.box
    box = (round(x * scale) - left, round(y * scale) - top, round(w * scale), round(h * scale))
    if box[0] < 2 or box[1] < 0 or box[0] + box[2] > width - 2 or box[1] + box[3] > height or box[2] < 8:
        return None
    return picture, box


def _draw_plate(picture: Image.Image, box: tuple[int, int, int, int], plate: str) -> Image.Image:
    """`picture` with a synthetic plate (white, black text) over `box`."""
    drawn = picture.copy()
    x, y, w, h = box
    draw = ImageDraw.Draw(drawn)
    draw.rectangle((x, y, x + w, y + h), fill=(245, 245, 245), outline=(20, 20, 20))
    font = _font(max(8, int(h * 0.7)))
    while font.getlength(plate) > w * 0.92 and getattr(font, "size", 0) > 6:
        font = _font(int(font.size) - 1)  # type: ignore[union-attr]
    draw.text((x + w / 2, y + h / 2), plate, font=font, fill=(10, 10, 10), anchor="mm")
    return drawn


def _background(photo: Photo, height: int) -> Image.Image:
    """An empty street: another photo blurred past recognition and greyed, so no plate is in it."""
    width = round(height * 16 / 9) + 2
    scale = max(width / photo.image.width, height / photo.image.height)
    scaled = (max(width, round(photo.image.width * scale)), max(height, round(photo.image.height * scale)))
    picture = photo.image.resize(scaled, Image.Resampling.BILINEAR).crop((0, 0, width, height))
    blurred = picture.filter(ImageFilter.GaussianBlur(height / 20))
    return ImageEnhance.Color(blurred).enhance(0.3)


def _lookalike_plate(plate: str, rng: random.Random) -> str:
    """A different plate of the same length and shape (letters stay letters, digits stay digits)."""
    while True:
        made = "".join(
            rng.choice(string.digits)
            if char.isdigit()
            else rng.choice(string.ascii_uppercase)
            if char.isalpha()
            else char
            for char in plate
        )
        if made != plate:
            return made


# --- the timeline -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Visit:
    """A vehicle at a camera from frame `first` to frame `last` (inclusive)."""

    number: int
    camera: int
    plate: str
    scene: str
    first: int
    last: int
    lookalike_of: int | None = None


@dataclass
class Workload:
    """The run planned ahead: per camera, the scene of each frame; the visits; the scenes."""

    cameras: int
    fps: float
    frames_per_camera: int
    warmup_frames: int  # the first frames of every camera: an empty street, not measured
    timeline: list[list[str]]  # camera -> scene key per frame
    visits: list[Visit]
    scenes: dict[str, Scene]
    source: str
    generation_s: float = 0.0
    variants: dict[str, list[tuple[bytes, dict[str, Any]]]] = field(default_factory=dict)

    def frame(self, camera: int, index: int) -> bytes:
        """The JPEG camera `camera` sends as its frame `index`: its own bytes, one of its scene's pictures."""
        jpeg, _ = self._variant(camera, index)
        return _tagged(jpeg, f"cam{camera + 1} frame {index}".encode())

    def answer(self, camera: int, index: int) -> dict[str, Any]:
        """The reader's answer to that frame, with the frame's name (`frame`: "camera:index"), which the
        relay and Node-RED pass on as it is (the bridge's events say when the frame came instead)."""
        _, answer = self._variant(camera, index)
        return {**answer, "frame": f"{camera}:{index}"}

    def _variant(self, camera: int, index: int) -> tuple[bytes, dict[str, Any]]:
        choices = self.variants[self.timeline[camera][index]]
        return choices[(index + 7 * camera) % len(choices)]


def _tagged(jpeg: bytes, text: bytes) -> bytes:
    """`jpeg` with a comment segment (COM) holding `text` after its first segment: other bytes, the same
    picture."""
    position = 2
    if jpeg[2:4] == b"\xff\xe0":  # after the JFIF header, where decoders expect it
        position = 4 + struct.unpack(">H", jpeg[4:6])[0]
    return jpeg[:position] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + jpeg[position:]


@dataclass
class _Camera:
    """One camera's timeline as it is planned: the scene of each frame, and the visits so far (shared)."""

    number: int
    empty: str
    visits: list[Visit]
    line: list[str] = field(default_factory=list)

    def wait(self, count: int) -> None:
        self.line.extend([self.empty] * count)

    def park(self, scene: Scene, count: int, lookalike_of: int | None = None) -> Visit:
        assert scene.plate is not None
        first = len(self.line)
        visit = Visit(
            len(self.visits), self.number, scene.plate, scene.key, first, first + count - 1, lookalike_of
        )
        self.visits.append(visit)
        self.line.extend([scene.key] * count)
        return visit


def plan(
    photos: list[Photo],
    *,
    cameras: int,
    fps: float,
    seconds: float,
    height: int,
    lookalike_gap: float,
    seed: int,
    source: str,
    warmup: float = 0.0,
) -> Workload:
    """Each camera's timeline: `warmup` s of empty street (not measured), then empty street, then
    vehicles parking 5-60 s with 3-12 s of empty street between them; every LOOKALIKE_EVERY-th camera
    starts with a look-alike pair `lookalike_gap` s apart. Every vehicle leaves before the end."""
    rng = random.Random(seed)
    usable = [(photo, fitted) for photo in photos if (fitted := _fit(photo, height)) is not None]
    if len(usable) < 2:
        raise ValueError("fewer than two photos have their plate box inside a 16:9 frame")
    rng.shuffle(usable)
    pool = iter(usable * (1 + 40 * cameras // len(usable)))
    scenes: dict[str, Scene] = {}
    visits: list[Visit] = []
    warmup_frames = round(warmup * fps)
    total = warmup_frames + int(seconds * fps)

    def frames(duration: float) -> int:
        return max(1, round(duration * fps))

    def add(scene: Scene) -> Scene:
        scenes[scene.key] = scene
        return scene

    timeline: list[list[str]] = []
    for number in range(cameras):
        background, _ = next(pool)
        empty = add(Scene(f"cam{number + 1}-empty", _background(background, height)))
        camera = _Camera(number, empty.key, visits)
        camera.wait(warmup_frames + frames(rng.uniform(0.6, 4.0)))
        room = total - len(camera.line) - frames(lookalike_gap) - frames(0.6)
        dwell = min(frames(rng.uniform(8, 20)), room // 2)
        if number % LOOKALIKE_EVERY == 0 and dwell >= frames(1.5):
            photo, (picture, box) = next(pool)
            twin = _lookalike_plate(photo.plate, rng)
            drawn = _draw_plate(picture, box, photo.plate)
            earlier = camera.park(add(Scene(f"v{len(visits)}", drawn, photo.plate, box, photo.region)), dwell)
            camera.wait(frames(lookalike_gap))
            drawn = _draw_plate(picture, box, twin)
            camera.park(add(Scene(f"v{len(visits)}", drawn, twin, box, photo.region)), dwell, earlier.number)
            camera.wait(frames(rng.uniform(3, 12)))
        while total - len(camera.line) >= frames(4.0):
            photo, (picture, box) = next(pool)
            scene = add(Scene(f"v{len(visits)}", picture, photo.plate, box, photo.region))
            camera.park(scene, min(frames(rng.uniform(5, 60)), total - len(camera.line) - frames(0.6)))
            camera.wait(frames(rng.uniform(3, 12)))
        timeline.append((camera.line + [empty.key] * total)[:total])
    return Workload(cameras, fps, total, warmup_frames, timeline, visits, scenes, source)


def answer(scene: Scene, left: int, width: int, height: int) -> dict[str, Any]:
    """The plate-reader answer for a frame of `scene` cropped at `left`: its plate and box, or none."""
    if scene.plate is None or scene.box is None:
        return {"processing_time": 41.2, "results": [], "filename": "frame.jpg", "version": 1}
    x, y, w, h = scene.box
    x -= left
    plate = scene.plate.lower()
    vehicle = {
        "xmin": max(0, x - 3 * w),
        "ymin": max(0, y - 4 * h),
        "xmax": min(width - 1, x + 4 * w),
        "ymax": min(height - 1, y + 2 * h),
    }
    return {
        "processing_time": 63.4,
        "results": [
            {
                "box": {"xmin": x, "ymin": y, "xmax": x + w, "ymax": y + h},
                "plate": plate,
                "region": {"code": scene.region if scene.region in ("us", "br") else "eu", "score": 0.91},
                "vehicle": {"type": "Sedan", "score": 0.82, "box": vehicle},
                "score": 0.902,
                "candidates": [{"plate": plate, "score": 0.902}],
                "dscore": 0.86,
            }
        ],
        "filename": "frame.jpg",
        "version": 1,
    }


def render(workload: Workload, variants: int, seed: int) -> None:
    """Encode `variants` camera pictures of every scene, each with its reader answer."""
    rng = random.Random(seed + 1)
    started = time.monotonic()
    for key, scene in workload.scenes.items():
        items = []
        for number in range(variants):
            at = number / workload.fps
            width = scene.picture.width - 2
            left = rng.randint(0, 2)
            picture = scene.picture.crop((left, 0, left + width, scene.picture.height))
            picture = ImageEnhance.Brightness(picture).enhance(1 + rng.uniform(-0.03, 0.03))
            picture = ImageChops.add(picture, _noise(picture.size, rng.randrange(4)), scale=1.0, offset=-128)
            clock = (START + timedelta(seconds=at)).strftime("%Y-%m-%d %H:%M:%S")
            ImageDraw.Draw(picture).text(
                (12, 10),
                clock,
                font=_font(picture.height // 22),
                fill=(255, 255, 255),
                stroke_width=2,
                stroke_fill=0,
            )
            out = io.BytesIO()
            picture.save(out, "JPEG", quality=rng.randint(80, 90))
            items.append((out.getvalue(), answer(scene, left, width, picture.height)))
        workload.variants[key] = items
    workload.generation_s = time.monotonic() - started


# --- the cameras --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """A system's event for camera `camera`'s frame `index` (None: it names no frame, as a 429 passed
    on does not), when it came (time.monotonic()), and its top plate."""

    camera: int
    index: int | None
    received: float
    plate: str | None
    error: str | None
    """What kind of error the event is (None: a reading): the bridge's error code, `http_<status>` for
    the relay's, `reader_answer` for a reader body without `results` (a 429 passed on as it came)."""


def read_event(payload: bytes, on_error_topic: bool) -> tuple[dict[str, Any], str | None, str | None]:
    """The event, the plate of its best-scored result (None: no plate), and what error it is (None: a
    reading)."""
    try:
        event = json.loads(payload)
    except ValueError:
        return {}, None, "not_json"
    if not isinstance(event, dict):
        return {}, None, "not_json"
    results = event.get("results")
    if on_error_topic or not isinstance(results, list):
        kind = event.get("code") or (f"http_{event['status_code']}" if "status_code" in event else None)
        return event, None, str(kind or "reader_answer")
    best = max(results, key=lambda result: result.get("score") or 0, default=None)
    plate = best.get("plate") if isinstance(best, dict) else None
    return event, (normal(plate) if isinstance(plate, str) else None), None


def normal(plate: str) -> str:
    return "".join(char for char in plate.upper() if char.isalnum())


class LiveCameras:
    """The workload's cameras on one MQTT connection, each sending its frames at `fps` in real time (the
    cameras spread over a frame period, as real ones are not in step).

    Each `{base}/camN/result|error` event is put on the frame it answers, not on the oldest unanswered
    one: the bridge answers a frame it drops at once, before the frames ahead of it, and the relay's and
    Node-RED's answers overtake each other. The bridge's events say when the frame arrived
    (`received_at`): the frame is the camera's last one published by then. The relay and Node-RED pass the
    reader's answer on as it is, and the emulator's answer names its frame (`frame`). An answer that
    names no frame (a 429 passed on) is counted, on no frame."""

    def __init__(self, broker_port: int, workload: Workload) -> None:
        self.workload = workload
        self._port = broker_port
        self._lock = threading.Lock()
        self.published: list[list[float]] = [[] for _ in range(workload.cameras)]
        self._published_wall: list[list[float]] = [[] for _ in range(workload.cameras)]
        self.events: list[Event] = []
        self.unexpected = 0
        self._probe_events = 0
        self._probe_answered = threading.Event()
        self._subscribed = threading.Event()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-live-{os.getpid()}")
        self._client.max_inflight_messages_set(65535)
        self._client.on_socket_open = lambda _client, _userdata, sock: sock.setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        self._client.on_connect = lambda client, *_: client.subscribe(
            [(f"{BASE_TOPIC}/+/result", 0), (f"{BASE_TOPIC}/+/error", 0)]
        )
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_event

    def connect(self, timeout: float = 10.0) -> LiveCameras:
        self._client.connect(HOST, self._port)
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            self.close()
            raise TimeoutError(f"no SUBACK from the broker on {HOST}:{self._port} within {timeout:g} s")
        return self

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def probe(self, alive: Callable[[], bool], timeout: float) -> None:
        """A frame of an empty street every 0.5 s until the system answers one, then 1 s of quiet."""
        frame = base64.b64encode(self.workload.frame(0, 0))
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            if not alive():
                raise RuntimeError("the system exited before it answered a frame")
            self._client.publish(f"cameras/{PROBE_CAMERA}/image", frame, qos=1)
            if self._probe_answered.wait(0.5):
                time.sleep(1.0)
                return
        raise TimeoutError(f"the system answered no probe frame within {timeout:g} s")

    def play(self, stop: threading.Event, on_measure: Callable[[], None]) -> None:
        """Send every camera's frames on time (returns when the last went out), calling `on_measure` as
        the first frame after the warm-up goes out."""
        workload = self.workload
        period = 1 / workload.fps
        started = time.monotonic() + 0.2
        for index in range(workload.frames_per_camera):
            if index == workload.warmup_frames:
                on_measure()
            for camera in range(workload.cameras):
                delay = started + index * period + camera * period / workload.cameras - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    return
                payload = base64.b64encode(workload.frame(camera, index))
                with self._lock:
                    self.published[camera].append(time.monotonic())
                    self._published_wall[camera].append(time.time())
                self._client.publish(f"cameras/cam{camera + 1}/image", payload, qos=1)

    @property
    def unanswered(self) -> int:
        with self._lock:
            return sum(len(times) for times in self.published) - len(self.events)

    def _frame_of(self, camera: int, event: dict[str, Any]) -> int | None:
        arrived = event.get("received_at")
        if isinstance(arrived, str):
            try:
                moment = datetime.fromisoformat(arrived.replace("Z", "+00:00")).timestamp()
            except ValueError:
                return None
            # received_at has millisecond precision; frames of a camera are 1/fps apart.
            position = bisect.bisect_right(self._published_wall[camera], moment + 0.002) - 1
            return position if position >= 0 else None
        name = event.get("frame")
        if (
            isinstance(name, str)
            and name.partition(":")[0] == str(camera)
            and name.partition(":")[2].isdigit()
        ):
            return int(name.partition(":")[2])
        return None

    def _on_event(self, _client: paho.Client, _userdata: object, message: paho.MQTTMessage) -> None:
        received = time.monotonic()
        levels = message.topic.split("/")
        name = levels[1] if len(levels) == 3 else ""
        if name == PROBE_CAMERA:
            self._probe_events += 1
            self._probe_answered.set()
            return
        camera = int(name[3:]) - 1 if name.startswith("cam") and name[3:].isdigit() else -1
        event, plate, error = read_event(message.payload, levels[2] == "error")
        with self._lock:
            if not 0 <= camera < len(self.published):
                self.unexpected += 1
                return
            self.events.append(Event(camera, self._frame_of(camera, event), received, plate, error))


# --- one system ---------------------------------------------------------------------------------------


@dataclass
class Context:
    run_dir: Path
    broker: Broker
    emulator: Emulator
    node_red: NodeRed | str
    digests: dict[str, str]
    answers: dict[str, dict[str, Any]]


def _start(name: str, context: Context) -> Child:
    from benchmarks import systems

    target = Target(context.broker.port, context.emulator.url)
    folder = context.run_dir / name
    folder.mkdir(exist_ok=True)
    if name == "bridge":
        return systems.bridge_as_shipped(target, folder).start()
    if name == "relay":
        return systems.relay(target, folder).start()
    if isinstance(context.node_red, str):
        raise RuntimeError(context.node_red)
    return systems.nodered(target, context.node_red, folder).start()


def measure(name: str, workload: Workload, context: Context) -> dict[str, Any]:
    """Play the workload through system `name` and score what came back after the warm-up."""
    with contextlib.ExitStack() as stack:
        launched = time.monotonic()
        child = _start(name, context)
        stack.callback(child.stop)
        cameras = LiveCameras(context.broker.port, workload).connect()
        stack.callback(cameras.close)
        try:
            cameras.probe(child.alive, READY_SECONDS)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}; its log ends with:\n{child.log_tail()}") from None
        startup_s = time.monotonic() - launched
        context.emulator.reset()
        context.emulator.set_responses(context.answers, context.digests)
        mark: dict[str, float] = {}

        def on_measure() -> None:
            mark.update(
                at=time.monotonic(),
                system=cpu_seconds(child.pid),
                emulator=cpu_seconds(context.emulator.pid),
            )

        stop = threading.Event()
        stack.callback(stop.set)
        cameras.play(stop, on_measure)
        played = time.monotonic()
        give_up = played + DRAIN_SECONDS
        while cameras.unanswered and time.monotonic() < give_up:
            time.sleep(0.05)
        drained = time.monotonic()
        cpu = {
            "system": cpu_seconds(child.pid) - mark["system"],
            "emulator": cpu_seconds(context.emulator.pid) - mark["emulator"],
        }
        calls = context.emulator.reader_calls()
        exit_code = child.stop()
    figures = score(workload, cameras, mark["at"])
    frames = figures["frames_published"]
    vehicles = figures["vehicles"]
    statuses = [status for at, status in zip(calls.arrivals, calls.statuses, strict=True) if at >= mark["at"]]
    answered = statuses.count(200)
    figures.update(
        startup_s=round(startup_s, 2),
        measured_s=round(played - mark["at"], 2),
        drained_s=round(drained - played, 2),
        reader_calls=len(statuses),
        reader_answered_200=answered,
        reader_429=statuses.count(429),
        reader_calls_complete=len(calls.arrivals) >= calls.calls,
        calls_per_vehicle=round(len(statuses) / vehicles, 2) if vehicles else None,
        answered_calls_per_vehicle=round(answered / vehicles, 2) if vehicles else None,
        cpu_ms_per_frame=round(cpu["system"] / frames * 1000, 3) if frames else None,
        emulator_cpu_pct=round(100 * cpu["emulator"] / max(drained - mark["at"], 1e-9), 1),
        exit_code=exit_code,
    )
    return figures


def score(workload: Workload, cameras: LiveCameras, measured_from: float) -> dict[str, Any]:
    """Vehicles read, wrong plates and the rest, from the events on the frames after the warm-up (an
    event that names no frame counts when it came after the warm-up)."""
    visit_at: list[list[Visit | None]] = [
        [None] * workload.frames_per_camera for _ in range(workload.cameras)
    ]
    for visit in workload.visits:
        for index in range(visit.first, visit.last + 1):
            visit_at[visit.camera][index] = visit
    events = [
        event
        for event in cameras.events
        if (
            event.index >= workload.warmup_frames
            if event.index is not None
            else event.received >= measured_from
        )
    ]
    first_correct: dict[int, float] = {}
    wrong_by_visit: Counter[int] = Counter()
    error_kinds: Counter[str] = Counter()
    counts = {
        "error_events": 0,
        "wrong_plate_events": 0,
        "plate_events_on_empty_street": 0,
        "no_plate_events_on_vehicles": 0,
        "readings_on_no_frame": 0,
    }
    for event in events:
        if event.error:
            counts["error_events"] += 1
            error_kinds[event.error] += 1
            continue
        visit = visit_at[event.camera][event.index] if event.index is not None else None
        if event.index is None:
            counts["readings_on_no_frame"] += 1
        elif visit is None:
            counts["plate_events_on_empty_street"] += event.plate is not None
        elif event.plate == normal(visit.plate):
            first_correct[visit.number] = min(first_correct.get(visit.number, event.received), event.received)
        elif event.plate is None:
            counts["no_plate_events_on_vehicles"] += 1
        else:
            counts["wrong_plate_events"] += 1
            wrong_by_visit[visit.number] += 1
    delays = sorted(
        (first_correct[visit.number] - cameras.published[visit.camera][visit.first]) * 1000
        for visit in workload.visits
        if visit.number in first_correct and visit.first < len(cameras.published[visit.camera])
    )
    lookalikes = [visit for visit in workload.visits if visit.lookalike_of is not None]
    return {
        "vehicles": len(workload.visits),
        "vehicles_read": len(first_correct),
        "lookalikes": len(lookalikes),
        "lookalikes_read": sum(1 for visit in lookalikes if visit.number in first_correct),
        "vehicles_with_wrong_plate_events": len(wrong_by_visit),
        **counts,
        "error_kinds": dict(error_kinds.most_common()),
        "first_correct_ms": {
            "samples": len(delays),
            **(
                {
                    "p50": round(percentile(delays, 0.5), 1),
                    "p95": round(percentile(delays, 0.95), 1),
                    "max": round(delays[-1], 1),
                }
                if delays
                else {}
            ),
        },
        "frames_published": sum(max(0, len(times) - workload.warmup_frames) for times in cameras.published),
        "events": len(events),
        "frames_published_in_all": sum(len(times) for times in cameras.published),
        "events_in_all": len(cameras.events),
        "unanswered": cameras.unanswered,
        "unexpected_events": cameras.unexpected,
        "per_vehicle": [
            {
                "camera": f"cam{visit.camera + 1}",
                "plate": visit.plate,
                "seconds": round((visit.last - visit.first + 1) / workload.fps, 1),
                "lookalike_of": visit.lookalike_of,
                "read": visit.number in first_correct,
                "wrong_plate_events": wrong_by_visit[visit.number],
            }
            for visit in workload.visits
        ],
    }


# --- the report ---------------------------------------------------------------------------------------


def _fraction(done: int, of: int) -> str:
    return f"{done} / {of}" if of else "-"


ROWS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("vehicles read correctly / came", lambda f: _fraction(f["vehicles_read"], f["vehicles"])),
    ("look-alikes read correctly / came", lambda f: _fraction(f["lookalikes_read"], f["lookalikes"])),
    (
        "**wrong-plate events** (vehicles with one)",
        lambda f: f"**{f['wrong_plate_events']}** ({f['vehicles_with_wrong_plate_events']})",
    ),
    ("plate events on an empty street", lambda f: str(f["plate_events_on_empty_street"])),
    (
        "reader calls per vehicle (answered 200)",
        lambda f: f"{f['calls_per_vehicle']} ({f['answered_calls_per_vehicle']})",
    ),
    ("first frame → first correct event, p50 (ms)", lambda f: str(f["first_correct_ms"].get("p50", "-"))),
    ("first frame → first correct event, p95 (ms)", lambda f: str(f["first_correct_ms"].get("p95", "-"))),
    ("CPU ms per frame", lambda f: f"{f['cpu_ms_per_frame']:.2f}"),
    ("429s the reader answered", lambda f: f"{f['reader_429']:,}"),
    ("error events", lambda f: f"{f['error_events']:,}"),
    ("frames published / events", lambda f: f"{f['frames_published']:,} / {f['events']:,}"),
]


def _cell(figures: dict[str, Any], row: Callable[[dict[str, Any]], str]) -> str:
    if "skipped" in figures:
        return "skipped"
    if "error" in figures:
        return "failed"
    return row(figures)


def report(results: dict[str, Any]) -> str:
    """The `## Live cameras` section of BENCHMARKS.md."""
    setting, workload = results["settings"], results["workload"]
    machine = results["machine"]
    names = list(results["systems"])
    lines = [
        SECTION,
        "",
        f"Measured with `{results['command']}` on {results['generated_at']} ({results['mode']} mode): "
        f"{setting['cameras']} cameras at {setting['fps']:g} frames/s for {setting['seconds']:g} s per "
        f"system after {setting['warmup_s']:g} s of empty street (not measured), in real time, "
        f"{workload['vehicles']} vehicles ({workload['lookalikes']} look-alikes "
        f"{setting['lookalike_gap_s']:g} s after a vehicle of the same photo left); the reader takes "
        f"{setting['service_time_ms']:g} ms a call and answers 429 beyond "
        f"{setting['plan_calls_per_second']:g} calls/s. {machine['cpus']} CPUs ({machine['cpu_model']}), "
        f"load average {machine['load_average']} at the start and {machine.get('load_average_end', '-')} at "
        f"the end; frames {workload['frame']}, made in {workload['generation_s']:g} s before the runs; "
        f"{results.get('elapsed_s', '-')} s in all. The bridge runs with its defaults; what each figure "
        "means is in [benchmarks/README.md](benchmarks/README.md#live-cameras).",
        "",
        "| measure | " + " | ".join(LABELS[name] for name in names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for label, row in ROWS:
        lines.append(
            f"| {label} | " + " | ".join(_cell(results["systems"][name], row) for name in names) + " |"
        )
    notes = list(results["notes"])
    notes += [
        f"{LABELS[name]}: {figures.get('skipped') or figures['error'].splitlines()[0]}"
        for name, figures in results["systems"].items()
        if "skipped" in figures or "error" in figures
    ]
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


# --- the command --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.live", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--smoke", action="store_true", help="4 cameras for 20 s, results in a temporary folder"
    )
    parser.add_argument("--cameras", type=int, help="cameras (default 16; 4 with --smoke)")
    parser.add_argument(
        "--seconds", type=float, help="seconds of frames per system (default 90; 20 with --smoke)"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        help="seconds of empty street first, not measured, as cameras that were running before (default 30; "
        "5 with --smoke)",
    )
    parser.add_argument("--fps", type=float, default=5.0, help="frames per second of each camera")
    parser.add_argument(
        "--lookalike-gap", type=float, default=6.0, help="seconds between a vehicle and its look-alike"
    )
    parser.add_argument(
        "--variants", type=int, help=f"pictures per scene (default {VARIANTS}; 10 with --smoke)"
    )
    parser.add_argument("--height", type=int, default=FRAME_HEIGHT, help="frame height in px (16:9)")
    parser.add_argument("--seed", type=int, default=20, help="seed of the timeline and the pictures")
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help="comma-separated, of: bridge,relay,nodered"
    )
    parser.add_argument(
        "--photos", type=Path, help="a folder of photos with labels.tsv (set image plate x y w h)"
    )
    parser.add_argument(
        "--no-install", action="store_true", help="do not npm-install Node-RED (skip it unless cached)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="folder for live_results.json and a BENCHMARKS.md (default: benchmarks/live_results.json and "
        "the repo's BENCHMARKS.md; with --smoke a temporary folder, so real figures are never overwritten)",
    )
    args = parser.parse_args(argv)
    args.cameras = args.cameras or (4 if args.smoke else 16)
    args.seconds = args.seconds or (20.0 if args.smoke else 90.0)
    args.variants = args.variants or (10 if args.smoke else VARIANTS)
    args.warmup = args.warmup if args.warmup is not None else (5.0 if args.smoke else 30.0)
    if min(args.cameras, args.seconds, args.fps, args.variants, args.height) <= 0 or args.lookalike_gap < 0:
        parser.error("--cameras, --seconds, --fps, --variants and --height must be positive")
    unknown = set(args.systems.split(",")) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown system(s): {', '.join(sorted(unknown))}")
    return args


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through every `finally` that stops a child


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    command = shlex.join(["python", "-m", "benchmarks.live", *(argv if argv is not None else sys.argv[1:])])
    out_dir = args.out or (Path(tempfile.mkdtemp(prefix="plate-bridge-live-")) if args.smoke else None)
    results_path = out_dir / "live_results.json" if out_dir else RESULTS
    report_path = out_dir / "BENCHMARKS.md" if out_dir else BENCHMARKS_MD
    load = os.getloadavg()[0]
    started = time.monotonic()
    photos, source = labelled_photos(args.photos)
    workload = plan(
        photos,
        cameras=args.cameras,
        fps=args.fps,
        seconds=args.seconds,
        height=args.height,
        lookalike_gap=args.lookalike_gap,
        seed=args.seed,
        source=source,
        warmup=args.warmup,
    )
    render(workload, args.variants, args.seed)
    frames = [
        (camera, index) for camera in range(workload.cameras) for index in range(workload.frames_per_camera)
    ]
    digests = {
        hashlib.sha256(workload.frame(*frame)).hexdigest(): f"{frame[0]}:{frame[1]}" for frame in frames
    }
    answers = {f"{frame[0]}:{frame[1]}": workload.answer(*frame) for frame in frames}
    sizes = [len(jpeg) for items in workload.variants.values() for jpeg, _ in items]
    print(
        f"{len(workload.visits)} vehicles on {workload.cameras} cameras; {len(sizes)} pictures made in "
        f"{workload.generation_s:.1f} s, {len(digests)} frames",
        file=sys.stderr,
        flush=True,
    )
    names = [name for name in SYSTEMS if name in args.systems.split(",")]
    notes: list[str] = []
    if source != str(PLATES_DIR):
        notes.append(f"photos from {source}, not {PLATES_DIR}: plate boxes guessed where labels.tsv has none")
    node_red = find_node_red(install=not (args.smoke or args.no_install)) if "nodered" in names else ""
    width = round(args.height * 16 / 9)
    results: dict[str, Any] = {
        "command": command,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "smoke" if args.smoke else "full",
        "machine": {
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model(),
            "python": platform.python_version(),
            "load_average": round(load, 2),
            "node_red": getattr(node_red, "version", None),
        },
        "settings": {
            "cameras": args.cameras,
            "fps": args.fps,
            "seconds": args.seconds,
            "warmup_s": args.warmup,
            "lookalike_gap_s": args.lookalike_gap,
            "service_time_ms": SERVICE_TIME_S * 1000,
            "plan_calls_per_second": PLAN_CALLS_PER_SECOND,
            "variants_per_scene": args.variants,
            "seed": args.seed,
            "bridge_config": "defaults (mqtt host/port and reader.url only)",
        },
        "workload": {
            "vehicles": len(workload.visits),
            "lookalikes": sum(1 for visit in workload.visits if visit.lookalike_of is not None),
            "frames_per_system": len(digests),
            "frames_measured_per_system": workload.cameras
            * (workload.frames_per_camera - workload.warmup_frames),
            "frame": f"{width}x{args.height} JPEG, mean {sum(sizes) / len(sizes) / 1000:.0f} kB",
            "photos": source,
            "generation_s": round(workload.generation_s, 1),
        },
        "notes": notes,
        "systems": {},
    }
    with tempfile.TemporaryDirectory(prefix="plate-bridge-live-") as folder:
        try:
            _run_all(results, names, workload, (digests, answers), node_red, Path(folder))
        except KeyboardInterrupt:
            print("\ninterrupted: every child process was stopped; no results written", file=sys.stderr)
            return 130
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    # Other programs on the machine slow every system: the run's own load is in the end figure too.
    results["machine"]["load_average_end"] = round(os.getloadavg()[0], 2)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    from benchmarks.credits import write_section

    text = report(results)
    write_section(text, report_path, SECTION)
    print(text, file=sys.stderr)
    print(f"results: {results_path}\nreport: {report_path}", file=sys.stderr)
    return 1 if any("error" in figures for figures in results["systems"].values()) else 0


def _run_all(
    results: dict[str, Any],
    names: list[str],
    workload: Workload,
    registered: tuple[dict[str, str], dict[str, dict[str, Any]]],
    node_red: NodeRed | str,
    run_dir: Path,
) -> None:
    digests, answers = registered
    broker = Broker(run_dir)
    emulator = Emulator(EMULATOR_RECORDS, fast=False, max_calls_per_second=PLAN_CALLS_PER_SECOND)
    with contextlib.ExitStack() as stack:
        broker.start()
        stack.callback(broker.stop)
        emulator.start()
        stack.callback(emulator.stop)
        emulator.set_service_time(SERVICE_TIME_S)
        results["machine"]["broker"] = broker.version
        context = Context(run_dir, broker, emulator, node_red, digests, answers)
        for name in names:
            if name == "nodered" and isinstance(node_red, str):
                results["systems"][name] = {"skipped": node_red}
                print(f"{LABELS[name]}: skipped ({node_red})", file=sys.stderr, flush=True)
                continue
            print(f"{LABELS[name]} ...", file=sys.stderr, flush=True)
            began = time.monotonic()
            try:
                figures = measure(name, workload, context)
            except (RuntimeError, TimeoutError, OSError) as exc:
                figures = {"error": str(exc)}
            results["systems"][name] = figures
            print(f"  {_summary(figures)} [{time.monotonic() - began:.1f} s]", file=sys.stderr, flush=True)


def _summary(figures: dict[str, Any]) -> str:
    if "error" in figures:
        return f"FAILED: {figures['error'].splitlines()[0]}"
    return (
        f"{figures['vehicles_read']}/{figures['vehicles']} vehicles read, {figures['wrong_plate_events']} "
        f"wrong-plate events, {figures['calls_per_vehicle']} calls/vehicle, {figures['reader_429']} 429s, "
        f"first correct p50 {figures['first_correct_ms'].get('p50')} ms, "
        f"{figures['cpu_ms_per_frame']} CPU ms/frame"
    )


if __name__ == "__main__":
    sys.exit(main())
