"""A seeded corpus of hostile image bytes: every accepted format (and a few refused
ones) encoded small, then cut short at many offsets and mutated at many places, plus
the cases an outside review found (a JPEG cut to its first bytes, a BMP with a bad
compression field, a PNG with an oversized text chunk, a 22-byte ICO, a corrupt WebP)."""

from __future__ import annotations

import random
import struct
import zlib
from functools import cache

from PIL import Image, PngImagePlugin

from images import chelsea, encode


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _found_by_review() -> dict[str, bytes]:
    small = chelsea().resize((64, 48))
    jpeg, png, bmp = encode(small, "JPEG"), encode(small, "PNG"), encode(small, "BMP")
    bad_bmp = bmp[:30] + struct.pack("<I", 99) + bmp[34:]  # compression field 99
    text = PngImagePlugin.PngInfo()
    text.add_text("big", "x" * 100, zip=True)
    huge_text = _png_chunk(b"zTXt", b"big\x00\x00" + zlib.compress(b"x" * (8 << 20)))
    oversized_text_png = png[:33] + huge_text + png[33:]
    webp = encode(small, "WEBP")
    return {
        **{f"jpeg-first-{n}": jpeg[:n] for n in (6, 20, 64, 120, 176)},
        "bmp-bad-compression": bad_bmp,
        "png-oversized-text": oversized_text_png,
        "ico-22-bytes": encode(small.resize((16, 16)), "ICO")[:22],
        "webp-corrupt": webp[:20] + b"\xff" * 16 + webp[36:],
    }


@cache
def corpus(seed: int = 20261129, mutations: int = 24) -> dict[str, bytes]:
    rng = random.Random(seed)
    img = chelsea().resize((64, 48))
    originals = {
        "jpeg": encode(img, "JPEG", quality=80),
        "jpeg-progressive": encode(img, "JPEG", progressive=True),
        "png": encode(img, "PNG"),
        "png-interlaced": encode(img.convert("P"), "PNG", interlace=1),
        "webp": encode(img, "WEBP"),
        "bmp": encode(img, "BMP"),
        "gif": encode(img.convert("P"), "GIF"),
        "tiff": encode(img, "TIFF"),
        "tiff-lzw": encode(img, "TIFF", compression="tiff_lzw"),
        "ico": encode(img.resize((32, 32)), "ICO"),
    }
    out = dict(_found_by_review())
    for name, data in originals.items():
        cuts = sorted({*range(0, min(len(data), 200), 9), *rng.sample(range(len(data)), min(16, len(data)))})
        out.update({f"{name}-cut-{n}": data[:n] for n in cuts if n})
        for i in range(mutations):
            raw = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            out[f"{name}-mutated-{i}"] = bytes(raw)
    return out


def image(size=(64, 48)) -> Image.Image:
    return chelsea().resize(size)
