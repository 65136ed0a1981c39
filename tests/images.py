"""Small real images made on the fly for tests (Pillow), so unit tests need nothing from ../shared."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw


def jpeg(width: int = 64, height: int = 48, text: str = "AB12CDE", quality: int = 80) -> bytes:
    image = Image.new("RGB", (width, height), (90, 110, 130))
    ImageDraw.Draw(image).text((2, height // 3), text, fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def png(width: int = 32, height: int = 24) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 180, 40)).save(out, "PNG")
    return out.getvalue()


def noisy_jpeg(width: int = 1600, height: int = 1200, seed: int = 7) -> bytes:
    """A JPEG that compresses badly (random noise): megabytes, for size-limit tests."""
    import random

    pixels = random.Random(seed).randbytes(width * height * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(out, "JPEG", quality=95)
    return out.getvalue()
