"""Image sniffing by magic bytes and header, before anything decodes: the formats the API reads."""

from __future__ import annotations

import io
import struct

from bridge.core.errors import PayloadNotImage, PayloadTooLarge

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png"}
# The most pixels anything here decodes. A 48-megapixel phone photo (8064x6048) fits, and 8K video
# frames (33 MP) do; decoded to 3 bytes a pixel that is at most 150 MB per image being read. A
# decompression bomb does not fit: a 30000x30000 PNG is ~100 kB on the wire and 2.7 GB decoded.
MAX_IMAGE_PIXELS = 50_000_000
MAX_DOWNSCALE_PIXELS = MAX_IMAGE_PIXELS

# JPEG frame headers (SOF0..SOF15) carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range.
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length: TEM and the restart markers (SOI is skipped before the loop).
_JPEG_BARE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})


def sniff_format(data: bytes) -> str | None:
    """ "jpeg" or "png" when `data` starts like one, else None (no decoding, so it is cheap and safe)."""
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data.startswith(PNG_MAGIC):
        return "png"
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as the header of a PNG (IHDR) or JPEG (frame header) states it, without
    decoding anything; None when `data` is neither or its header is cut short.

    Read by hand rather than with Pillow: `Image.open` refuses images over Pillow's own global limit
    (`Image.MAX_IMAGE_PIXELS`) before saying how large they are, and the offline engine decodes with
    OpenCV, which has no header-only read.
    """
    if data.startswith(PNG_MAGIC):
        # The signature, then IHDR first of all chunks: length, type, width, height (big-endian).
        if len(data) >= 24 and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return width, height
        return None
    if data.startswith(JPEG_MAGIC):
        return _jpeg_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the JPEG's marker segments up to its frame header (ITU T.81, B.1.1 and B.2.2)."""
    index = 2  # past SOI
    end = len(data)
    while index + 1 < end:
        if data[index] != 0xFF:
            return None  # not a marker where one must be
        marker = data[index + 1]
        if marker == 0xFF:  # fill byte before a marker
            index += 1
            continue
        index += 2
        if marker in _JPEG_BARE_MARKERS:
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data, before any frame header
            return None
        if index + 2 > end:
            return None
        length = int.from_bytes(data[index : index + 2], "big")
        if marker in _JPEG_FRAME_MARKERS:
            if length < 7 or index + 7 > end:
                return None
            height, width = struct.unpack(">HH", data[index + 3 : index + 7])  # after length, precision
            return width, height
        if length < 2:
            return None
        index += length
    return None


def check_pixels(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """The (width, height) `data` claims, refused before anything decodes it when over `max_pixels`.

    Raises PayloadTooLarge over the cap, PayloadNotImage when no PNG or JPEG header states a size (a
    decoder would fail on it too, and its size could not be checked).
    """
    size = image_size(data)
    if size is None:
        raise PayloadNotImage("the image has no readable PNG or JPEG header (JPEG or PNG expected)")
    width, height = size
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"the image claims {width}x{height} pixels ({width * height:,}), more than the limit of "
            f"{max_pixels:,} pixels",
            width=width,
            height=height,
            max_pixels=max_pixels,
        )
    return size


def downscale_to_fit(
    image: bytes, max_bytes: int, *, quality: int = 85, attempts: int = 4
) -> tuple[bytes, float]:
    """Shrink `image` (keeping its aspect ratio) and re-encode it as JPEG until it fits in `max_bytes`.

    Returns the new bytes and the linear scale used (0 < scale < 1). Encoded size grows roughly with
    the pixel count, so each try scales by the square root of the size ratio, with a margin.
    Raises ValueError when the image cannot be decoded or made small enough.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(image)) as original:
            # The header alone says how large the decoded picture would be: a 1.5 KB JPEG can claim
            # 8000x8000 (~200 MB decoded). Refuse before decoding anything.
            width, height = original.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ValueError(
                    f"the image claims {width}x{height} pixels, more than the {MAX_IMAGE_PIXELS:,} "
                    "this bridge decodes"
                )
            original.load()
            picture = original.convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"the image cannot be decoded to be downscaled: {exc}") from None
    scale = 1.0
    size = len(image)
    for _ in range(attempts):
        scale *= min(0.9, (max_bytes / size) ** 0.5 * 0.9)
        resized = picture.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.LANCZOS)
        out = io.BytesIO()
        resized.save(out, "JPEG", quality=quality, optimize=True)
        size = out.tell()
        if size <= max_bytes:
            return out.getvalue(), round(scale, 4)
    raise ValueError(f"the image is still {size:,} bytes after scaling to {scale:.2f}")
