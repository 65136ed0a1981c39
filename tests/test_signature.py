"""Frame signatures: the same scene re-encoded stays similar, a vehicle moving into the frame does not."""

from __future__ import annotations

import io
import math
from itertools import pairwise

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from benchmarks.credits import CLOCK_REGION, busy_street, parked_car, passing_car, photos
from bridge.config import ReuseConfig
from bridge.imaging.signature import Mask, Signature, difference, signature
from tests.images import jpeg, noisy_jpeg

THRESHOLD = ReuseConfig().threshold
HEIGHT = 360  # 640x360 frames: quick to make, and the harder case (less averaging per block)


def sign(data: bytes, mask: Mask | None = None) -> Signature:
    found = signature(data, mask)
    assert found is not None
    return found


def encode(picture: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=quality)
    return out.getvalue()


@pytest.fixture(scope="module")
def pictures() -> list:
    return photos()


def test_the_same_scene_re_encoded_brighter_with_its_clock_changed_is_similar(pictures: list) -> None:
    for photo in pictures[:3]:
        frames = parked_car(photo, seconds=4, height=HEIGHT).frames
        first = sign(frames[0].jpeg)
        changes = [difference(first, sign(frame.jpeg)) for frame in frames[1:]]
        assert max(changes) <= THRESHOLD, (photo.plate, changes)


def test_a_moving_vehicle_and_a_new_vehicle_are_changes(pictures: list) -> None:
    passing = [sign(frame.jpeg) for frame in passing_car(pictures[1], height=HEIGHT).frames]
    assert min(difference(a, b) for a, b in pairwise(passing)) > THRESHOLD
    street = busy_street(pictures[2:5], vehicles=3, height=HEIGHT).frames
    arrivals = [index for index in range(1, len(street)) if street[index].plate != street[index - 1].plate]
    for index in arrivals:
        assert difference(sign(street[index - 1].jpeg), sign(street[index].jpeg)) > THRESHOLD


def test_a_vehicle_in_one_corner_is_a_change_though_the_frame_mean_hardly_moves(pictures: list) -> None:
    scene = pictures[0].image.resize((640, 360))
    car = pictures[3].image.resize((96, 72))
    with_car = scene.copy()
    with_car.paste(car, (520, 270))
    before, after = sign(encode(scene)), sign(encode(with_car))
    whole_frame = ImageStat.Stat(
        ImageChops.difference(
            Image.frombytes("L", before.size, before.pixels), Image.frombytes("L", after.size, after.pixels)
        )
    ).mean[0]
    assert whole_frame < THRESHOLD  # a mean over the frame would miss it
    assert difference(before, after) > THRESHOLD


def overlay_frame(scene: Image.Image, text: str, *, inverted: bool) -> bytes:
    # An overlay that changes a lot: its text, and its colours (a blinking REC banner).
    picture = scene.copy()
    draw = ImageDraw.Draw(picture)
    background, ink = ((255, 255, 255), (0, 0, 0)) if inverted else ((0, 0, 0), (255, 255, 255))
    draw.rectangle((0, 0, 280, 28), fill=background)
    draw.text((4, 2), text, fill=ink, font_size=24)
    return encode(picture)


@pytest.mark.parametrize(
    "regions",
    [pytest.param([CLOCK_REGION], id="fractions"), pytest.param([[0, 0, 288, 29]], id="pixels")],
)
def test_masked_regions_are_left_out(pictures: list, regions: list) -> None:
    scene = pictures[0].image.resize((640, 360))
    first = overlay_frame(scene, "REC 08:00:00", inverted=False)
    second = overlay_frame(scene, "REC 23:59:59", inverted=True)
    assert difference(sign(first), sign(second)) > THRESHOLD
    mask = Mask(regions)
    assert difference(sign(first, mask), sign(second, mask), mask) <= THRESHOLD


def test_brightness_is_evened_out(pictures: list) -> None:
    scene = pictures[0].image.resize((640, 360))
    darker = Image.eval(scene, lambda level: round(level * 0.9))
    assert difference(sign(encode(scene)), sign(encode(darker))) <= THRESHOLD / 4


def test_what_cannot_be_decoded_has_no_signature() -> None:
    frame = jpeg()
    assert signature(b"not an image") is None
    assert signature(frame[: len(frame) // 2]) is None
    # A small file claiming more pixels than the bridge decodes is not decoded.
    out = io.BytesIO()
    Image.new("L", (8000, 7000)).save(out, "JPEG", quality=10)
    assert len(out.getvalue()) < 1_000_000
    assert signature(out.getvalue()) is None


def test_frames_of_other_sizes_are_never_similar_and_a_signature_stays_small() -> None:
    large = sign(noisy_jpeg(1600, 1200))
    assert large.nbytes <= 64 * 64
    assert math.isinf(difference(large, sign(jpeg())))
