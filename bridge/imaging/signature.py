"""Frame signatures: a tiny grey picture of a frame, to tell "the same scene again" from "something moved".

A live camera never sends the same bytes twice: JPEG noise, auto exposure and the clock drawn into the
picture change every frame. What a plate reader cares about does not change until something moves. A
signature keeps a frame as a grey picture 64 pixels on its long side (2.3 kB for 16:9), decoded from a
JPEG at 1/8 of its size by libjpeg itself (`Image.draft`: only the grey channel, no full decode), and
two signatures are compared block by block, each block an eighth of the frame's long side:

- brightness is evened out first (one frame's grey levels scaled to the other's mean), so auto
  exposure and a cloud passing by are not changes;
- the difference of a frame is that of its most changed block (the mean absolute difference of its
  grey levels, 0-255), not a mean over the whole frame, in which a car entering one corner would
  drown; re-encoding and sensor noise average out within a block, a vehicle does not;
- regions of the frame can be masked (a camera's timestamp or name overlay): they count in no block.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageChops, ImageStat, UnidentifiedImageError

from bridge.imaging.images import MAX_DOWNSCALE_PIXELS

__all__ = ["BLOCK", "LONG_SIDE", "Mask", "Signature", "difference", "signature"]

LONG_SIDE = 64
"""Signature pixels on the frame's long side."""
BLOCK = 8
"""Signature pixels on a block's side: blocks are an eighth of the frame's long side."""
MIN_BLOCK_COVERAGE = 0.25
_HALF = BLOCK // 2
_OFFSETS = ((0, 0), (_HALF, 0), (0, _HALF), (_HALF, _HALF))
"""A block mostly masked out is not compared: its few pixels left would weigh like a whole block."""

Region = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class Signature:
    """A frame as a small grey picture: what is kept of it to compare the camera's next frames with."""

    frame_size: tuple[int, int]
    size: tuple[int, int]
    pixels: bytes
    mean: float
    """Mean grey level of the pixels not masked out."""

    @property
    def nbytes(self) -> int:
        return len(self.pixels)


class Mask:
    """Regions of a camera's frames left out of every comparison: `[x, y, w, h]` each, as fractions of
    the frame when all four are at most 1, else in pixels of the frame."""

    def __init__(self, regions: Sequence[Sequence[float]] = ()) -> None:
        self.regions: tuple[Region, ...] = tuple(
            (float(x), float(y), float(w), float(h)) for x, y, w, h in regions
        )

    def __bool__(self) -> bool:
        return bool(self.regions)

    def boxes(
        self, frame_size: tuple[int, int], size: tuple[int, int]
    ) -> tuple[tuple[int, int, int, int], ...]:
        """The regions as boxes of signature pixels, grown outwards so each covers its region fully."""
        return _boxes(self.regions, frame_size, size)

    def coverage(
        self, frame_size: tuple[int, int], size: tuple[int, int], offset: tuple[int, int] = (0, 0)
    ) -> tuple[float, ...]:
        """The share of each block (of the grid shifted by `offset`) that is not masked."""
        return _coverage(self.regions, frame_size, size, offset)


@lru_cache(maxsize=64)
def _boxes(
    regions: tuple[Region, ...], frame_size: tuple[int, int], size: tuple[int, int]
) -> tuple[tuple[int, int, int, int], ...]:
    frame_width, frame_height = frame_size
    width, height = size
    boxes = []
    for region in regions:
        x, y, w, h = region
        if max(region) > 1:  # pixels of the frame
            x, w = x / frame_width, w / frame_width
            y, h = y / frame_height, h / frame_height
        left, top = max(0, math.floor(x * width)), max(0, math.floor(y * height))
        right, bottom = min(width, math.ceil((x + w) * width)), min(height, math.ceil((y + h) * height))
        if right > left and bottom > top:
            boxes.append((left, top, right, bottom))
    return tuple(boxes)


@lru_cache(maxsize=64)
def _coverage(
    regions: tuple[Region, ...], frame_size: tuple[int, int], size: tuple[int, int], offset: tuple[int, int]
) -> tuple[float, ...]:
    kept = Image.new("F", size, 1.0)
    for box in _boxes(regions, frame_size, size):
        kept.paste(0.0, box)
    return _block_means(kept, offset)


def _values(picture: Image.Image) -> tuple[float, ...]:
    # Pillow 13 renamed getdata (deprecated, gone in 14); the project supports Pillow from 10.1.
    flattened = getattr(picture, "get_flattened_data", None)
    return tuple(flattened() if flattened is not None else picture.getdata())


def _grid(frame_size: tuple[int, int]) -> tuple[int, int]:
    width, height = frame_size
    if width >= height:
        return LONG_SIDE, max(BLOCK, round(LONG_SIDE * height / width))
    return max(BLOCK, round(LONG_SIDE * width / height)), LONG_SIDE


def _block_means(picture: Image.Image, offset: tuple[int, int]) -> tuple[float, ...]:
    """The mean of each whole BLOCK x BLOCK block of the grid starting at `offset` (the rest of the
    picture, less than a block, is covered by the grid shifted by half a block)."""
    left, top = offset
    across, down = (picture.width - left) // BLOCK, (picture.height - top) // BLOCK
    if not across or not down:
        return ()
    window = picture.crop((left, top, left + across * BLOCK, top + down * BLOCK))
    return _values(window.resize((across, down), Image.Resampling.BOX))


def signature(image: bytes, mask: Mask | None = None) -> Signature | None:
    """The signature of a JPEG or PNG frame, or None when it cannot be decoded (the reader will say
    why) or claims more pixels than the bridge decodes."""
    try:
        # Only the two formats the decode node lets through: no probing of every other plugin.
        with Image.open(io.BytesIO(image), formats=("JPEG", "PNG")) as picture:
            frame_size = picture.size
            if frame_size[0] * frame_size[1] > MAX_DOWNSCALE_PIXELS:
                return None
            size = _grid(frame_size)
            # JPEG: libjpeg decodes the grey channel only, at the largest of 1/2, 1/4, 1/8 of the size
            # that stays at least `size` (a 1280x720 frame: 160x90, ~40x fewer pixels). PNG: no-op.
            picture.draft("L", size)
            grey = picture.convert("L")
            small = grey.resize(size, Image.Resampling.BOX, reducing_gap=2.0)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, UnidentifiedImageError):
        return None
    kept = None
    if mask:
        boxes = mask.boxes(frame_size, size)
        if boxes:
            kept = Image.new("L", size, 255)
            for box in boxes:
                small.paste(0, box)
                kept.paste(0, box)
    stat = ImageStat.Stat(small, kept)
    mean = stat.mean[0] if stat.count[0] else 0.0
    return Signature(frame_size, size, small.tobytes(), mean)


@lru_cache(maxsize=512)
def _gain_table(gain_permille: int) -> tuple[int, ...]:
    """The lookup table that scales grey levels by `gain_permille` / 1000 (cached: one per gain)."""
    return tuple(min(255, (level * gain_permille + 500) // 1000) for level in range(256))


def difference(
    a: Signature, b: Signature, mask: Mask | None = None, *, stop_above: float = math.inf
) -> float:
    """How much the scene changed from `a` to `b`: the mean absolute grey-level difference (0-255) of
    the most changed block once brightness is evened out; infinite for frames of different sizes.

    With `stop_above`, the comparison ends at the first grid with a block above it and returns that
    block's difference (enough to say "changed", cheaper for frames that did change).
    """
    if a.size != b.size or a.frame_size != b.frame_size:
        return math.inf
    first = Image.frombytes("L", a.size, a.pixels)
    second = Image.frombytes("L", b.size, b.pixels)
    if b.mean > 1 and abs(a.mean / b.mean - 1) > 0.002:
        second = second.point(_gain_table(round(1000 * a.mean / b.mean)))
    changed = ImageChops.difference(first, second).convert("F")
    worst = 0.0
    # Blocks on a grid and on the grid shifted by half a block each way: a vehicle straddling four
    # blocks of one grid fills most of one block of another.
    for offset in _OFFSETS:
        blocks = _block_means(changed, offset)
        if mask:
            coverage = mask.coverage(a.frame_size, a.size, offset)
            blocks = tuple(
                level / kept
                for level, kept in zip(blocks, coverage, strict=True)
                if kept >= MIN_BLOCK_COVERAGE
            )
        worst = max(worst, max(blocks, default=0.0))
        if worst > stop_above:
            break
    return worst
