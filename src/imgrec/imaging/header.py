"""What an upload is, from its header alone: format, pixel count, shape.

The web tier refuses a file with this before anything is stored or queued, and
the worker checks again before it decodes (`pixels`). Nothing here decodes pixels,
and nothing here needs the classifier: the web tier never loads onnxruntime.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import BinaryIO

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


def open_checked(data: bytes | BinaryIO, limits: ImageLimits) -> Image.Image:
    """Open lazily (the header only) and check format, size and shape; raise ImageRejected.

    `data` is the image's bytes, or a binary file positioned at its start."""
    if not data:
        raise ImageRejected("the file is empty")
    try:
        img = Image.open(data if hasattr(data, "read") else io.BytesIO(data))
        fmt, (w, h) = img.format, img.size
    except Exception:  # noqa: BLE001 - hostile bytes: each format plugin fails its own way (OSError, struct.error...)
        raise ImageRejected("not an image (or a format we cannot read)") from None
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
    return img
