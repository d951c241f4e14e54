"""Hostile bytes never escape as anything but a clear rejection: at the header check
(what the web tier runs on upload) and at decoding (what the worker runs)."""

from __future__ import annotations

import numpy as np
import pytest

from fuzz_corpus import corpus
from imgrec.engine.pipeline import ImageError
from imgrec.imaging.header import ImageLimits, ImageRejected, open_checked
from imgrec.imaging.pixels import load_image

LIMITS = ImageLimits()


def test_the_corpus_is_large_and_seeded():
    assert len(corpus()) > 600 and corpus() == corpus.__wrapped__()


@pytest.mark.parametrize("name", sorted(corpus()))
def test_header_check_and_decode_reject_or_accept_never_crash(name):
    data = corpus()[name]
    try:
        open_checked(data, LIMITS)
    except ImageRejected as exc:
        assert 400 <= exc.status < 500 and str(exc)
    try:
        crop = load_image(data, LIMITS, draft=True)
    except ImageRejected as exc:
        assert exc.status == 422 or exc.status == 415
    else:
        assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8


def test_the_classifier_answers_every_one(classifier):
    results = classifier.classify(list(corpus().values()))
    assert len(results) == len(corpus())
    assert all(isinstance(r, ImageError) or r.label for r in results)
