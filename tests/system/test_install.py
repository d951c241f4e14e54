"""A serving-only install, as on a worker host: `pip install .` into an empty venv (no
torch, no test tools), the model pulled from a store another host pushed to, then
`imgrec classify`, `imgrec worker` (which pulls by itself), `imgrec web` and
`imgrec status` from that venv. Slow (pip), so one venv serves the whole module;
pip's cache makes a second run quicker."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from images import chelsea
from imgrec.engine.model import load_manifest
from imgrec.lab.harness import IMGREC, Part, WebPart, wait_until

ROOT = Path(__file__).resolve().parents[2]


def _checkout_copy(dest: Path) -> Path:
    """The project's files as a fresh clone has them (tracked files, as they are now)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if listed.returncode != 0:  # not a git checkout (an sdist): everything but the local clutter
        shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info"))
        return dest
    for name in listed.stdout.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def serving(tmp_path_factory) -> tuple[Path, Path]:
    """(the venv's bin folder, the checkout it was installed from)."""
    where = tmp_path_factory.mktemp("serving-install")
    checkout = _checkout_copy(where / "imgrec")
    subprocess.run([sys.executable, "-m", "venv", str(where / "venv")], check=True)
    pip = subprocess.run(
        [str(where / "venv" / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(checkout)],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    return where / "venv" / "bin", checkout


def _env(bin_dir: Path, data_dir: Path, shared: Path, **more: str) -> dict[str, str]:
    """A host's environment: its own data directory, the store and queue everyone shares;
    nothing of the development venv (no PYTHONPATH, its bin not on PATH)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMGREC_", "PYTHON", "VIRTUAL_ENV"))}
    return {
        **env,
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "IMGREC_DATA_DIR": str(data_dir),
        "IMGREC_STORE": (shared / "store").as_uri(),
        "IMGREC_QUEUE": f"sqlite://{shared / 'queue.sqlite3'}",
        **more,
    }


def test_serving_install_has_no_torch_and_no_test_tools(serving):
    bin_dir, _ = serving
    names = subprocess.run([str(bin_dir / "pip"), "list", "--format=json"], capture_output=True, text=True, check=True)
    installed = {p["name"].lower() for p in json.loads(names.stdout)}
    assert {"imgrec", "onnxruntime", "fastapi"} <= installed
    # (httpx is a serving dependency: imgrec.client and `imgrec submit` use it.)
    assert not installed & {"torch", "onnx", "pytest", "moto", "boto3", "redis", "matplotlib", "aiohttp", "scikit-image"}


def test_a_host_with_only_the_serving_install_pulls_the_model_and_serves(serving, model_dir, tmp_path):
    bin_dir, checkout = serving
    shared = tmp_path / "shared"
    # Host A, where the model was built (the development install), pushes it.
    host_a = {
        **_env(Path(IMGREC).parent, tmp_path / "host-a", shared),
        "IMGREC_MODEL_DIR": str(model_dir),
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    subprocess.run([IMGREC, "model", "push"], env=host_a, check=True, capture_output=True, timeout=120)
    # Host B has only the serving install.
    imgrec = str(bin_dir / "imgrec")
    host_b = _env(bin_dir, tmp_path / "host-b", shared)
    pulled = subprocess.run([imgrec, "model", "pull"], env=host_b, capture_output=True, text=True, timeout=120)
    assert pulled.returncode == 0 and "pulled" in pulled.stdout, pulled.stderr
    # the same model (a manifest written before the fields of models from a folder reads as one with their defaults)
    assert load_manifest(tmp_path / "host-b" / "model", verify=True) == load_manifest(model_dir)
    chelsea().save(tmp_path / "cat.png")
    classified = subprocess.run(
        [imgrec, "classify", str(tmp_path / "cat.png")], env=host_b, capture_output=True, text=True, timeout=120
    )
    assert classified.stdout.strip() == "cat:tiger cat", classified.stderr
    # Host C, a worker host with nothing but the settings: its worker pulls the model itself.
    web = WebPart(tmp_path / "web.log", host_b, program=imgrec)
    worker = Part(
        tmp_path / "worker.log", _env(bin_dir, tmp_path / "host-c", shared), "worker", "--idle-timeout", "120", program=imgrec
    )
    try:
        answer = httpx.post(web.url + "/", files={"myfile": ("cat.png", (tmp_path / "cat.png").read_bytes())}, timeout=120)
        assert answer.text == "cat:tiger cat"
        assert "pulled from the store" in worker.log.read_text()

        def status() -> dict:
            out = subprocess.run([imgrec, "status", "--json"], env=host_b, capture_output=True, text=True, timeout=60)
            return json.loads(out.stdout)

        view = wait_until(lambda: (v := status())["summary"]["completed"] >= 1 and v, 20, 1.0, "the worker's count")
        assert view["summary"]["workers"] == 1 and view["worker"][0]["host"]
        assert view["model"]["sha256"] == json.loads((model_dir / "manifest.json").read_text())["sha256"]
    finally:
        worker.stop()
        web.stop()
    # A missing extra names a command that works from this install (pip installed a folder).
    redis = subprocess.run(
        [imgrec, "worker"], env={**host_b, "IMGREC_QUEUE": "redis://127.0.0.1:1/0"}, capture_output=True, text=True, timeout=60
    )
    assert redis.returncode == 2 and f"pip install '{checkout}[redis]'" in redis.stderr.splitlines()[-1]
