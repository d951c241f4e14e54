"""Decode an image and prepare it exactly as the model was trained.

Decode, apply EXIF orientation, convert to RGB, resize the shorter side to 256
(bilinear), centre-crop 224x224, as uint8. Scaling and normalisation run inside
the ONNX graph (see `imgrec.engine.model`), batched, which is cheaper than numpy per image.

The work is bounded: after decoding, the image is oriented, converted and resized
one band of rows at a time, and only the crop's columns are kept between the two
passes of the resize, so no whole-image copy is made beyond the decoded image
itself (JPEGs are decoded at reduced size where that is exact enough, see
`draft`), and a shape limit refuses a 1x50,000 PNG that would otherwise become a
256x12,800,000 intermediate. The pixels are exactly those of the plain pipeline
(convert the whole image, resize it, crop).

Every failure to parse or decode hostile bytes is an ImageRejected (a 4xx), never
another exception: Pillow's format plugins raise many kinds.
"""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image

from imgrec.imaging.header import ImageLimits, ImageRejected, open_checked

# EXIF orientation -> the transposition a viewer applies (as PIL.ImageOps.exif_transpose).
_ORIENT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = {5, 6, 7, 8}
_HIGH_DEPTH = ("I;16", "I;16B", "I;16L", "I", "F")
# An image up to this size goes through whole (the plain pipeline, a few copies of
# a few megapixels); a larger one in bands of rows of about _BAND_PIXELS.
_WHOLE_PIXELS = 4_000_000
_BAND_PIXELS = 1_000_000

def resize_shorter(size: tuple[int, int], shorter: int) -> tuple[int, int]:
    """torchvision's Resize(int) arithmetic: the longer side is truncated, not rounded."""
    w, h = size
    if w <= h:
        return shorter, int(shorter * h / w)
    return int(shorter * w / h), shorter


def _oriented_rows(w: int, h: int, orientation: int, y0: int, y1: int) -> tuple[int, int, int, int]:
    """Rows y0..y1 of the oriented image, as a box of the stored (unoriented) one of size w x h."""
    ow = h if orientation in _SWAPS_AXES else w
    x0, x1 = 0, ow
    inverse = {
        2: lambda x, y: (w - x, y), 3: lambda x, y: (w - x, h - y), 4: lambda x, y: (x, h - y),
        5: lambda x, y: (y, x), 6: lambda x, y: (y, h - x), 7: lambda x, y: (w - y, h - x),
        8: lambda x, y: (w - y, x),
    }.get(orientation, lambda x, y: (x, y))
    (ax, ay), (bx, by) = inverse(x0, y0), inverse(x1, y1)
    return min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)


def _to_rgb(img: Image.Image, high: float | None) -> Image.Image:
    """RGB, as a viewer shows it. `high` is the whole image's top value for 16/32-bit
    greyscale, which is scaled to 8 bits rather than clipped."""
    if img.mode == "RGB":
        return img
    if img.mode in _HIGH_DEPTH:
        arr = np.asarray(img, dtype=np.float32)
        img = Image.fromarray((arr * (255.0 / (high or 1.0))).clip(0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent pixels carry arbitrary colours: show them on white, as a viewer does.
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a damaged EXIF block: show the image as stored, as viewers do
        return 1


def load_image(
    data: bytes, limits: ImageLimits = ImageLimits(), *, resize: int = 256, crop: int = 224, draft: bool = False,
    straight: bool = False,
) -> np.ndarray:
    """Return the centre crop as a ``crop x crop x 3`` uint8 array, or raise ImageRejected.
    With `straight` the whole image is resized to ``crop x crop`` instead (no crop)."""
    img = open_checked(data, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. Pillow's "truncated/corrupt EXIF" notes
            if draft and img.format == "JPEG":
                # DCT scaling: decode big JPEGs at 1/2, 1/4 or 1/8 size, never below `resize`.
                img.draft("RGB", (resize, resize))
            img.seek(0)  # first frame of a GIF or multi-page TIFF
            img.load()
            return resized_square(img, crop) if straight else resized_crop(img, resize, crop)
    except Exception as exc:  # noqa: BLE001 - hostile bytes past the header: any decoder failure is the image's
        raise ImageRejected(f"the image could not be decoded ({type(exc).__name__}: {exc})") from None


def resized_crop(img: Image.Image, resize: int, crop: int) -> np.ndarray:
    """Orient, convert, resize the shorter side to `resize` and centre-crop.

    An image of up to a few megapixels goes through whole, as in the plain pipeline.
    A larger one goes one band of rows at a time: Pillow resizes in two passes, each
    rounding to 8 bits, so doing the horizontal pass band by band and keeping only
    the crop's columns, then the vertical pass on those columns, gives the same
    pixels (within one level where Pillow would have run the passes in the other
    order) while the only whole-image buffer is the decoded one.
    """
    orientation = _orientation(img)
    w, h = img.size
    ow, oh = (h, w) if orientation in _SWAPS_AXES else (w, h)
    rw, rh = resize_shorter((ow, oh), resize)
    left, top = int(round((rw - crop) / 2.0)), int(round((rh - crop) / 2.0))
    high = float(img.getextrema()[1]) if img.mode in _HIGH_DEPTH else None  # type: ignore[arg-type]  # one band: (min, max)
    if ow * oh <= _WHOLE_PIXELS:  # the plain pipeline
        whole = _to_rgb(_oriented(img, orientation), high).resize((rw, rh), Image.Resampling.BILINEAR)
        return np.asarray(whole.crop((left, top, left + crop, top + crop)), dtype=np.uint8)
    columns = Image.new("RGB", (crop, oh))
    step = max(1, _BAND_PIXELS // ow)
    for y0 in range(0, oh, step):
        y1 = min(oh, y0 + step)
        band = _oriented(img.crop(_oriented_rows(w, h, orientation, y0, y1)), orientation)
        band = _to_rgb(band, high).resize((rw, y1 - y0), Image.Resampling.BILINEAR)
        columns.paste(band.crop((left, 0, left + crop, y1 - y0)), (0, y0))
    resized = columns.resize((crop, rh), Image.Resampling.BILINEAR)
    return np.asarray(resized.crop((0, top, crop, top + crop)), dtype=np.uint8)


def resized_square(img: Image.Image, size: int) -> np.ndarray:
    """Orient, convert and resize the whole image to ``size x size`` (a model trained without
    cropping). The pixel limit bounds the one whole-image copy this makes."""
    high = float(img.getextrema()[1]) if img.mode in _HIGH_DEPTH else None  # type: ignore[arg-type]
    whole = _to_rgb(_oriented(img, _orientation(img)), high).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(whole, dtype=np.uint8)


def _oriented(img: Image.Image, orientation: int) -> Image.Image:
    return img.transpose(_ORIENT[orientation]) if orientation in _ORIENT else img
