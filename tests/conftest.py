"""Shared fixtures: the real model (built once by `make setup`) and real photographs."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgrec.model import build
from imgrec.settings import Settings

# Real photographs that scikit-image ships, with the label our model gives each.
SKIMAGE_DATA = Path(__import__("skimage").__file__).parent / "data"
PHOTOS = {"chelsea.png": "tiger cat", "coffee.png": "espresso", "rocket.jpg": "missile"}
CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="session")
def model_dir() -> Path:
    path = Settings().model_path
    build(path)  # a no-op after `make setup`
    return path


@pytest.fixture(scope="session")
def classifier(model_dir):
    from imgrec.engine import Classifier

    return Classifier(model_dir, threads=2)


@pytest.fixture(scope="session")
def photo_bytes() -> dict[str, bytes]:
    return {name: (SKIMAGE_DATA / name).read_bytes() for name in PHOTOS}
