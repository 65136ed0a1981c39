"""Plate crops: what a reading remembers of its plates, to prove a later frame shows the same plates.

The frame signature (bridge/imaging/signature.py) sees a scene 64 pixels wide: two cars of one make and colour
at the same line look the same there, whatever their plates say. A reading that found plates may
therefore be reused for a similar frame only when each of its plate boxes, looked at closely, is still
the same: a grey crop of each box (with a margin), decoded from the frame at full scale (libjpeg's work
is its Huffman decoding, the same at any scale: ~2.2 ms for a 170 kB 1280x960 JPEG here, against 1.7 ms
for the signature's 1/8) and scaled to `CROP_HEIGHT` pixels high, is kept with the reading and compared
with the same box of the new frame.

The comparison is made to ignore what a parked car's frames differ by (JPEG noise, exposure, a pixel of
jitter) and to see what another plate differs by (a character):

- each crop is normalised to zero mean and unit contrast, so exposure and gain are no change;
- the crops are compared block by block, a block about a stroke wide, and the difference of a plate is
  that of its most changed block: one different character is not averaged away by the others; within
  2x2 pixels the difference is signed, so noise averages out, and absolute over the block;
- the new crop is tried at up to two pixels of shift (of the frame), so a camera's sway is no change.

Measured on 30 labelled photos of ../shared (dev photos; `pytest tests/test_platecrops.py -s` measures
and prints it): the same plate in another frame (JPEG 80-95, 5 % brighter or darker, sensor noise, a
pixel of sway) differs by at most 0.14, another photo's plate pasted into the box by 0.75 or more, and a
character's width of another plate by 0.76 or more. The threshold (`reuse.plate_threshold`) is 0.45: a
frame wrongly found changed costs a call, one wrongly found unchanged a wrong plate.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from PIL import Image, ImageChops, ImageStat, UnidentifiedImageError

from bridge.imaging.images import MAX_DOWNSCALE_PIXELS

__all__ = ["CROP_HEIGHT", "PlateCrops", "decode_grey", "plate_boxes", "plate_crops", "plates_difference"]

CROP_HEIGHT = 24
"""Pixels a plate crop is scaled to, high: characters are ~15 of them, strokes 2-3."""
MARGIN = 0.15
"""Each box grown by this share of its size on every side: a reader's box can be a few pixels tight."""
BLOCK = 4
"""Crop pixels on a block's side: a stroke of a character is 2-4 of them wide."""
SHIFTS = tuple(
    sorted(((x, y) for x in (0, -1, 1, -2, 2) for y in (0, -1, 1)), key=lambda s: abs(s[0]) + abs(s[1]))
)
"""Shifts (frame pixels) the new crop is tried at, least first: a camera on a pole sways a pixel or two."""
MIN_CONTRAST = 4.0
"""Grey levels of standard deviation below which a crop is flat (a plate covered, or overexposed):
its contrast is not scaled up, so noise is not taken for characters."""

Box = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class Crop:
    """One plate box (frame pixels, margin included) and its grey crop, `CROP_HEIGHT` pixels high."""

    box: Box
    size: tuple[int, int]
    pixels: bytes
    mean: float
    contrast: float
    """Standard deviation of the grey levels, at least `MIN_CONTRAST`."""

    def picture(self) -> Image.Image:
        return Image.frombytes("L", self.size, self.pixels)


@dataclass(frozen=True, slots=True)
class PlateCrops:
    """What a reading keeps of its plates: the frame's size and a crop of each plate box."""

    frame_size: tuple[int, int]
    crops: tuple[Crop, ...]

    @property
    def nbytes(self) -> int:
        return sum(len(crop.pixels) + 64 for crop in self.crops)


def plate_boxes(result: Mapping[str, Any] | None, scale: float | None = None) -> tuple[Box, ...] | None:
    """The boxes of a reader answer's plates in the original frame's pixels (a 413 retry read a copy
    scaled by `scale`), or None when a plate has no usable box: such a reading cannot be proven."""
    boxes = []
    for plate in (result or {}).get("results") or ():
        box = plate.get("box") if isinstance(plate, Mapping) else None
        try:
            corners = [float(box[key]) for key in ("xmin", "ymin", "xmax", "ymax")]  # type: ignore[index]
        except (TypeError, KeyError, ValueError):
            return None
        if scale:
            corners = [value / scale for value in corners]
        xmin, ymin, xmax, ymax = corners
        if not all(math.isfinite(value) for value in corners) or xmax <= xmin or ymax <= ymin:
            return None
        boxes.append((math.floor(xmin), math.floor(ymin), math.ceil(xmax), math.ceil(ymax)))
    return tuple(boxes)


def decode_grey(image: bytes) -> Image.Image | None:
    """The frame in grey, or None when it cannot be decoded or claims more pixels than the bridge
    decodes."""
    try:
        with Image.open(io.BytesIO(image), formats=("JPEG", "PNG")) as picture:
            width, height = picture.size
            if width * height > MAX_DOWNSCALE_PIXELS:
                return None
            picture.draft("L", (width, height))
            grey = picture.convert("L")
            grey.info["frame_size"] = (width, height)
            return grey
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, UnidentifiedImageError):
        return None


def _grown(box: Box, frame_size: tuple[int, int]) -> Box:
    xmin, ymin, xmax, ymax = box
    dx, dy = math.ceil((xmax - xmin) * MARGIN), math.ceil((ymax - ymin) * MARGIN)
    width, height = frame_size
    return max(0, xmin - dx), max(0, ymin - dy), min(width, xmax + dx), min(height, ymax + dy)


def _crop(grey: Image.Image, box: Box, size: tuple[int, int], shift: tuple[int, int] = (0, 0)) -> Crop:
    """`box` of `grey` (a frame decoded by `decode_grey`), moved by `shift`, scaled to `size`."""
    frame_width, frame_height = grey.info["frame_size"]
    sx, sy = grey.width / frame_width, grey.height / frame_height
    xmin, ymin, xmax, ymax = box
    width, height = (xmax - xmin) * sx, (ymax - ymin) * sy
    # Shifted, but kept inside the picture (a plate at its edge is compared unshifted that way).
    left = min(max(0.0, (xmin + shift[0]) * sx), grey.width - width)
    top = min(max(0.0, (ymin + shift[1]) * sy), grey.height - height)
    area = (left, top, left + width, top + height)
    picture = grey.resize(size, Image.Resampling.BILINEAR, box=area)
    stat = ImageStat.Stat(picture)
    return Crop(box, size, picture.tobytes(), stat.mean[0], max(stat.stddev[0], MIN_CONTRAST))


@lru_cache(maxsize=256)
def _levels_table(gain_permille: int, offset: int) -> tuple[int, ...]:
    """The lookup table mapping grey level v to v * gain / 1000 + offset, clipped to 0-255."""
    return tuple(min(255, max(0, (level * gain_permille + 500) // 1000 + offset)) for level in range(256))


def _size(box: Box) -> tuple[int, int]:
    xmin, ymin, xmax, ymax = box
    width = max(2 * BLOCK, round(CROP_HEIGHT * (xmax - xmin) / (ymax - ymin)))
    return min(width, 8 * CROP_HEIGHT), CROP_HEIGHT


def plate_crops(grey: Image.Image, boxes: Sequence[Box]) -> PlateCrops | None:
    """The crops of `boxes` from a frame decoded by `decode_grey`, or None when a box lies outside the
    frame (an answer for another frame, or a wrong one: nothing to prove a plate with)."""
    frame_size: tuple[int, int] = grey.info["frame_size"]
    grown = [_grown(box, frame_size) for box in boxes]
    if any(right - left < 2 or bottom - top < 2 for left, top, right, bottom in grown):
        return None
    return PlateCrops(frame_size, tuple(_crop(grey, box, _size(box)) for box in grown))


_ABSOLUTE = tuple(abs(level - 128) for level in range(256))


def _difference(known: Crop, seen: Crop) -> float:
    """How much the most changed block (`BLOCK` crop pixels square, on two grids half a block apart)
    differs once `seen`'s levels are matched to `known`'s mean and contrast, in units of `known`'s
    contrast: the mean, over the block, of the absolute signed difference of each 2x2 pixels. Signed
    within 2x2 pixels, so sensor and JPEG noise average out; absolute over the block, so a stroke that
    moved is not cancelled by one that appeared."""
    gain = known.contrast / seen.contrast
    offset = round(known.mean - seen.mean * gain)
    matched = seen.picture().point(_levels_table(round(1000 * gain), offset))
    signed = ImageChops.subtract(known.picture(), matched, offset=128)
    width, height = known.size
    pairs = signed.resize((width // 2, height // 2), Image.Resampling.BOX).point(_ABSOLUTE).convert("F")
    half = BLOCK // 2
    worst = 0.0
    for start in (0, half // 2):
        across, down = (pairs.width - start) // half, (pairs.height - start) // half
        window = pairs.crop((start, start, start + across * half, start + down * half))
        means = window.resize((across, down), Image.Resampling.BOX)
        values = means.get_flattened_data() if hasattr(means, "get_flattened_data") else means.getdata()
        worst = max(worst, *values)
    return worst / known.contrast


def plates_difference(known: PlateCrops, grey: Image.Image, *, stop_above: float = math.inf) -> float:
    """How much the plates of `known` changed in the frame `grey` (decoded by `decode_grey`): the largest,
    over its plates, of the smallest over shifts of the most changed block's difference (in units of
    the plate's contrast). Infinite for a frame of another size. With `stop_above`, a plate stops at
    the first shift at or below it and the comparison at the first plate above it (enough to decide)."""
    if grey.info.get("frame_size") != known.frame_size:
        return math.inf
    worst = 0.0
    for crop in known.crops:
        best = math.inf
        for shift in SHIFTS:
            best = min(best, _difference(crop, _crop(grey, crop.box, crop.size, shift)))
            if best <= stop_above < math.inf:  # unchanged enough: no need to try it shifted further
                break
        worst = max(worst, best)
        if worst > stop_above:
            break
    return worst
