"""Test images made on the fly from real photographs, in every format and mode."""

from __future__ import annotations

import gzip
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


# --- files that cost far more before their pixels than their size says -------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def jpeg_with_markers(marker: int = 0xE1, count: int = 5_000_000, payload: bytes = b"") -> bytes:
    """A real JPEG with `count` segments of `marker` (APPn 0xE0-0xEF, COM 0xFE) before its
    frame: five million empty ones are 19 MB."""
    photo = encode(chelsea().resize((64, 48)), "JPEG")
    segment = bytes([0xFF, marker]) + struct.pack(">H", 2 + len(payload)) + payload
    return photo[:2] + segment * count + photo[2:]


def gif_with_comment(size: int = 19 << 20, block: int = 1) -> bytes:
    """A real GIF whose first frame follows one comment extension of `size` bytes in
    sub-blocks of `block` bytes (a 1-byte block costs 2 bytes of file)."""
    photo = encode(chelsea().resize((64, 48)).convert("P"), "GIF")
    screen_end = 13 + (3 << ((photo[10] & 7) + 1) if photo[10] & 0x80 else 0)
    blocks = (bytes([block]) + b"x" * block) * (size // (block + 1))
    return photo[:screen_end] + b"\x21\xfe" + blocks + b"\x00" + photo[screen_end:]


def png_with_chunks(count: int = 1_000_000, kind: bytes = b"tEXt") -> bytes:
    """A real PNG with `count` small ancillary chunks before its pixels."""
    photo = encode(chelsea().resize((64, 48)), "PNG")
    ihdr_end = 8 + 25
    return photo[:ihdr_end] + _png_chunk(kind, b"k\x00v") * count + photo[ihdr_end:]


def hostile_tiff(tile: int) -> bytes:
    """`tiff_with_tile(tile, 128)` for a tile of 20000 or 24000, kept gzipped in tests/fixtures
    (a few KB: making it takes seconds of deflating a gigabyte of zeros)."""
    return gzip.decompress((Path(__file__).parent / "fixtures" / f"tiff-128px-one-{tile}px-tile.tif.gz").read_bytes())


def tiff_with_tile(tile: int = 20000, size: int = 128) -> bytes:
    """A `size` x `size` RGB deflate TIFF made of one `tile` x `tile` tile of zeros: about a
    megabyte that a decoder which trusts the tile's size inflates to tile x tile x 3 bytes."""
    deflate = zlib.compressobj(6)
    row = bytes(tile * 3)
    body = b"".join(deflate.compress(row) for _ in range(tile)) + deflate.flush()
    entries = [  # (tag, type: 3 SHORT, 4 LONG, count, value or offset)
        (256, 4, 1, size), (257, 4, 1, size), (258, 3, 3, None), (259, 3, 1, 8), (262, 3, 1, 2), (277, 3, 1, 3),
        (284, 3, 1, 1), (322, 4, 1, tile), (323, 4, 1, tile), (324, 4, 1, None), (325, 4, 1, len(body)),
    ]
    ifd_at = 8
    extra_at = ifd_at + 2 + 12 * len(entries) + 4
    bits_at, data_at = extra_at, extra_at + 6
    out = bytearray(b"II*\x00" + struct.pack("<I", ifd_at) + struct.pack("<H", len(entries)))
    for tag, kind, count, value in entries:
        value = {258: bits_at, 324: data_at}.get(tag, value)
        field = struct.pack("<H", value) + b"\0\0" if kind == 3 and count == 1 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, kind, count) + field
    out += struct.pack("<I", 0) + struct.pack("<HHH", 8, 8, 8) + body
    return bytes(out)


def tiff_with_tags(count: int = 60000) -> bytes:
    """A real TIFF whose first IFD holds `count` private tags before anything else."""
    photo = bytearray(encode(chelsea().resize((64, 48)), "TIFF"))
    (ifd,) = struct.unpack("<I", photo[4:8])
    (entries,) = struct.unpack("<H", photo[ifd : ifd + 2])
    tags = photo[ifd + 2 : ifd + 2 + 12 * entries]
    next_ifd = photo[ifd + 2 + 12 * entries : ifd + 6 + 12 * entries]
    extra = b"".join(struct.pack("<HHII", 65000 - (i % 30000), 3, 1, 0) for i in range(count))
    new_ifd = struct.pack("<H", min(0xFFFF, entries + count)) + extra + bytes(tags) + bytes(next_ifd)
    return bytes(photo[:4]) + struct.pack("<I", len(photo)) + bytes(photo[8:]) + new_ifd
