"""Shared fixtures: the real model (built once by `make setup`) and real photographs;
and each test's tier, from its folder (`unit`, `contract`, `system`, `browser`,
`deploy`, `lab`, `docs`, `containers`: see pyproject.toml), so `make test-fast` can pick
the fast ones and `make test` leave the containers to `make test-containers`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from images import PHOTOS, SKIMAGE_DATA
from imgrec.engine.model import build
from imgrec.settings import Settings

TIERS = {
    "unit": "unit", "contracts": "contract", "system": "system", "browser": "browser", "deploy": "deploy", "lab": "lab",
    "docs": "docs", "containers": "containers",
}


def pytest_collection_modifyitems(config, items) -> None:
    root = Path(__file__).parent
    for item in items:
        folder = item.path.relative_to(root).parts[0]
        item.add_marker(TIERS[folder])  # a test outside the tiers' folders is an error


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
