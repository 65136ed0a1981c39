"""Small real images made on the fly for tests (Pillow), so unit tests need nothing from ../shared."""

from __future__ import annotations

import io
import struct
import zlib

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


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A decompression bomb: a 1-bit greyscale PNG of width x height black pixels, ~100 kB for 30000 x
    30000 (2.7 GB once decoded to colour). Compressed row by row, so making it never holds the raw rows
    (112 MB at that size), and built with zlib and struct alone: Pillow refuses to write such a size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    compressor = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)  # filter type 0, then the row's bits
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header is rewritten to claim width x height pixels."""
    data = bytearray(jpeg())
    index = 2
    while data[index + 1] not in (0xC0, 0xC1, 0xC2):
        index += 2 + int.from_bytes(data[index + 2 : index + 4], "big")
    data[index + 5 : index + 9] = struct.pack(">HH", height, width)
    return bytes(data)
