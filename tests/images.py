"""Test images made on the fly from real photographs, in every format and mode."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image

# Real photographs that scikit-image ships, with the label our model gives each.
SKIMAGE_DATA = Path(__import__("skimage").__file__).parent / "data"
PHOTOS = {"chelsea.png": "tiger cat", "coffee.png": "espresso", "rocket.jpg": "missile"}
CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def chelsea() -> Image.Image:
    return Image.open(SKIMAGE_DATA / "chelsea.png").convert("RGB")


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A valid few-hundred-byte PNG that claims width x height pixels (all zeros)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    row = b"\x00" + b"\x00" * width
    idat = zlib.compress(row * 16, 9)  # only the first rows; enough to be a "real" header
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def write_folder(folder: Path, images: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in images.items():
        (folder / name).write_bytes(data)
    return folder


PHOTO_FILES = ["chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png", "motorcycle_left.png", "horse.png"]


def photo_variants(n: int) -> dict[str, bytes]:
    """n distinct real photographs: crops, flips and sizes of the ones scikit-image ships."""
    bases = [Image.open(SKIMAGE_DATA / f).convert("RGB") for f in PHOTO_FILES]
    out = {}
    for i in range(n):
        img = bases[i % len(bases)]
        k = i // len(bases)
        w, h = img.size
        margin = (k % 5) * 0.04
        img = img.crop((int(w * margin), int(h * margin), int(w * (1 - margin / 2)), int(h * (1 - margin / 2))))
        if k % 2:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        scale = 0.6 + 0.1 * (k % 4)
        img = img.resize((max(32, int(img.width * scale)), max(32, int(img.height * scale))))
        stem = PHOTO_FILES[i % len(bases)].split(".")[0]
        out[f"test_{i}_{stem}.jpg"] = encode(img, "JPEG", quality=90)
    return out
