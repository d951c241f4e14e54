"""Shared fixtures: the real model (built once by `make setup`) and real photographs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from images import PHOTOS, SKIMAGE_DATA
from imgrec.engine.model import build
from imgrec.settings import Settings


@pytest.fixture(scope="session")
def model_dir() -> Path:
    path = Settings().model_path
    build(path)  # a no-op after `make setup`
    return path


@pytest.fixture(scope="session")
def classifier(model_dir):
    from imgrec.engine.classifier import Classifier

    return Classifier(model_dir, threads=2)


@pytest.fixture(scope="session")
def photo_bytes() -> dict[str, bytes]:
    return {name: (SKIMAGE_DATA / name).read_bytes() for name in PHOTOS}


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    from servers import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_server():
    from servers import MotoServer

    server = MotoServer()
    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)
    yield server
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()
