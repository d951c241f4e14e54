"""A quantized variant built as a user builds it (`imgrec model build --variant
lite0-int8`, on a small calibration set to stay quick) and served by `imgrec up`."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import httpx
import pytest

from images import PHOTOS
from imgrec.engine import quantize
from imgrec.engine.classifier import Classifier
from imgrec.engine.model import load_manifest
from imgrec.lab.harness import IMGREC, ServiceProcess, service_env
from imgrec.messages import output_key

CALIBRATION = 16


def build(data_dir, *args) -> subprocess.CompletedProcess:
    env = service_env(data_dir, data_dir / "model-lite0-int8")
    return subprocess.run(
        [IMGREC, "model", "build", "--variant", "lite0-int8", "--calibration", str(CALIBRATION), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def int8_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("int8")
    done = build(data)
    assert done.returncode == 0, done.stderr
    assert "efficientnet-lite0-int8 built" in done.stdout
    return data / "model-lite0-int8"


def test_the_int8_model_is_recorded_whole_and_rebuilds_to_the_same_bytes(int8_dir, model_dir, tmp_path_factory):
    m = load_manifest(int8_dir, verify=True, variant="lite0-int8")
    assert (m.name, m.file, m.input_size, m.resize_size) == ("efficientnet-lite0-int8", "efficientnet-lite0-int8.onnx", 224, 256)
    assert m.calibration.startswith(f"{CALIBRATION} inputs from scikit-image's") and "seed" in m.calibration
    assert m.sha256 == hashlib.sha256((int8_dir / m.file).read_bytes()).hexdigest()
    fp32 = load_manifest(model_dir)
    assert (int8_dir / m.file).stat().st_size < (model_dir / fp32.file).stat().st_size / 2
    # Deterministic: the fp32 export of `make setup`, quantized again on the same calibration
    # images, gives the very bytes of the build above (its own export, its own calibration).
    again = tmp_path_factory.mktemp("int8-again") / "again.onnx"
    quantize.quantize(model_dir / fp32.file, again, "input", quantize.calibration_images(CALIBRATION, 256, 224), fp32.std[0])
    assert hashlib.sha256(again.read_bytes()).hexdigest() == m.sha256, "calibration and quantization are deterministic"


def test_the_int8_model_names_the_photographs_as_fp32_does(int8_dir, classifier, photo_bytes):
    int8 = Classifier(int8_dir)
    names = list(PHOTOS)
    got = int8.classify([photo_bytes[n] for n in names])
    assert [p.label for p in got] == [PHOTOS[n] for n in names]
    fp32 = classifier.classify([photo_bytes[n] for n in names])
    assert all(abs(a.score - b.score) < 0.15 for a, b in zip(got, fp32, strict=True))


def test_imgrec_up_serves_the_variant_it_is_told_to(int8_dir, photo_bytes, tmp_path):
    svc = ServiceProcess(tmp_path / "svc", int8_dir, "--max-workers", "1", env={"IMGREC_MODEL": "lite0-int8"})
    try:
        r = httpx.post(svc.url + "/", files={"myfile": ("cat.png", photo_bytes["chelsea.png"], "image/png")}, timeout=120)
        assert (r.status_code, r.text) == (200, "cat:tiger cat")
        r = httpx.post(
            svc.url + "/api/v1/classify", files={"file": ("cat.png", photo_bytes["chelsea.png"], "image/png")}, timeout=120
        )
        (result,) = r.json()["results"]
        assert json.loads(svc.store.get(output_key(result["job_id"])))["model"].startswith("efficientnet-lite0-int8@")
    finally:
        assert svc.stop() == 0


def test_a_folder_holding_another_variant_is_never_overwritten(model_dir, photo_bytes, tmp_path):
    here = tmp_path / "model"
    shutil.copytree(model_dir, here)
    (tmp_path / "cat.png").write_bytes(photo_bytes["chelsea.png"])
    env = service_env(tmp_path, here, model="lite2-int8")
    done = subprocess.run([IMGREC, "classify", str(tmp_path / "cat.png")], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert f"{here} holds the lite0 model; building lite2-int8 there would replace it" in " ".join(done.stderr.split())
    assert load_manifest(here, verify=True, variant="lite0") == load_manifest(model_dir)
