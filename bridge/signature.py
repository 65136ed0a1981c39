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

Decoding is what a signature costs (libjpeg's Huffman decoding: ~1 ms per 100 kB of JPEG here), so a
frame is first looked at in a band: `band` decodes only its top rows (`BAND_ROWS` of the grid's rows: the
height in a baseline JPEG's header is cut, and libjpeg stops there), the same pixels as the top rows of
its `signature`. Two frames whose bands differ are different scenes at a quarter of the cost; only
frames whose bands are alike are decoded whole. `difference` compares the rows two signatures share.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageChops, ImageStat, UnidentifiedImageError

from bridge.images import MAX_DOWNSCALE_PIXELS

__all__ = ["BLOCK", "LONG_SIDE", "Mask", "Signature", "band", "band_changed", "difference", "signature"]

BAND_ROWS = 4
"""A band's rows: half a row of blocks, a twelfth of a 4:3 frame (a ninth of a 16:9 one). Its blocks,
`BLOCK` wide and `BAND_ROWS` high, are what `band_changed` compares."""
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
    """The whole signature's grid; a band holds only its top `rows`."""
    pixels: bytes
    mean: float
    """Mean grey level of the pixels not masked out."""
    band_blocks: tuple[float, ...] = ()
    """The mean grey level of each of the band's blocks (none with a mask)."""

    @property
    def nbytes(self) -> int:
        return len(self.pixels) + 8 * len(self.band_blocks)

    @property
    def rows(self) -> int:
        return len(self.pixels) // self.size[0]

    @property
    def complete(self) -> bool:
        """A whole signature, not a band."""
        return self.rows == self.size[1]

    def picture(self, rows: int | None = None) -> Image.Image:
        """The signature as a grey picture, its top `rows` only when given."""
        rows = self.rows if rows is None else min(rows, self.rows)
        return Image.frombytes("L", (self.size[0], rows), self.pixels[: rows * self.size[0]])


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
        self,
        frame_size: tuple[int, int],
        size: tuple[int, int],
        offset: tuple[int, int] = (0, 0),
        rows: int | None = None,
    ) -> tuple[float, ...]:
        """The share of each block (of the grid shifted by `offset`, in its top `rows`) not masked."""
        return _coverage(self.regions, frame_size, size, offset, size[1] if rows is None else rows)


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


@lru_cache(maxsize=128)
def _coverage(
    regions: tuple[Region, ...],
    frame_size: tuple[int, int],
    size: tuple[int, int],
    offset: tuple[int, int],
    rows: int,
) -> tuple[float, ...]:
    kept = Image.new("F", size, 1.0)
    for box in _boxes(regions, frame_size, size):
        kept.paste(0.0, box)
    return _block_means(kept.crop((0, 0, size[0], rows)), offset)


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
            # A box filter over the 1/8 picture: each signature pixel is the mean of its part of the
            # frame, so a band's rows (below) are the same pixels as these.
            small = grey.resize(size, Image.Resampling.BOX)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, UnidentifiedImageError):
        return None
    return _finished(small, frame_size, size, mask)


def _finished(
    small: Image.Image, frame_size: tuple[int, int], size: tuple[int, int], mask: Mask | None
) -> Signature:
    """The signature of `small` (the grid, or its top rows), masked regions set to 0."""
    kept = None
    if mask:
        boxes = mask.boxes(frame_size, size)
        if boxes:
            kept = Image.new("L", small.size, 255)
            for box in boxes:
                small.paste(0, box)
                kept.paste(0, box)
    blocks: tuple[float, ...] = ()
    if kept is None and small.height >= BAND_ROWS:
        top = small if small.height == BAND_ROWS else small.crop((0, 0, small.width, BAND_ROWS))
        blocks = _values(top.convert("F").resize((small.width // BLOCK, 1), Image.Resampling.BOX))
    if kept is None and small.height == BAND_ROWS and small.width % BLOCK == 0:
        mean = sum(blocks) / len(blocks)  # a band: the blocks cover it whole
    else:
        stat = ImageStat.Stat(small, kept)
        mean = stat.mean[0] if stat.count[0] else 0.0
    return Signature(frame_size, size, small.tobytes(), mean, blocks)


def band_changed(a: Signature, b: Signature, threshold: float) -> bool:
    """A quick "changed" from two signatures' band blocks alone, brightness evened out over the band:
    when the means of one block differ by more than `threshold`, their pixels differ by at least that
    much on average (and a brightness ratio that differs from the frame's only costs a closer look).
    False when it cannot tell (a mask, frames of other sizes): then `difference` decides."""
    if not a.band_blocks or len(a.band_blocks) != len(b.band_blocks) or a.frame_size != b.frame_size:
        return False
    first, second = sum(a.band_blocks), sum(b.band_blocks)
    gain = first / second if second > len(b.band_blocks) else 1.0
    return any(abs(x - gain * y) > threshold for x, y in zip(a.band_blocks, b.band_blocks, strict=True))


# Start-of-frame markers: baseline and extended sequential Huffman JPEG, which libjpeg decodes row by row.
_SEQUENTIAL = (0xC0, 0xC1)
_OTHER_FRAMES = frozenset(range(0xC2, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset((0x01, *range(0xD0, 0xD8)))


def _sequential_frame(image: bytes) -> tuple[int, int, int, int] | None:
    """Where a sequential JPEG's height is in its header, its width, height and MCU height in pixels;
    None for anything else (progressive, lossless, arithmetic, PNG, damaged)."""
    if image[:2] != b"\xff\xd8":
        return None
    position, end = 2, min(len(image), 1 << 16)  # the header is near the start; never scan a whole frame
    while position + 4 <= end:
        if image[position] != 0xFF:
            return None
        marker = image[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _STANDALONE:
            position += 2
            continue
        length = int.from_bytes(image[position + 2 : position + 4], "big")
        if marker in _SEQUENTIAL:
            segment = image[position + 4 : position + 2 + length]
            if len(segment) < 6:
                return None
            height, width, components = (
                int.from_bytes(segment[1:3], "big"),
                int.from_bytes(segment[3:5], "big"),
                segment[5],
            )
            sampling = segment[6 : 6 + 3 * components]
            vertical = max((sampling[index + 1] & 0x0F for index in range(0, len(sampling), 3)), default=1)
            return position + 5, width, height, 8 * max(1, vertical) if components > 1 else 8
        if marker in _OTHER_FRAMES or marker == 0xDA:  # not sequential, or a scan before any frame
            return None
        position += 2 + length
    return None


def _scale(frame_size: tuple[int, int], size: tuple[int, int]) -> int:
    """The reduction libjpeg decodes at for `signature` (what `Image.draft` picks for `size`)."""
    width, height = frame_size
    for scale in (8, 4, 2):
        if -(-width // scale) >= size[0] and -(-height // scale) >= size[1]:
            return scale
    return 1


def band(image: bytes, mask: Mask | None = None) -> Signature | None:
    """The top `BAND_ROWS` rows of `signature(image)`, for about as much of libjpeg's work; None when
    the frame is not a sequential JPEG or is too small for a band to save anything: then its
    `signature` is what to compare."""
    found = _sequential_frame(image)
    if found is None:
        return None
    where, width, height, mcu = found
    if not width or not height or width * height > MAX_DOWNSCALE_PIXELS:
        return None
    size = _grid((width, height))
    rows = BAND_ROWS
    scale = _scale((width, height), size)
    decoded_height = -(-height // scale)
    # The decoded rows the band's signature rows cover, and the frame rows libjpeg must decode for them.
    needed = rows * decoded_height / size[1]
    band_height = mcu * math.ceil(math.ceil(needed) * scale / mcu)
    if band_height >= height:
        return None
    cut = image[:where] + band_height.to_bytes(2, "big") + image[where + 2 :]
    try:
        with Image.open(io.BytesIO(cut), formats=("JPEG",)) as picture:
            picture.draft("L", (-(-width // scale), -(-band_height // scale)))
            grey = picture.convert("L")
            if grey.width != -(-width // scale):  # libjpeg chose another scale: no band then
                return None
            small = grey.resize((size[0], rows), Image.Resampling.BOX, box=(0, 0, grey.width, needed))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, UnidentifiedImageError):
        return None
    return _finished(small, (width, height), size, mask)


@lru_cache(maxsize=512)
def _gain_table(gain_permille: int) -> tuple[int, ...]:
    """The lookup table that scales grey levels by `gain_permille` / 1000 (cached: one per gain)."""
    return tuple(min(255, (level * gain_permille + 500) // 1000) for level in range(256))


def difference(
    a: Signature, b: Signature, mask: Mask | None = None, *, stop_above: float = math.inf
) -> float:
    """How much the scene changed from `a` to `b`: the mean absolute grey-level difference (0-255) of
    the most changed block once brightness is evened out; infinite for frames of different sizes.
    Where one is a band (or both are), the rows they share are compared.

    With `stop_above`, the comparison ends at the first grid with a block above it and returns that
    block's difference (enough to say "changed", cheaper for frames that did change).
    """
    if a.size != b.size or a.frame_size != b.frame_size:
        return math.inf
    rows = min(a.rows, b.rows)
    first, second = a.picture(rows), b.picture(rows)
    first_mean, second_mean = a.mean, b.mean
    if rows != a.rows or rows != b.rows:
        kept = None
        if mask:
            kept = Image.new("L", first.size, 255)
            for box in mask.boxes(a.frame_size, a.size):
                kept.paste(0, box)
        first_mean, second_mean = ImageStat.Stat(first, kept).mean[0], ImageStat.Stat(second, kept).mean[0]
    if second_mean > 1 and abs(first_mean / second_mean - 1) > 0.002:
        second = second.point(_gain_table(round(1000 * first_mean / second_mean)))
    changed = ImageChops.difference(first, second).convert("F")
    worst = 0.0
    # Blocks on a grid and on the grid shifted by half a block each way: a vehicle straddling four
    # blocks of one grid fills most of one block of another.
    for offset in _OFFSETS:
        blocks = _block_means(changed, offset)
        if mask:
            coverage = mask.coverage(a.frame_size, a.size, offset, rows)
            blocks = tuple(
                level / kept
                for level, kept in zip(blocks, coverage, strict=True)
                if kept >= MIN_BLOCK_COVERAGE
            )
        worst = max(worst, max(blocks, default=0.0))
        if worst > stop_above:
            break
    return worst
