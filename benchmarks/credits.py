"""Credits: reader calls the bridge makes for a parked car, a passing car and a busy street, against the
one call per frame a naive integration makes.

    .venv/bin/python -m benchmarks.credits            # real time (~2.5 minutes), prints a table
    .venv/bin/python -m benchmarks.credits --fast     # frames as fast as the bridge takes them, with
                                                      # the camera's timestamps: the same decisions
    .venv/bin/python -m benchmarks.credits --write    # also writes the table into BENCHMARKS.md

Frames are made from the real photos of ../shared/data/plates (read in place) when present, else from
examples/images: each frame re-encoded (JPEG quality 85-95), its brightness changed by up to 3 %, sensor
noise added, the camera's clock drawn into it, and for a moving vehicle shifted frame by frame. The
reader is tests/emulator.py's, answering each frame with the plate the scenario says it shows (or a
misread), so the counts are the bridge's decisions only. tests/test_credits.py checks the same counts.
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFont, ImageOps

from benchmarks.frames import SHARED_DIR

ROOT = Path(__file__).resolve().parents[1]
PLATES_DIR = SHARED_DIR / "data" / "plates"
EXAMPLES_DIR = ROOT / "examples" / "images"
FRAME_SIZE = (1280, 720)
FPS = 2.0
START = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
# Where the scenarios' cameras draw their clock: the top-left corner, as most cameras do.
CLOCK_REGION = (0.0, 0.0, 0.45, 0.08)
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
SECTION = "## Credits: reader calls per scenario"


@dataclass(frozen=True)
class Photo:
    image: Image.Image
    plate: str
    source: str
    box: tuple[int, int, int, int] | None = None
    """The plate's box in the photo (x, y, w, h, as labels.tsv has it), when known."""


@dataclass(frozen=True)
class Frame:
    """One camera frame of a scenario: the JPEG, when it was taken, and what a reader would answer."""

    jpeg: bytes
    at: float
    """Seconds since the scenario started (the camera's timestamp)."""
    plate: str | None
    """The vehicle in view (None: nobody)."""
    reading: str | None = None
    """What the reader answers for this frame when it misreads it (None: `plate`)."""
    box: tuple[int, int, int, int] | None = None
    """Where the plate is in the frame (xmin, ymin, xmax, ymax), as a reader would box it."""

    @property
    def read_as(self) -> str | None:
        return self.reading or self.plate

    def envelope(self, camera_id: str) -> bytes:
        """The frame as the bridge's JSON envelope, with the camera's timestamp."""
        taken = START + timedelta(seconds=self.at)
        return json.dumps(
            {
                "image": base64.b64encode(self.jpeg).decode("ascii"),
                "camera_id": camera_id,
                "timestamp": taken.isoformat().replace("+00:00", "Z"),
            }
        ).encode()


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    frames: tuple[Frame, ...]
    route: dict[str, Any] = field(default_factory=dict)

    @property
    def vehicles(self) -> list[str]:
        seen: list[str] = []
        for frame in self.frames:
            if frame.plate and frame.plate not in seen:
                seen.append(frame.plate)
        return seen


def photos(limit: int = 12, folder: Path | None = None) -> list[Photo]:
    """Labelled car photos: `folder`, else ../shared/data/plates when present, else examples/images."""
    for place in (folder, PLATES_DIR, EXAMPLES_DIR) if folder else (PLATES_DIR, EXAMPLES_DIR):
        labels = place / "labels.tsv"
        if not labels.is_file():
            continue
        with labels.open(encoding="utf-8", newline="") as table:
            rows = [row for row in csv.DictReader(table, delimiter="\t") if row.get("plate")]
        found = []
        # Spread over the sorted list so every set (us, eu, br) is in.
        step = max(1, len(rows) // limit)
        for row in rows[::step][:limit]:
            try:
                with Image.open(place / row["image"]) as picture:
                    box = _label_box(row)
                    found.append(Photo(picture.convert("RGB"), row["plate"], str(place), box))
            except OSError:
                continue
        if found:
            return found
    raise FileNotFoundError(f"no labelled photos in {PLATES_DIR} or {EXAMPLES_DIR}")


def _label_box(row: dict[str, str]) -> tuple[int, int, int, int] | None:
    try:
        x, y, w, h = (int(float(row[key])) for key in ("x", "y", "w", "h"))
    except (KeyError, TypeError, ValueError):
        return None
    return (x, y, w, h) if w > 0 and h > 0 else None


def _font(height: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=height)
    except (OSError, ValueError):  # a Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


@lru_cache(maxsize=8)
def _noise(size: tuple[int, int], seed: int) -> Image.Image:
    del seed  # a few different noise pictures, each made once
    return Image.effect_noise(size, 4).convert("RGB")


def camera_frame(scene: Image.Image, at: float, rng: random.Random, *, shift: int = 0) -> bytes:
    """What a live camera sends of `scene` at `at` s: shifted `shift` px (a moving vehicle) and jittered
    by a pixel, brightness within ±3 %, sensor noise, its clock in the top-left corner, JPEG 85-95."""
    return camera_shot(scene, at, rng, shift=shift)[0]


def camera_shot(scene: Image.Image, at: float, rng: random.Random, *, shift: int = 0) -> tuple[bytes, int]:
    """`camera_frame`, and how far from the scene's left edge the frame was cut (for the plate's box)."""
    height = scene.height
    width = round(height * 16 / 9)
    jitter = rng.randint(-1, 1)
    left = max(0, min(scene.width - width, shift + jitter + (scene.width - width) // 2))
    picture = scene.crop((left, 0, left + width, height))
    picture = ImageEnhance.Brightness(picture).enhance(1 + rng.uniform(-0.03, 0.03))
    picture = ImageChops.add(picture, _noise(picture.size, rng.randrange(4)), scale=1.0, offset=-128)
    clock = (START + timedelta(seconds=at)).strftime("%Y-%m-%d %H:%M:%S")
    ImageDraw.Draw(picture).text(
        (12, 10),
        f"{clock}  CAM 1",
        font=_font(height // 22),
        fill=(255, 255, 255),
        stroke_width=2,
        stroke_fill=0,
    )
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=rng.randint(85, 95))
    return out.getvalue(), left


def _stage(photo: Photo, travel: int = 0, height: int = FRAME_SIZE[1]) -> Image.Image:
    """The photo filling a 16:9 frame `height` px high, `travel` px wider so a vehicle can move across it."""
    return _staged(photo, travel, height)[0]


def _staged(
    photo: Photo, travel: int = 0, height: int = FRAME_SIZE[1]
) -> tuple[Image.Image, tuple[float, float, float, float] | None]:
    """`_stage`, and the plate's box in the scene (xmin, ymin, xmax, ymax) when the photo has one."""
    size = (round(height * 16 / 9) + travel, height)
    scene = ImageOps.fit(photo.image, size, Image.Resampling.LANCZOS)
    if photo.box is None:
        return scene, None
    # ImageOps.fit scales the photo to cover `size` and cuts the middle (centring 0.5, 0.5).
    scale = max(size[0] / photo.image.width, size[1] / photo.image.height)
    cut_x = (photo.image.width * scale - size[0]) / 2
    cut_y = (photo.image.height * scale - size[1]) / 2
    x, y, w, h = photo.box
    return scene, (x * scale - cut_x, y * scale - cut_y, (x + w) * scale - cut_x, (y + h) * scale - cut_y)


def _frame_box(
    scene_box: tuple[float, float, float, float] | None, left: int, height: int
) -> tuple[int, int, int, int] | None:
    """The plate's box in a frame cut `left` px from the scene's edge, or None when it is not all in it."""
    if scene_box is None:
        return None
    xmin, ymin, xmax, ymax = scene_box
    width = round(height * 16 / 9)
    box = (round(xmin - left), round(ymin), round(xmax - left), round(ymax))
    return box if box[0] >= 0 and box[1] >= 0 and box[2] <= width and box[3] <= height else None


def parked_car(
    photo: Photo, *, seconds: float = 60.0, height: int = FRAME_SIZE[1], seed: int = 1
) -> Scenario:
    rng = random.Random(seed)
    scene, scene_box = _staged(photo, travel=8, height=height)
    frames = []
    for index in range(round(seconds * FPS)):
        jpeg, left = camera_shot(scene, index / FPS, rng)
        frames.append(Frame(jpeg, index / FPS, photo.plate, box=_frame_box(scene_box, left, height)))
    return Scenario(
        "parked_car", f"parked car: the same scene at {FPS:g} frames/s for {seconds:g} s", tuple(frames)
    )


def misreads(plate: str) -> list[str]:
    """Three different one-character misreads of `plate`, each at another position."""
    swaps = {"0": "D", "1": "7", "2": "Z", "5": "S", "8": "B", "B": "8", "D": "0", "O": "0", "S": "5"}
    wrong = []
    positions = [len(plate) - 1, 1, len(plate) // 2]
    for position in positions:
        char = plate[position]
        replacement = swaps.get(char.upper(), "X" if char.upper() != "X" else "Y")
        wrong.append(plate[:position] + replacement + plate[position + 1 :])
    return wrong


PASSING_MISREAD_FRAMES = (1, 3, 6)


def passing_car(photo: Photo, *, count: int = 10, height: int = FRAME_SIZE[1], seed: int = 2) -> Scenario:
    """`count` frames over count/FPS s of one vehicle moving across the frame (3 % of its width a
    frame); the reader misreads frames 1, 3 and 6, each differently."""
    rng = random.Random(seed)
    step = height // 18
    scene, scene_box = _staged(photo, travel=step * count + 8, height=height)
    wrong = dict(zip(PASSING_MISREAD_FRAMES, misreads(photo.plate), strict=True))
    frames = []
    for index in range(count):
        jpeg, left = camera_shot(scene, index / FPS, rng, shift=index * step - (step * count) // 2)
        frames.append(
            Frame(jpeg, index / FPS, photo.plate, wrong.get(index), _frame_box(scene_box, left, height))
        )
    return Scenario(
        "passing_car", f"passing car: {count} frames over {count / FPS:g} s, 3 of them misread", tuple(frames)
    )


def busy_street(
    pictures: Sequence[Photo],
    *,
    vehicles: int = 10,
    every: float = 2.0,
    height: int = FRAME_SIZE[1],
    seed: int = 3,
) -> Scenario:
    """A different vehicle every `every` s (each moving across the frame), `vehicles` of them."""
    rng = random.Random(seed)
    per_vehicle = round(every * FPS)
    step = height // 18
    frames = []
    for number in range(vehicles):
        photo = pictures[number % len(pictures)]
        scene, scene_box = _staged(photo, travel=step * per_vehicle + 8, height=height)
        for index in range(per_vehicle):
            at = number * every + index / FPS
            shift = index * step - (step * per_vehicle) // 2
            jpeg, left = camera_shot(scene, at, rng, shift=shift)
            frames.append(Frame(jpeg, at, photo.plate, box=_frame_box(scene_box, left, height)))
    return Scenario("busy_street", f"busy street: a different vehicle every {every:g} s", tuple(frames))


DEFAULT_BOX = (500, 400, 640, 440)


def reader_response(
    plate: str | None, right: str | None = None, box: tuple[int, int, int, int] | None = None
) -> dict[str, Any]:
    """A plate-reader answer reading `plate` (none when None) boxed at `box` (the frame's plate, when
    known); a misread lists the `right` plate as the second candidate, as the service often does."""
    xmin, ymin, xmax, ymax = box or DEFAULT_BOX
    if plate is None:
        return {"processing_time": 40.0, "results": [], "filename": "frame.jpg", "version": 1}
    score = 0.86 if right else 0.9
    candidates = [{"plate": plate.lower(), "score": score}]
    if right:
        candidates.append({"plate": right.lower(), "score": 0.8})
    return {
        "processing_time": 40.0,
        "results": [
            {
                "box": {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax},
                "plate": plate.lower(),
                "region": {"code": "gb", "score": 0.9},
                "vehicle": {
                    "type": "Sedan",
                    "score": 0.8,
                    "box": {"xmin": 300, "ymin": 200, "xmax": 900, "ymax": 650},
                },
                "score": score,
                "candidates": candidates,
                "dscore": 0.9,
            }
        ],
        "filename": "frame.jpg",
        "version": 1,
    }


def scenarios(height: int = FRAME_SIZE[1], folder: Path | None = None) -> list[Scenario]:
    """The three scenarios, frames `height` px high (16:9)."""
    pictures = photos(folder=folder)
    return [
        parked_car(pictures[0], height=height),
        passing_car(pictures[1], height=height),
        busy_street(pictures[2:], height=height),
    ]


# --- the run ------------------------------------------------------------------------------------------

CONFIGURATIONS: dict[str, dict[str, Any]] = {
    # The defaults: identical and similar frames reuse a reading (repeat_window 60 s).
    "defaults": {},
    # The gate/driveway recipe of docs/guides/spending-fewer-credits.md: a vehicle in view is read
    # every 1.5 s, and its readings are voted into one vehicle event.
    "vehicle_interval 1.5 + consensus": {
        "reuse": {"vehicle_interval": 1.5},
        "nodes": [{"type": "consensus", "gap": 3.0}],
    },
}


@dataclass
class Outcome:
    frames: int
    calls: int
    vehicles: list[str]
    reported: list[str]

    @property
    def ratio(self) -> float:
        return self.calls / self.frames


def _play(scenario: Scenario, route: dict[str, Any], *, fast: bool) -> Outcome:
    from bridge.config import load_config
    from bridge.mqtt.broker import EmbeddedBroker, pick_port
    from bridge.service import Bridge
    from tests.conftest import Collector
    from tests.emulator import ReaderEmulator

    # A broker of its own per run: amqtt's session bookkeeping trips over clients of earlier runs.
    broker = EmbeddedBroker("127.0.0.1", pick_port("127.0.0.1", 0))
    broker.start()
    broker_port = broker.port
    with ReaderEmulator() as emulator:
        for item in scenario.frames:
            emulator.set_response(
                item.jpeg, reader_response(item.read_as, item.plate if item.reading else None, item.box)
            )
        config = load_config(
            mqtt={"host": "127.0.0.1", "port": broker_port, "client_id": "credits-bench"},
            reader={"url": emulator.url, "max_calls_per_second": None, "concurrency": 2},
            routes=[{"topic": "cameras/+/image", **route}],
            queued_frames_per_camera=500,
        )
        bridge = Bridge(config)
        bridge.start()
        collector = Collector("127.0.0.1", broker_port, ["plate-bridge/#"])
        try:
            started = time.monotonic()
            for item in scenario.frames:
                if not fast:
                    time.sleep(max(0.0, started + item.at - time.monotonic()))
                collector.publish("cameras/street/image", item.envelope("street"))
            collector.wait_for("plate-bridge/street/result", len(scenario.frames), timeout=120)
            if route.get("nodes") and scenario.vehicles:
                # The last vehicle goes out `gap` s after its last frame.
                give_up = time.monotonic() + 30
                while time.monotonic() < give_up and len(collector.on("plate-bridge/street/vehicle")) < len(
                    _visits(scenario)
                ):
                    time.sleep(0.1)
        finally:
            bridge.stop(deadline=5)
            collector.close()
            broker.stop()
        # Vehicle events say the plate as written on it (upper case); the reader answers lower case.
        reported = [event["plate"].lower() for event in collector.on("plate-bridge/street/vehicle")]
        return Outcome(len(scenario.frames), emulator.calls, _visits(scenario), reported)


def _visits(scenario: Scenario) -> list[str]:
    """The plate of each vehicle that passes, in order (a plate coming back later counts again)."""
    visits: list[str] = []
    previous = None
    for item in scenario.frames:
        if item.plate and item.plate != previous:
            visits.append(item.plate.lower())
        previous = item.plate
    return visits


def signature_cost(scenario: Scenario) -> float:
    """Median CPU time of one frame's signature, in milliseconds."""
    from bridge.imaging.signature import signature

    costs = []
    for item in scenario.frames[:40]:
        started = time.process_time()
        signature(item.jpeg)
        costs.append(time.process_time() - started)
    return sorted(costs)[len(costs) // 2] * 1000


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def report(results: dict[str, dict[str, Outcome]], notes: list[str]) -> str:
    names = list(CONFIGURATIONS)
    lines = [
        SECTION,
        "",
        "Measured with `python -m benchmarks.credits` (`tests/test_credits.py` checks the same counts at "
        "640x360). A naive integration makes one reader call per frame; the ratio is the bridge's calls "
        "over those. " + " ".join(notes),
        "",
        "| scenario | frames = naive calls | " + " | ".join(f"bridge, {name}" for name in names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for scenario, outcomes in results.items():
        cells = []
        for name in names:
            outcome = outcomes[name]
            cell = f"{_plural(outcome.calls, 'call')}, **{outcome.ratio:.2f}x**"
            if outcome.reported:
                right = sum((Counter(outcome.vehicles) & Counter(outcome.reported)).values())
                cell += (
                    f"; {_plural(len(outcome.reported), 'vehicle event')}, "
                    f"{right} of {len(outcome.vehicles)} vehicles with the right plate"
                )
            cells.append(cell)
        frames = next(iter(outcomes.values())).frames
        lines.append(f"| {scenario} | {frames} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_section(text: str, path: Path = BENCHMARKS_MD, section: str = SECTION) -> None:
    """Put `text` in BENCHMARKS.md in place of its `section` (the credits one by default), or at the end."""
    document = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmarks\n"
    start = document.find(section)
    text = text.rstrip("\n") + "\n"
    if start < 0:
        document = document.rstrip("\n") + "\n\n" + text
    else:
        end = document.find("\n## ", start + len(section))
        document = document[:start] + text + ("\n" + document[end + 1 :] if end >= 0 else "")
    path.write_text(document, encoding="utf-8")


def _shown(folder: str) -> str:
    """A folder as the report shows it: as the repo sees it, not as this machine does."""
    return {str(PLATES_DIR): "../shared/data/plates", str(EXAMPLES_DIR): "examples/images"}.get(
        folder, folder
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="publish as fast as taken, camera timestamps")
    parser.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    parser.add_argument("--photos", type=Path, default=None, help="a folder of photos with labels.tsv")
    parser.add_argument("--height", type=int, default=FRAME_SIZE[1], help="frame height (16:9)")
    options = parser.parse_args(argv)

    made = time.monotonic()
    chosen = scenarios(options.height, options.photos)
    source = chosen[0].frames and photos(folder=options.photos)[0].source
    width = round(options.height * 16 / 9)
    costs = {scenario.name: signature_cost(scenario) for scenario in chosen}
    notes = [
        f"Frames: {width}x{options.height} JPEGs made from the photos of `{_shown(source)}` in "
        f"{time.monotonic() - made:.0f} s; published {'as fast as taken' if options.fast else 'in real time'}"
        f" at {FPS:g} frames/s of camera time, against the emulator and an embedded broker (amqtt). A frame's"
        f" signature took {min(costs.values()):.1f}-{max(costs.values()):.1f} ms of CPU (median; load"
        f" average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs), on {datetime.now(UTC):%Y-%m-%d}.",
    ]
    results: dict[str, dict[str, Outcome]] = {}
    for scenario in chosen:
        results[scenario.name] = {}
        for name, route in CONFIGURATIONS.items():
            outcome = _play(scenario, route, fast=options.fast)
            results[scenario.name][name] = outcome
            print(f"{scenario.name:12} {name:34} {outcome}", file=sys.stderr, flush=True)
    text = report(results, notes)
    print(text)
    if options.write:
        write_section(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
