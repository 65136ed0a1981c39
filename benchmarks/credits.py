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

import base64
import csv
import io
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFont, ImageOps

ROOT = Path(__file__).resolve().parents[1]
PLATES_DIR = ROOT.parent / "shared" / "data" / "plates"
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
                    found.append(Photo(picture.convert("RGB"), row["plate"], str(place)))
            except OSError:
                continue
        if found:
            return found
    raise FileNotFoundError(f"no labelled photos in {PLATES_DIR} or {EXAMPLES_DIR}")


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
    return out.getvalue()


def _stage(photo: Photo, travel: int = 0, height: int = FRAME_SIZE[1]) -> Image.Image:
    """The photo filling a 16:9 frame `height` px high, `travel` px wider so a vehicle can move across it."""
    size = (round(height * 16 / 9) + travel, height)
    return ImageOps.fit(photo.image, size, Image.Resampling.LANCZOS)


def parked_car(
    photo: Photo, *, seconds: float = 60.0, height: int = FRAME_SIZE[1], seed: int = 1
) -> Scenario:
    rng = random.Random(seed)
    scene = _stage(photo, travel=8, height=height)
    frames = tuple(
        Frame(camera_frame(scene, index / FPS, rng), index / FPS, photo.plate)
        for index in range(round(seconds * FPS))
    )
    return Scenario("parked_car", f"parked car: the same scene at {FPS:g} frames/s for {seconds:g} s", frames)


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
    scene = _stage(photo, travel=step * count + 8, height=height)
    wrong = dict(zip(PASSING_MISREAD_FRAMES, misreads(photo.plate), strict=True))
    frames = tuple(
        Frame(
            camera_frame(scene, index / FPS, rng, shift=index * step - (step * count) // 2),
            index / FPS,
            photo.plate,
            wrong.get(index),
        )
        for index in range(count)
    )
    return Scenario(
        "passing_car", f"passing car: {count} frames over {count / FPS:g} s, 3 of them misread", frames
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
        scene = _stage(photo, travel=step * per_vehicle + 8, height=height)
        for index in range(per_vehicle):
            at = number * every + index / FPS
            shift = index * step - (step * per_vehicle) // 2
            frames.append(Frame(camera_frame(scene, at, rng, shift=shift), at, photo.plate))
    return Scenario("busy_street", f"busy street: a different vehicle every {every:g} s", tuple(frames))


def reader_response(plate: str | None, right: str | None = None) -> dict[str, Any]:
    """A plate-reader answer reading `plate` (none when None); a misread lists the `right` plate as the
    second candidate, as the service often does."""
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
                "box": {"xmin": 500, "ymin": 400, "xmax": 640, "ymax": 440},
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
