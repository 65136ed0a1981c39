"""Plate crops on real photos (../shared, dev photos): the same plate in another frame stays under the
threshold, another plate in the box goes over it. This is where bridge/imaging/platecrops.py's figures come
from: `pytest tests/test_platecrops.py -s` prints them."""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageEnhance

from bridge.config import ReuseConfig
from bridge.imaging.platecrops import decode_grey, plate_boxes, plate_crops, plates_difference
from tests.emulator import DEFAULT_SHARED_DIR

LABELS = DEFAULT_SHARED_DIR / "data" / "plates" / "labels.tsv"
THRESHOLD = ReuseConfig().plate_threshold
PHOTOS = 30


def jpeg(picture: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=quality)
    return out.getvalue()


def camera(picture: Image.Image, rng: random.Random) -> bytes:
    """Another frame of the same scene: a pixel of sway, ±5 % brightness, sensor noise, JPEG 80-95."""
    dx, dy = rng.randint(-1, 1), rng.randint(-1, 1)
    moved = picture.transform(picture.size, Image.Transform.AFFINE, (1, 0, dx, 0, 1, dy))
    moved = ImageEnhance.Brightness(moved).enhance(1 + rng.uniform(-0.05, 0.05))
    noise = Image.effect_noise(moved.size, 4).convert("RGB")
    return jpeg(ImageChops.add(moved, noise, scale=1.0, offset=-128), rng.randint(80, 95))


@pytest.fixture(scope="module")
def photos() -> list[tuple[Image.Image, tuple[int, int, int, int]]]:
    if not LABELS.is_file():
        pytest.skip(f"no labelled photos at {LABELS} (../shared is not beside the repo)")
    with LABELS.open(encoding="utf-8", newline="") as table:
        rows = list(csv.DictReader(table, delimiter="\t"))
    found = []
    for row in rows[:: max(1, len(rows) // PHOTOS)][:PHOTOS]:
        x, y, w, h = (int(row[key]) for key in ("x", "y", "w", "h"))
        with Image.open(Path(LABELS.parent, row["image"])) as picture:
            found.append((picture.convert("RGB"), (x, y, x + w, y + h)))
    return found


def test_the_same_plate_stays_under_the_threshold_and_another_goes_over(photos: list) -> None:
    rng = random.Random(20)
    same, other, one_character = [], [], []
    for index, (picture, box) in enumerate(photos):
        crops = plate_crops(decode_grey(jpeg(picture)), [box])
        assert crops is not None
        for _ in range(2):
            same.append(plates_difference(crops, decode_grey(camera(picture, rng))))
        # A look-alike: the same car with another photo's plate in the box, and with only the last
        # sixth of its plate (about a character) taken from another plate.
        donor, (dx0, dy0, dx1, dy1) = photos[(index + 7) % len(photos)]
        x0, y0, x1, y1 = box
        swapped = picture.copy()
        swapped.paste(donor.crop((dx0, dy0, dx1, dy1)).resize((x1 - x0, y1 - y0)), (x0, y0))
        other.append(plates_difference(crops, decode_grey(camera(swapped, rng))))
        width = max(2, (x1 - x0) // 6)
        tail = picture.copy()
        piece = donor.crop((dx1 - (dx1 - dx0) // 6, dy0, dx1, dy1)).resize((width, y1 - y0))
        tail.paste(piece, (x1 - width - max(1, (x1 - x0) // 30), y0))
        one_character.append(plates_difference(crops, decode_grey(camera(tail, rng))))
    print(
        f"\nsame plate, another frame: max {max(same):.2f}; another plate: min {min(other):.2f}; "
        f"a character's width of another plate: min {min(one_character):.2f} (threshold {THRESHOLD})"
    )
    assert max(same) <= THRESHOLD < min(other)
    assert min(one_character) > THRESHOLD


def test_a_plate_without_a_usable_box_cannot_be_proven() -> None:
    assert plate_boxes({"results": [{"plate": "ab12cde"}]}) is None
    assert plate_boxes({"results": [{"box": {"xmin": 5, "ymin": 5, "xmax": 5, "ymax": 9}}]}) is None
    assert plate_boxes({"results": []}) == ()
    # A 413 retry read a copy at half scale: its boxes go back to the frame's pixels.
    box = {"xmin": 10, "ymin": 20, "xmax": 50, "ymax": 30}
    assert plate_boxes({"results": [{"box": box}]}, scale=0.5) == ((20, 40, 100, 60),)
    grey = decode_grey(jpeg(Image.new("RGB", (64, 48), "white")))
    assert grey is not None and plate_crops(grey, [(100, 100, 140, 120)]) is None  # outside the frame
