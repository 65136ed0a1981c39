"""Annotated snapshots on generated images: boxes and text land where the plates are, nowhere else."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image, ImageDraw

from bridge.imaging.annotate import MAX_SIDE, PLATE_COLOUR, WATCHED_COLOUR, annotate, crop_best_plate
from tests.images import jpeg, noisy_jpeg, png

GREY = (90, 90, 90)


def frame(width: int = 640, height: int = 480, fmt: str = "JPEG") -> bytes:
    """A flat grey frame with a white 'plate' at (100, 200)-(260, 240)."""
    image = Image.new("RGB", (width, height), GREY)
    ImageDraw.Draw(image).rectangle((100, 200, 260, 240), fill=(250, 250, 250))
    out = io.BytesIO()
    image.save(out, fmt, quality=95)
    return out.getvalue()


def plate(text: str, box: tuple[int, int, int, int], score: float = 0.9) -> dict[str, Any]:
    xmin, ymin, xmax, ymax = box
    return {"plate": text, "score": score, "box": {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax}}


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    return image.convert("RGB")


def near(pixel: tuple[int, ...], colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


def test_boxes_and_plate_text_are_drawn_where_the_plate_is() -> None:
    out = decoded(annotate(frame(), [plate("ab12cde", (100, 200, 260, 240))]))
    assert out.size == (640, 480)
    # The box's edges are drawn, on all four sides.
    for x, y in [(100, 220), (260, 220), (180, 200), (180, 240)]:
        assert near(out.getpixel((x, y)), PLATE_COLOUR), (x, y, out.getpixel((x, y)))
    # The caption sits just above the box: the band above it is no longer grey.
    band = [out.getpixel((x, y)) for x in range(100, 160) for y in range(185, 198)]
    assert sum(not near(pixel, GREY) for pixel in band) > len(band) // 2
    # Far from the plate the frame is untouched (up to JPEG noise).
    for x, y in [(10, 10), (600, 50), (400, 400), (50, 460)]:
        assert near(out.getpixel((x, y)), GREY, 12)
    # Inside the box, the plate itself is not painted over.
    assert near(out.getpixel((180, 225)), (250, 250, 250), 20)


def test_watched_plates_are_drawn_in_their_own_colour() -> None:
    results = [plate("ab12cde", (100, 200, 260, 240)), plate("xy987", (400, 300, 560, 340))]
    watched = [{"list": "family", "label": "Anna's car", "plate": "ab12cde"}]
    out = decoded(annotate(frame(), results, watched))
    assert near(out.getpixel((100, 220)), WATCHED_COLOUR)
    assert near(out.getpixel((400, 320)), PLATE_COLOUR)

    # The label makes the watched plate's caption wider than the plain one's.
    def caption_width(x0: int, y: int, colour: tuple[int, int, int]) -> int:
        return sum(near(out.getpixel((x, y)), colour) for x in range(x0, 640))

    assert caption_width(100, 188, WATCHED_COLOUR) > caption_width(400, 288, PLATE_COLOUR)


def test_boxes_of_a_downscaled_reading_are_scaled_back() -> None:
    # The reader saw the frame at half size: its box is in those pixels.
    out = decoded(annotate(frame(), [plate("ab12cde", (50, 100, 130, 120))], scale=0.5))
    assert near(out.getpixel((100, 220)), PLATE_COLOUR)
    assert near(out.getpixel((260, 220)), PLATE_COLOUR)
    assert near(out.getpixel((50, 110)), GREY, 12)


def test_large_frames_are_drawn_smaller() -> None:
    big = Image.new("RGB", (4000, 3000), GREY)
    out_bytes = io.BytesIO()
    big.save(out_bytes, "JPEG")
    out = decoded(annotate(out_bytes.getvalue(), [plate("ab12cde", (1000, 2000, 2000, 2400))]))
    assert max(out.size) <= MAX_SIDE and out.width / out.height == pytest.approx(4 / 3, rel=0.01)
    ratio = out.width / 4000
    assert near(out.getpixel((round(1000 * ratio), round(2200 * ratio))), PLATE_COLOUR)
    assert near(out.getpixel((round(2000 * ratio), round(2200 * ratio))), PLATE_COLOUR)


def test_png_frames_and_no_plates() -> None:
    assert decoded(annotate(png(), [])).size == (32, 24)
    out = decoded(annotate(frame(fmt="PNG"), [plate("", (100, 200, 260, 240))]))
    assert near(out.getpixel((100, 220)), PLATE_COLOUR)


def test_boxes_off_the_frame_are_clipped_or_skipped() -> None:
    results = [
        plate("ab12cde", (600, 440, 900, 900)),  # partly outside: clipped
        plate("gone", (2000, 2000, 2100, 2100)),  # entirely outside: skipped
        {"plate": "nobox", "score": 0.5},
        {"plate": "badbox", "score": 0.5, "box": {"xmin": "a"}},
    ]
    out = decoded(annotate(frame(), results))
    assert near(out.getpixel((600, 470)), PLATE_COLOUR)


def test_oversized_and_broken_images_are_refused() -> None:
    with pytest.raises(ValueError, match="more than the 1,000"):
        annotate(frame(), [], max_pixels=1000)
    with pytest.raises(ValueError, match="cannot be decoded"):
        annotate(b"not an image", [])
    # Small JPEGs whose headers claim 8000x8000 (over the cap) and 60000x60000 (a decompression bomb,
    # which Pillow itself refuses): both are refused before anything is decoded.
    for side, words in [
        (8000, "claims 8000x8000 pixels, more than the 50,000,000"),
        (60000, "cannot be decoded"),
    ]:
        data = bytearray(jpeg())
        sof = data.index(b"\xff\xc0")
        data[sof + 5 : sof + 9] = side.to_bytes(2, "big") * 2
        with pytest.raises(ValueError, match=words):
            annotate(bytes(data), [plate("ab12cde", (1, 1, 10, 10))])
        with pytest.raises(ValueError, match=words):
            crop_best_plate(bytes(data), [plate("ab12cde", (1, 1, 10, 10))])


def test_crop_of_the_best_plate_with_a_margin() -> None:
    results = [plate("weak", (400, 300, 560, 340), score=0.5), plate("ab12cde", (100, 200, 260, 240))]
    crop = crop_best_plate(frame(), results)
    assert crop is not None
    image = decoded(crop)
    # 160x40 box, a quarter of its longer side (40 px) around it.
    assert image.size == (241, 121)
    assert near(image.getpixel((120, 60)), (250, 250, 250), 12)  # the plate in the middle
    assert near(image.getpixel((5, 5)), GREY, 12)  # the margin around it


def test_crop_at_full_resolution_of_a_downscaled_reading() -> None:
    crop = crop_best_plate(frame(), [plate("ab12cde", (50, 100, 130, 120))], scale=0.5, margin=0)
    assert crop is not None and decoded(crop).size == (161, 41)


def test_no_crop_without_a_usable_box() -> None:
    assert crop_best_plate(frame(), []) is None
    assert crop_best_plate(frame(), [{"plate": "nobox", "score": 0.9}]) is None
    assert crop_best_plate(frame(), [plate("gone", (2000, 2000, 2100, 2100))]) is None


def test_a_noisy_megapixel_frame_is_annotated() -> None:
    out = decoded(annotate(noisy_jpeg(), [plate("ab12cde", (100, 100, 400, 200))]))
    assert out.size == (1600, 1200)


def test_a_large_frame_is_cropped_at_a_reduced_scale_that_keeps_the_plate_readable() -> None:
    big = Image.new("RGB", (4000, 3000), GREY)
    ImageDraw.Draw(big).rectangle((1000, 2000, 1800, 2200), fill=(250, 250, 250))
    data = io.BytesIO()
    big.save(data, "JPEG", quality=95)
    results = [plate("ab12cde", (1000, 2000, 1800, 2200))]
    # The 800-pixel box needs only 400: the frame is decoded at half size.
    half = decoded(crop_best_plate(data.getvalue(), results, margin=0.25) or b"")
    assert half.size == pytest.approx((601, 301), abs=2)
    assert near(half.getpixel((300, 150)), (250, 250, 250), 12)
    # Asked for 800 pixels, it decodes the frame whole.
    whole = decoded(crop_best_plate(data.getvalue(), results, margin=0.25, min_width=800) or b"")
    assert whole.size == (1201, 601)
