"""Decode an image and prepare it exactly as EfficientNet-Lite0 was trained.

Decode, apply EXIF orientation, convert to RGB, resize the shorter side to 256
(bilinear), centre-crop 224x224, as uint8. Scaling and normalisation run inside
the ONNX graph (see `model`), batched, which is cheaper than numpy per image.
"""

from __future__ import annotations

import io
import warnings
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imgrec.errors import BadInput

ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF", "TIFF"})

# Our own pixel limit is checked from the header before decoding; Pillow's check
# would otherwise warn or raise with its own (different) limit.
Image.MAX_IMAGE_PIXELS = None


class ImageRejected(BadInput):
    """The bytes are not an image we can classify; the message says why, for a person."""

    status = 422


def open_checked(data: bytes | BinaryIO, max_pixels: int) -> Image.Image:
    """Open lazily (the header only) and check format and size; raise ImageRejected.

    `data` is the image's bytes, or a binary file positioned at its start."""
    if not data:
        raise ImageRejected("the file is empty")
    try:
        img = Image.open(data if hasattr(data, "read") else io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageRejected("not an image (or a format we cannot read)") from None
    if img.format not in ACCEPTED_FORMATS:
        raise ImageRejected(
            f"unsupported image format {img.format}; accepted: JPEG, PNG, WebP, BMP, GIF, TIFF", status=415
        )
    w, h = img.size
    if w * h > max_pixels:
        raise ImageRejected(f"image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,}")
    if w < 1 or h < 1:
        raise ImageRejected("image has no pixels")
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16/32-bit greyscale: scale to 8 bits rather than clip.
        arr = np.asarray(img, dtype=np.float32)
        hi = float(arr.max()) or 1.0
        img = Image.fromarray((arr * (255.0 / hi)).clip(0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent pixels carry arbitrary colours: show them on white, as a viewer does.
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def resize_shorter(size: tuple[int, int], shorter: int) -> tuple[int, int]:
    """torchvision's Resize(int) arithmetic: the longer side is truncated, not rounded."""
    w, h = size
    if w <= h:
        return shorter, int(shorter * h / w)
    return int(shorter * w / h), shorter


def load_image(
    data: bytes, *, max_pixels: int, resize: int = 256, crop: int = 224, draft: bool = False
) -> np.ndarray:
    """Return the centre crop as a ``crop x crop x 3`` uint8 array, or raise ImageRejected."""
    img = open_checked(data, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. Pillow's "truncated/corrupt EXIF" notes
            if draft and img.format == "JPEG":
                # DCT scaling: decode big JPEGs at 1/2, 1/4 or 1/8 size, never below `resize`.
                img.draft("RGB", (resize, resize))
            img.seek(0)  # first frame of a GIF or multi-page TIFF
            img = ImageOps.exif_transpose(img)
            img = _to_rgb(img)
            img = img.resize(resize_shorter(img.size, resize), Image.Resampling.BILINEAR)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageRejected(f"the image could not be decoded ({exc})") from None
    w, h = img.size
    left, top = int(round((w - crop) / 2.0)), int(round((h - crop) / 2.0))
    img = img.crop((left, top, left + crop, top + crop))
    return np.asarray(img, dtype=np.uint8)
