"""Image sniffing by magic bytes: the formats the Plate Recognizer API reads."""

from __future__ import annotations

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png"}


def sniff_format(data: bytes) -> str | None:
    """ "jpeg" or "png" when `data` starts like one, else None (no decoding, so it is cheap and safe)."""
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data.startswith(PNG_MAGIC):
        return "png"
    return None
