"""Annotated snapshots: a frame with its plates boxed and labelled, and a crop of the best plate.

For people, not for readers: Home Assistant shows them as `image` entities and in notifications.
Boxes are in the pixels of the image the reader saw; pass the event's `scale` when the bridge had
downscaled the frame before reading it. Work is bounded: frames over `max_pixels` are refused from
their header, before decoding, and the annotated copy is drawn at most `max_side` pixels wide or high.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from bridge.imaging.images import MAX_DOWNSCALE_PIXELS

__all__ = ["MAX_PIXELS", "MAX_SIDE", "PLATE_COLOUR", "WATCHED_COLOUR", "annotate", "crop_best_plate"]

MAX_PIXELS = MAX_DOWNSCALE_PIXELS  # a 48-megapixel photo fits; a decompression bomb does not
MAX_SIDE = 1920  # an annotated frame is for a phone or a dashboard: full HD is plenty
PLATE_COLOUR = (255, 190, 0)  # amber
WATCHED_COLOUR = (230, 30, 60)  # red: a plate on a watch list stands out
TEXT_COLOURS = {PLATE_COLOUR: (0, 0, 0), WATCHED_COLOUR: (255, 255, 255)}  # the more readable on each
QUALITY = 85
MAX_LABEL_CHARS = 40

Box = tuple[int, int, int, int]


@contextmanager
def _opened(image: bytes, max_pixels: int) -> Iterator[Image.Image]:
    """`image` opened lazily (its header read, nothing decoded), refused when it claims more than
    `max_pixels`; any decoding failure inside the block becomes a ValueError."""
    try:
        with Image.open(io.BytesIO(image)) as opened:
            width, height = opened.size
            if width * height > max_pixels:
                raise ValueError(
                    f"the image claims {width}x{height} pixels, more than the {max_pixels:,} "
                    "that are annotated"
                )
            yield opened
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"the image cannot be decoded to be annotated: {exc}") from None


def _decode(opened: Image.Image, longest: int | None = None) -> tuple[Image.Image, float]:
    """The picture as RGB, a JPEG decoded at 1/2, 1/4 or 1/8 scale when that still leaves at least
    `longest` pixels on its longest side (much cheaper than decoding it whole); and its width over
    the original's, measured, since draft() chooses the scale."""
    width, height = opened.size
    if longest is not None and max(width, height) > longest:
        ratio = longest / max(width, height)
        opened.draft("RGB", (round(width * ratio), round(height * ratio)))
    picture = opened.convert("RGB")
    return picture, picture.width / width


def _box(result: Mapping[str, Any], ratio: float, size: tuple[int, int]) -> Box | None:
    """The result's box in the drawn picture's pixels, clipped to it; None when it has none."""
    box = result.get("box")
    if not isinstance(box, Mapping):
        return None
    try:
        xmin, ymin, xmax, ymax = (float(box[key]) * ratio for key in ("xmin", "ymin", "xmax", "ymax"))
    except (KeyError, TypeError, ValueError):
        return None
    width, height = size
    left, top = max(0, round(xmin)), max(0, round(ymin))
    right, bottom = min(width - 1, round(xmax)), min(height - 1, round(ymax))
    if right <= left or bottom <= top:
        return None
    return left, top, right, bottom


def _jpeg(picture: Image.Image) -> bytes:
    out = io.BytesIO()
    # No chroma subsampling: it would smear thin coloured lines and text into the grey around them.
    picture.save(out, "JPEG", quality=QUALITY, subsampling=0)
    return out.getvalue()


def _captions(watched: Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    """Plate -> what to write beside it for a watched plate: its best match's label, or its list."""
    captions: dict[str, str] = {}
    for match in watched or ():
        plate = match.get("plate")
        if isinstance(plate, str) and plate not in captions:
            captions[plate] = str(match.get("label") or match.get("list") or "")
    return captions


def annotate(
    image: bytes,
    results: Sequence[Mapping[str, Any]],
    watched: Iterable[Mapping[str, Any]] | None = None,
    *,
    scale: float | None = None,
    max_side: int = MAX_SIDE,
    max_pixels: int = MAX_PIXELS,
) -> bytes:
    """A JPEG of `image` with each result's box and plate drawn on it; plates of `watched` (the
    event's `watched` array) in `WATCHED_COLOUR` with their label, the others in `PLATE_COLOUR`.

    Raises ValueError for an image that cannot be decoded or has more than `max_pixels` pixels.
    """
    with _opened(image, max_pixels) as opened:
        picture, ratio = _decode(opened, max_side)
    if max(picture.size) > max_side:
        decoded_width = picture.width
        # Bilinear, which Pillow antialiases when shrinking: a third of Lanczos's time, and the
        # picture is a backdrop for boxes and captions.
        picture.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
        ratio *= picture.width / decoded_width
    ratio /= scale or 1.0
    captions = _captions(watched)
    draw = ImageDraw.Draw(picture)
    line = max(3, round(max(picture.size) / 400))
    font = ImageFont.load_default(size=max(12, round(picture.height / 28)))
    for result in results:
        box = _box(result, ratio, picture.size)
        if box is None:
            continue
        plate = str(result.get("plate") or "").upper()
        colour = WATCHED_COLOUR if result.get("plate") in captions else PLATE_COLOUR
        draw.rectangle(box, outline=colour, width=line)
        caption = captions.get(str(result.get("plate")))
        text = f"{plate} · {caption}"[:MAX_LABEL_CHARS] if caption else plate
        if not text:
            continue
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        text_width, text_height = right - left + 2 * line, bottom - top + 2 * line
        # Above the box when there is room, else inside its top edge; never off the picture.
        x = min(box[0], max(0, picture.width - text_width))
        y = box[1] - text_height if box[1] >= text_height else box[1]
        draw.rectangle((x, y, x + text_width, y + text_height), fill=colour)
        draw.text((x + line - left, y + line - top), text, fill=TEXT_COLOURS[colour], font=font)
    return _jpeg(picture)


def crop_best_plate(
    image: bytes,
    results: Sequence[Mapping[str, Any]],
    *,
    scale: float | None = None,
    margin: float = 0.25,
    min_width: int = 400,
    max_pixels: int = MAX_PIXELS,
) -> bytes | None:
    """A JPEG of the highest-scoring plate's box with `margin` (a fraction of the box's longer side)
    around it; None when no result has a box inside the frame. A large frame is decoded at a reduced
    scale only as far as the box keeps `min_width` pixels (or the frame `MAX_SIDE`).

    Raises ValueError for an image that cannot be decoded or has more than `max_pixels` pixels.
    """
    boxed = [result for result in results if isinstance(result.get("box"), Mapping)]
    if not boxed:
        return None
    with _opened(image, max_pixels) as opened:
        ranked = sorted(boxed, key=lambda result: -float(result.get("score") or 0))
        best = next(
            ((result, box) for result in ranked if (box := _box(result, 1 / (scale or 1.0), opened.size))),
            None,
        )
        if best is None:
            return None
        result, (left, _, right, _) = best
        longest = max(opened.size)
        picture, ratio = _decode(opened, max(round(longest * min_width / (right - left)), MAX_SIDE))
    box = _box(result, ratio / (scale or 1.0), picture.size)
    if box is None:  # a box of a pixel or two, lost to the reduced scale
        return None
    left, top, right, bottom = box
    pad = round(margin * max(right - left, bottom - top))
    crop = picture.crop(
        (
            max(0, left - pad),
            max(0, top - pad),
            min(picture.width, right + pad + 1),
            min(picture.height, bottom + pad + 1),
        )
    )
    return _jpeg(crop)
