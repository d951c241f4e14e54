"""The containers tier (`make test-containers`, marker `containers`; `make test` leaves it
out): Docker's engine, the local base image and the image, once per session, each step
timed and the times printed at the end."""

from __future__ import annotations

import os

import pytest

import dockerhost


def _needed(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what}: required in CI (make test-containers installs what it needs)")
    pytest.skip(what)


@pytest.fixture(scope="session")
def docker_engine() -> None:
    with dockerhost.timed("Docker engine") as step:
        try:
            step.note = dockerhost.start_engine()
        except (RuntimeError, FileNotFoundError) as exc:
            _needed(str(exc))


@pytest.fixture(scope="session")
def base_image(docker_engine) -> str:
    with dockerhost.timed("base image (debootstrap, docker import)") as step:
        name, made = dockerhost.base_image()
        step.note = f"{name}: {'made now' if made else 'there already'}"
    return name


@pytest.fixture(scope="session")
def image(base_image, tmp_path_factory) -> str:
    log = tmp_path_factory.mktemp("build") / "docker-build.log"
    with dockerhost.timed("image (docker build)") as step:
        dockerhost.build(base_image, log)
        text = log.read_text()
        step.note = (f"{dockerhost.IMAGE} from {base_image}: {text.count('Using cache')} of {text.count('Step ')} steps "
                     f"from Docker's cache (log: {log})")
    return dockerhost.IMAGE


def pytest_terminal_summary(terminalreporter) -> None:
    if dockerhost.TIMINGS:
        terminalreporter.section("containers: how long each step took")
        for step, seconds, note in dockerhost.TIMINGS:
            terminalreporter.line(f"{seconds:7.1f} s  {step}: {note}")
