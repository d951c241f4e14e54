"""The classifier on real photographs, every format and mode, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from images import CAT_CLASSES, PHOTOS, chelsea, encode, png_bomb
from imgrec.engine.pipeline import ImageError, Prediction
from imgrec.imaging.header import ImageLimits
from imgrec.imaging.pixels import load_image, resize_shorter


def test_real_photographs_get_their_labels(classifier, photo_bytes):
    results = classifier.classify(list(photo_bytes.values()))
    assert [r.label for r in results] == list(PHOTOS.values())
    for r in results:
        assert isinstance(r, Prediction)
        assert len(r.top) == 5 and r.top[0].label == r.label and r.top[0].score == r.score
        assert [g.score for g in r.top] == sorted((g.score for g in r.top), reverse=True)
        assert 0.0 < r.score <= 1.0 and r.wnid.startswith("n")


def test_batch_equals_one_by_one(classifier, photo_bytes):
    batched = classifier.classify(list(photo_bytes.values()))
    single = [classifier.classify([b])[0] for b in photo_bytes.values()]
    assert [r.class_index for r in batched] == [r.class_index for r in single]
    np.testing.assert_allclose([r.score for r in batched], [r.score for r in single], rtol=1e-3)


def test_a_batch_is_inferred_in_calls_of_infer_batch(model_dir, photo_bytes):
    from imgrec.engine.classifier import Classifier

    clf = Classifier(model_dir)
    assert clf.infer_batch == 2, "lite0's own: fp32 infers two images per call"
    pixels = ([clf.decode(b) for b in photo_bytes.values()] * 3)[:7]  # an odd count: the last call is short
    whole = Classifier(model_dir, infer_batch=len(pixels)).infer(pixels)
    calls = []
    run = clf.run
    clf.run = lambda batch: calls.append(len(batch)) or run(batch)
    chunked = clf.infer(pixels)
    assert calls == [2, 2, 2, 1]
    assert [p.class_index for p in chunked] == [p.class_index for p in whole]
    np.testing.assert_allclose([p.score for p in chunked], [p.score for p in whole], rtol=1e-3)


@pytest.mark.parametrize(
    "fmt, mode, kw",
    [
        ("JPEG", "RGB", {"quality": 90}),
        ("JPEG", "L", {}),
        ("JPEG", "CMYK", {}),
        ("PNG", "RGBA", {}),
        ("PNG", "LA", {}),
        ("PNG", "P", {}),
        ("PNG", "I;16", {}),
        ("WEBP", "RGB", {"quality": 90}),
        ("BMP", "RGB", {}),
        ("GIF", "P", {}),
        ("TIFF", "RGB", {}),
        ("TIFF", "CMYK", {}),
    ],
)
def test_every_format_and_mode_is_a_cat(classifier, fmt, mode, kw):
    img = chelsea()
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img.convert("L"), dtype=np.uint16) * 257)
        assert img.mode == "I;16"
    elif mode == "P":
        img = img.quantize(256)
    else:
        img = img.convert(mode)
    (result,) = classifier.classify([encode(img, fmt, **kw)])
    assert isinstance(result, Prediction), result
    assert result.class_index in CAT_CLASSES, (fmt, mode, result.label)


def test_transparent_pixels_become_white():
    img = chelsea().convert("RGBA")
    img.putalpha(0)  # fully transparent: a blank white sheet, whatever the RGB values
    crop = load_image(encode(img, "PNG"))
    assert crop.min() == 255


def test_gif_first_frame_is_used(classifier):
    cat = chelsea().quantize(256)
    black = Image.new("P", cat.size)
    data = encode(cat, "GIF", save_all=True, append_images=[black])
    (result,) = classifier.classify([data])
    assert result.class_index in CAT_CLASSES


def test_exif_orientation_is_applied(classifier):
    upright = chelsea()
    # Stored rotated, with the EXIF tag that tells viewers to rotate it back.
    stored = upright.transpose(Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[0x0112] = 8  # orientation: viewers rotate it 90 degrees counter-clockwise
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    crop = load_image(data)
    reference = load_image(encode(upright, "JPEG", quality=95))
    assert np.abs(crop.astype(int) - reference.astype(int)).mean() < 4
    assert classifier.classify([data])[0].class_index in CAT_CLASSES


def test_resize_matches_torchvision_arithmetic():
    assert resize_shorter((500, 375), 256) == (341, 256)
    assert resize_shorter((375, 500), 256) == (256, 341)
    assert resize_shorter((256, 256), 256) == (256, 256)


def _truncated_jpeg() -> bytes:
    data = encode(chelsea(), "JPEG", quality=90)
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"this is not an image at all" * 10, "not an image"),
        (_truncated_jpeg(), "could not be decoded"),
        (png_bomb(), "over the limit"),
        (encode(Image.new("RGB", (8, 8)), "ICO"), "unsupported image format"),
    ],
    ids=["empty", "text", "truncated-jpeg", "png-bomb", "ico"],
)
def test_bad_image_fails_alone(classifier, photo_bytes, data, message):
    good = photo_bytes["coffee.png"]
    results = classifier.classify([good, data, good])
    assert isinstance(results[1], ImageError)
    assert message in results[1].error
    assert results[0].label == results[2].label == "espresso"


def test_pixel_limit_is_checked_before_decoding(model_dir):
    from imgrec.engine.classifier import Classifier

    small = Classifier(model_dir, threads=1, limits=ImageLimits(max_pixels=100 * 100))
    (r,) = small.classify([encode(Image.new("RGB", (101, 100)), "PNG")])
    assert isinstance(r, ImageError) and "over the limit of 10,000" in r.error
    (r,) = small.classify([encode(Image.new("RGB", (100, 100)), "PNG")])
    assert isinstance(r, Prediction)


def test_empty_batch(classifier):
    assert classifier.classify([]) == []
