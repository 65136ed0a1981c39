"""Camera frames for the workload: real photos from shared/data/plates, or synthetic JPEGs without it."""

from __future__ import annotations

import base64
import io
import os
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

# The repo sits beside shared/ (…/main and …/shared); the photos are read in place, never copied. A checkout
# elsewhere names it in PLATE_BRIDGE_SHARED, as the tests do.
SHARED_DIR = Path(
    os.environ.get("PLATE_BRIDGE_SHARED") or Path(__file__).resolve().parents[1].parent / "shared"
)
PLATES_DIR = SHARED_DIR / "data" / "plates"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
SYNTHETIC_SIZE = (1280, 720)


@dataclass(frozen=True)
class FrameSet:
    """Payloads as cameras publish them (base64 text of a JPEG or PNG), and where they came from."""

    name: str
    payloads: tuple[bytes, ...]
    source: str

    def describe(self) -> dict[str, object]:
        sizes = [len(payload) for payload in self.payloads]
        return {
            "frames": len(sizes),
            "mean_kb": round(sum(sizes) / len(sizes) / 1000, 1),
            "min_kb": round(min(sizes) / 1000, 1),
            "max_kb": round(max(sizes) / 1000, 1),
            "source": self.source,
        }


def _photos(limit: int, min_bytes: int = 0) -> list[Path]:
    """Up to `limit` photos of at least `min_bytes`, spread evenly over the sorted list, so every set
    (us, eu, br) is in."""
    found = sorted(
        path
        for path in PLATES_DIR.rglob("*")
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and path.stat().st_size >= min_bytes
    )
    if len(found) <= limit:
        return found
    step = len(found) / limit
    return [found[int(index * step)] for index in range(limit)]


def _jpeg_near(image: Image.Image, target_bytes: int) -> bytes:
    """The largest JPEG of `image` within `target_bytes`: a search on the quality, then downscaling."""
    picture = image.convert("RGB")
    for _ in range(6):
        low, high, best = 20, 95, b""
        while low <= high:  # at most 7 encodes: binary search on the quality
            quality = (low + high) // 2
            out = io.BytesIO()
            picture.save(out, "JPEG", quality=quality)
            if out.tell() <= target_bytes:
                best, low = out.getvalue(), quality + 1
            else:
                high = quality - 1
        if best:
            return best
        # Even the lowest quality is too large: shrink by the square root of the overshoot.
        out = io.BytesIO()
        picture.save(out, "JPEG", quality=20)
        scale = (target_bytes / out.tell()) ** 0.5 * 0.95
        picture = picture.resize((max(16, int(picture.width * scale)), max(16, int(picture.height * scale))))
    raise ValueError(f"cannot encode a JPEG under {target_bytes} bytes")


def _synthetic(count: int, target_bytes: int) -> list[bytes]:
    """Noisy gradients: they compress like photos do (badly), so sizes can be hit like real frames.
    Each has boxes of its own, so no two look like the same scene to the bridge's similar-frame check
    (noise alone averages out to the same grey picture), as no two photos do."""
    rng = random.Random(6)
    frames = []
    width, height = SYNTHETIC_SIZE
    for _ in range(count):
        noise = Image.effect_noise(SYNTHETIC_SIZE, rng.uniform(40, 80))
        gradient = Image.linear_gradient("L").resize(SYNTHETIC_SIZE)
        picture = Image.merge("RGB", (noise, gradient, Image.blend(noise, gradient, 0.5)))
        draw = ImageDraw.Draw(picture)
        for _ in range(6):
            left, top = rng.randrange(width - width // 4), rng.randrange(height - height // 4)
            box = (
                left,
                top,
                left + rng.randrange(width // 10, width // 4),
                top + rng.randrange(height // 10, height // 4),
            )
            draw.rectangle(box, fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
        frames.append(_jpeg_near(picture, target_bytes))
    return frames


def load_frame_sets(frame_kb: float, count: int) -> tuple[dict[str, FrameSet], list[str]]:
    """The `resized` set (base64 of about `frame_kb` kB), `original` (the photos as they are) and
    `parked` (one frame, sent again and again); with notes on what was used."""
    target_jpeg = int(frame_kb * 1000 * 3 / 4)  # base64 is 4/3 of the bytes it carries
    notes: list[str] = []
    photos = _photos(count) if PLATES_DIR.is_dir() else []
    if photos:
        originals = [path.read_bytes() for path in photos]
        resized = []
        # Only photos at least as large as the target: re-encoding a smaller one cannot reach it.
        for path in _photos(count, min_bytes=target_jpeg) or photos:
            with Image.open(path) as picture:
                resized.append(_jpeg_near(picture, target_jpeg))
        source = f"photos of {PLATES_DIR}"
    else:
        notes.append(f"{PLATES_DIR} is missing: synthetic JPEGs (Pillow noise) stand in for the photos")
        resized = _synthetic(count, target_jpeg)
        originals = _synthetic(count, target_jpeg * 3)
        source = "synthetic (Pillow)"
    resized_set = tuple(base64.b64encode(data) for data in resized)
    sets = {
        "resized": FrameSet("resized", resized_set, f"{source}, re-encoded as JPEG"),
        "original": FrameSet("original", tuple(base64.b64encode(data) for data in originals), source),
        "parked": FrameSet("parked", resized_set[:1], f"{source}: one frame, the same every time"),
    }
    return sets, notes
