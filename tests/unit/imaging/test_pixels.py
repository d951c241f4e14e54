"""Preprocessing: the same pixels as the plain whole-image pipeline, for any image, at a
cost bounded by the output; hostile shapes refused."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageOps

from images import chelsea, encode
from imgrec.imaging.header import ImageLimits, ImageRejected
from imgrec.imaging.pixels import load_image, resize_shorter

WIDE = ImageLimits(max_pixels=10**9, max_aspect_ratio=1000)


def plain_pipeline(data: bytes) -> np.ndarray:
    """What torchvision's Resize(256) + CenterCrop(224) does with Pillow, written plainly."""
    img = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    if img.mode in ("I;16", "I"):
        arr = np.asarray(img, dtype=np.float32)
        img = Image.fromarray((arr * (255.0 / (float(arr.max()) or 1.0))).clip(0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img = Image.new("RGB", rgba.size, (255, 255, 255))
        img.paste(rgba, mask=rgba.getchannel("A"))
    img = img.convert("RGB").resize(resize_shorter(img.size, 256), Image.Resampling.BILINEAR)
    left, top = round((img.width - 224) / 2), round((img.height - 224) / 2)
    return np.asarray(img.crop((left, top, left + 224, top + 224)))


def _variant(size: tuple[int, int], mode: str) -> Image.Image:
    img = chelsea().resize(size)
    if mode == "I;16":
        return Image.fromarray(np.asarray(img.convert("L"), dtype=np.uint16) * 257)
    if mode == "P":
        return img.quantize(64)
    if mode == "RGBA":
        rgba = np.asarray(img.convert("RGBA")).copy()
        rgba[::3, :, 3] = 0
        return Image.fromarray(rgba)
    return img.convert(mode)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "I;16", "CMYK"])
@pytest.mark.parametrize("size", [(451, 300), (300, 451), (50, 40), (257, 256), (1000, 333), (97, 1500)])
def test_same_pixels_as_the_plain_pipeline(size, mode, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(_variant(size, mode), "TIFF" if mode == "CMYK" else "PNG", exif=exif.tobytes())
    assert np.array_equal(load_image(data, WIDE), plain_pipeline(data))


@pytest.mark.parametrize("size", [(3000, 2000), (2000, 3000), (6000, 800)])
@pytest.mark.parametrize("orientation", [1, 6])
def test_large_images_go_in_bands_with_the_same_pixels(size, orientation):
    """Past a few megapixels the image is resized band by band; Pillow may run its two
    passes in the other order, which moves a value by one level at most."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(_variant(size, "RGBA"), "PNG", exif=exif.tobytes())
    diff = np.abs(load_image(data, WIDE).astype(int) - plain_pipeline(data))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.2


@pytest.mark.parametrize("size", [(1, 50_000), (10_000, 1), (2100, 100)])
def test_absurd_shapes_are_refused(size):
    data = encode(Image.new("L", size), "PNG")
    with pytest.raises(ImageRejected, match="too long and thin") as exc:
        load_image(data)
    assert exc.value.status == 422
    assert load_image(encode(Image.new("L", (2000, 100)), "PNG")).shape == (224, 224, 3)  # 20:1 is fine


_MEASURE = """
import json, resource, sys
from imgrec.imaging.pixels import load_image
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
load_image(data)
print(json.dumps({"mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}))
"""


def test_the_largest_allowed_image_costs_little_more_than_its_pixels(tmp_path):
    """A 40-megapixel RGBA PNG decodes to 159 MB; everything else stays small (the plain
    pipeline takes about 500 MB: whole-image conversion and resize copies)."""
    arr = np.zeros((6300, 6300, 4), np.uint8)
    arr[::7, :, 0], arr[..., 3] = 255, 200
    path = tmp_path / "big.png"
    Image.fromarray(arr).save(path, "PNG")
    del arr
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["mb"] < 200
