"""What an upload is, from its header alone: format, pixel count, shape, and what its
decoder would allocate.

The web tier refuses a file with this before anything is stored or queued, and
the worker checks again before it decodes (`pixels`). Nothing here decodes pixels,
and nothing here needs the classifier: the web tier never loads onnxruntime.

The check costs bounded time and memory whatever the file holds. Everything before
the pixels (JPEG APP and COM segments, GIF comments and extensions, PNG chunks,
TIFF tags) is read through a budget: at most HEADER_READS reads (about one per
segment), HEADER_BYTES bytes and HEADER_SECONDS seconds. Without it, a 19 MB JPEG of
five million empty APP markers cost 9.5 s of CPU, and a GIF of one comment in
two-byte blocks 800 MB, per upload. A legitimate photograph uses a few dozen reads
(a phone's depth map in extended XMP is a few hundred 64 KB segments: within it).

Decoders must not allocate beyond the pixel budget either: a TIFF's tiles are
checked against it (a 128x128 image declaring one 20000x20000 deflate tile took a
worker to 1.3 GB), and its strips' and tiles' byte counts against the file's size.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import IO, cast

from PIL import Image

from imgrec.errors import BadInput
from imgrec.settings import Settings

ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF", "TIFF"})

# Our own pixel limit is checked from the header before decoding; Pillow's check
# would otherwise warn or raise with its own (different) limit.
Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True)
class ImageLimits:
    """What an image may be; the defaults are the settings' (IMGREC_MAX_PIXELS, ...)."""

    max_pixels: int = Settings.model_fields["max_pixels"].default
    max_aspect_ratio: float = Settings.model_fields["max_aspect_ratio"].default

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageLimits:
        return cls(settings.max_pixels, settings.max_aspect_ratio)


class ImageRejected(BadInput):
    """The bytes are not an image we can classify; the message says why, for a person."""

    status = 422


HEADER_READS = 4096
HEADER_BYTES = 16 << 20
HEADER_SECONDS = 1.0


class _OverBudget(Exception):
    """Raised from a read once the header has used up its budget."""


class _Budgeted(io.RawIOBase):
    """A binary file that lets a format plugin read its header within the budget; `lift`
    ends the budget once the header is read (decoding the pixels reads the rest)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._reads = self._bytes = 0
        self._deadline: float | None = time.monotonic() + HEADER_SECONDS

    def lift(self) -> None:
        self._deadline = None

    def _spend(self, n: int) -> None:
        if self._deadline is None:
            return
        self._reads, self._bytes = self._reads + 1, self._bytes + n
        if self._reads > HEADER_READS or self._bytes > HEADER_BYTES or time.monotonic() > self._deadline:
            raise _OverBudget(f"{self._reads} reads, {self._bytes:,} bytes")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._spend(len(data))
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()


def open_checked(data: bytes | IO[bytes], limits: ImageLimits) -> Image.Image:
    """Open lazily (the header only, within its budget) and check format, size, shape and
    what the decoder would allocate; raise ImageRejected.

    `data` is the image's bytes, or a binary file positioned at its start."""
    if not data:
        raise ImageRejected("the file is empty")
    raw: IO[bytes] = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    start = raw.tell()
    budgeted = _Budgeted(raw)
    try:
        img = Image.open(cast(IO[bytes], budgeted))
        fmt, (w, h) = img.format, img.size
    except _OverBudget:
        raise ImageRejected(
            f"the file holds too much before its pixels (metadata, comments, chunks or tags past "
            f"{HEADER_READS:,} segments, {HEADER_BYTES >> 20} MB or {HEADER_SECONDS:g} s to read); "
            "save the image again without them"
        ) from None
    except Exception:  # noqa: BLE001 - hostile bytes: each format plugin fails its own way (OSError, struct.error...)
        raise ImageRejected("not an image (or a format we cannot read)") from None
    budgeted.lift()
    if fmt not in ACCEPTED_FORMATS:
        raise ImageRejected(f"unsupported image format {fmt}; accepted: JPEG, PNG, WebP, BMP, GIF, TIFF", status=415)
    if w < 1 or h < 1:
        raise ImageRejected("image has no pixels")
    if w * h > limits.max_pixels:
        raise ImageRejected(f"image is {w}x{h} = {w * h:,} pixels, over the limit of {limits.max_pixels:,}")
    if max(w, h) > limits.max_aspect_ratio * min(w, h):
        raise ImageRejected(
            f"image is {w}x{h}: its shape is over {limits.max_aspect_ratio:g}:1, too long and thin to classify "
            "(the centre crop would see almost none of it)"
        )
    if fmt == "TIFF":
        _check_tiff_layout(img, limits, _size_of(raw, start))
    return img


def _size_of(raw: IO[bytes], start: int) -> int:
    here = raw.tell()
    end = raw.seek(0, io.SEEK_END)
    raw.seek(here)
    return end - start


# TIFF tags: TileWidth, TileLength, StripByteCounts, TileByteCounts.
_TILE_WIDTH, _TILE_LENGTH, _STRIP_BYTES, _TILE_BYTES = 322, 323, 279, 325
SMALL_TILE = 1 << 22  # a tile this large (pixels) is never refused for being larger than its image


def _check_tiff_layout(img: Image.Image, limits: ImageLimits, file_size: int) -> None:
    """What libtiff would allocate: a tile's buffer (width x length, whatever the image's
    size) must stay within the pixel budget, and no strip or tile may declare more bytes
    than the file has."""
    tags = getattr(img, "tag_v2", {})
    w, h = img.size
    tile_w, tile_h = int(tags.get(_TILE_WIDTH, 0) or 0), int(tags.get(_TILE_LENGTH, 0) or 0)
    if tile_w or tile_h:
        area = tile_w * tile_h
        if area > limits.max_pixels or area > max(4 * w * h, SMALL_TILE):
            raise ImageRejected(
                f"the TIFF declares {tile_w}x{tile_h} tiles for a {w}x{h} image: decoding one would take far "
                f"more memory than the image (the limit is {limits.max_pixels:,} pixels); save it untiled"
            )
    for tag in (_STRIP_BYTES, _TILE_BYTES):
        counts = tags.get(tag) or ()
        counts = counts if isinstance(counts, tuple | list) else (counts,)
        if any(int(c) > file_size for c in counts):
            raise ImageRejected("the TIFF declares strips or tiles larger than the whole file: it is damaged")
