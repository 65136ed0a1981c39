"""Image sniffing by magic bytes: the formats the Plate Recognizer API reads."""

from __future__ import annotations

import io

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png"}
# A 48-megapixel phone photo fits; a decompression bomb does not.
MAX_DOWNSCALE_PIXELS = 50_000_000


def sniff_format(data: bytes) -> str | None:
    """ "jpeg" or "png" when `data` starts like one, else None (no decoding, so it is cheap and safe)."""
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data.startswith(PNG_MAGIC):
        return "png"
    return None


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
            if width * height > MAX_DOWNSCALE_PIXELS:
                raise ValueError(
                    f"the image claims {width}x{height} pixels, more than the {MAX_DOWNSCALE_PIXELS:,} "
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
