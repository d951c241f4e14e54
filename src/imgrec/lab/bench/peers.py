"""`imgrec bench peers`: imgrec beside what a user would pick instead, in one run.

The peers, each serving the same ONNX file with the same preprocessing (EXIF
orientation, RGB, DCT draft for JPEGs, the shorter side to 256 bilinear, a centre crop
of 224, uint8 NHWC: what the engine does) on the same cores:

- **BentoML** (2 workers, adaptive batching), from a Python where it is installed
  (`--bentoml-python`; `make peers` makes one): BentoML persists nothing and has no
  queue, so it is the price of imgrec's durability;
- the **engine's bare pipeline** (one single-threaded process per core, no HTTP, queue
  or store): the most this engine can give on this machine;
- the **plain bare pipeline** a user would write (no DCT draft), for scale.

Each round sends the same requests from the same aiohttp client to imgrec and to
BentoML, one after the other, and measures the bare pipelines beside them; the best of
each side's rounds is kept (on a shared machine noise only ever slows a round down).
Every answer is checked against the label the engine gives the image in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from imgrec.engine.model import load_manifest
from imgrec.lab.bench.e2e import bare_single_ms, fp32_counterpart, load_items, measure_cold_start
from imgrec.lab.bench.load import run_load
from imgrec.lab.harness import ServiceProcess, free_port, wait_until
from imgrec.settings import Settings

# The BentoML service: the engine's preprocessing written out plainly, the model's
# labels and file given by the bench. Batchable: BentoML gathers concurrent requests.
BENTO_SERVICE = '''
import json, os
import numpy as np
import bentoml
import onnxruntime as ort
from PIL import Image, ImageOps

MODEL, LABELS = os.environ["PEER_MODEL"], json.load(open(os.environ["PEER_LABELS"]))
INPUT, RESIZE, CROP = os.environ["PEER_INPUT"], int(os.environ["PEER_RESIZE"]), int(os.environ["PEER_CROP"])


def preprocess(img: Image.Image) -> np.ndarray:
    if img.format == "JPEG":
        img.draft("RGB", (RESIZE, RESIZE))
    img = ImageOps.exif_transpose(img).convert("RGB")
    w, h = img.size
    rw, rh = (RESIZE, int(RESIZE * h / w)) if w <= h else (int(RESIZE * w / h), RESIZE)
    img = img.resize((rw, rh), Image.Resampling.BILINEAR)
    left, top = int(round((rw - CROP) / 2.0)), int(round((rh - CROP) / 2.0))
    return np.asarray(img.crop((left, top, left + CROP, top + CROP)), dtype=np.uint8)


@bentoml.service(workers=int(os.environ.get("PEER_WORKERS", "2")), traffic={"timeout": 300})
class Classifier:
    def __init__(self) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(MODEL, options, providers=["CPUExecutionProvider"])

    @bentoml.api(batchable=True, max_batch_size=32, max_latency_ms=5000)
    def classify(self, file: list[Image.Image]) -> list[dict]:
        logits = self.session.run(None, {INPUT: np.stack([preprocess(i) for i in file])})[0]
        return [{"label": LABELS[int(k)]} for k in logits.argmax(axis=1)]
'''


class BentoPeer:
    """`bentoml serve` of BENTO_SERVICE in its own folder, on a free port."""

    def __init__(self, python: str, model_dir: Path, workdir: Path, workers: int) -> None:
        manifest = load_manifest(model_dir)
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "service.py").write_text(BENTO_SERVICE)
        labels = workdir / "labels.json"
        labels.write_text(json.dumps([x["label"] for x in sorted(manifest.labels, key=lambda x: x["index"])]))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ, "PEER_MODEL": str(model_dir / manifest.file), "PEER_LABELS": str(labels),
            "PEER_INPUT": manifest.input_name, "PEER_RESIZE": str(manifest.resize_size),
            "PEER_CROP": str(manifest.input_size), "PEER_WORKERS": str(workers),
            "BENTOML_DO_NOT_TRACK": "True", "BENTOML_HOME": str(workdir / "bentoml-home"),
        }
        self.log = (workdir / "bentoml.log").open("w")
        self.proc = subprocess.Popen(
            [python, "-m", "bentoml", "serve", "service:Classifier", "--port", str(self.port), "--host", "127.0.0.1"],
            cwd=workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_until(self._ready, 180, 0.5, f"BentoML to start (log: {workdir / 'bentoml.log'})")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"bentoml exited with {self.proc.returncode}; see its log")
        try:
            with urllib.request.urlopen(self.url + "/readyz", timeout=5) as resp:
                return resp.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _best(runs: list) -> dict:
    best = max(runs, key=lambda r: r.images_per_second)
    return {**best.summary(), "rounds_images_per_second": [round(r.images_per_second, 2) for r in runs]}


def _failures(runs: list) -> int:
    return sum(r.lost + r.server_errors + r.client_errors + len(r.wrong) for r in runs)


def run_peers(
    settings: Settings, folder: Path, bentoml_python: str | None, requests: int = 600, concurrency: int = 64,
    rounds: int = 2, batch_requests: int = 12,
) -> dict:
    """One run: bare pipelines, imgrec (single- and 100-image requests) and BentoML, in
    `rounds` interleaved rounds; the ratios the targets are read from."""
    from imgrec.lab.bench.engine import engine_bare, plain_bare

    model_dir = settings.model_path
    load_manifest(model_dir, variant=settings.model)
    plain_onnx = (plain_dir := fp32_counterpart(settings)) / load_manifest(plain_dir).file
    cores = os.cpu_count() or 1
    items = load_items(folder, model_dir)
    images = [i.data for i in items]
    report: dict = {"model": settings.model, "machine": {"cores": cores}, "images": len(items), "requests": requests,
                    "concurrency": concurrency, "rounds": rounds, "when": time.strftime("%Y-%m-%d %H:%M")}
    engine_runs, plain_runs, single, hundred, bento = [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="imgrec-peers-") as tmp:
        workdir = Path(tmp)
        env: dict[str, str] = {"IMGREC_MODEL": settings.model}
        report["cold_start_seconds"] = round(measure_cold_start(model_dir, items, workdir, env), 3)
        svc = ServiceProcess(workdir / "imgrec", model_dir, "--min-workers", str(cores), "--max-workers", str(cores),
                             "--scale-in-delay", "300", env=env)
        peer = BentoPeer(bentoml_python, model_dir, workdir / "bentoml", cores) if bentoml_python else None
        try:
            run_load(svc.url, items, cores * 32, cores * 8)  # every worker started and warm
            if peer:
                run_load(peer.url, items, cores * 32, cores * 8, "/classify")
            idle = run_load(svc.url, items, 30, 1)
            for _ in range(rounds):
                engine_runs.append(engine_bare(model_dir, images, cores))
                plain_runs.append(plain_bare(plain_onnx, images, cores))
                single.append(run_load(svc.url, items, requests, concurrency))
                hundred.append(run_load(svc.url, items, batch_requests, max(1, cores), per_request=100))
                if peer:
                    bento.append(run_load(peer.url, items, requests, concurrency, "/classify"))
        finally:
            svc.stop()
            if peer:
                peer.stop()
    engine_rate, plain_rate = max(r[0] for r in engine_runs), max(r[0] for r in plain_runs)
    report["bare"] = {"engine": round(engine_rate, 2), "plain": round(plain_rate, 2),
                      "engine_rounds": [round(r[0], 2) for r in engine_runs]}
    report["imgrec_single"] = _best(single)
    report["imgrec_100_per_request"] = _best(hundred)
    report["idle_single_request"] = idle.summary()
    report["bare_single_image_ms"] = round(bare_single_ms(model_dir, items), 2)
    report["idle_p50_over_bare_ms"] = round(idle.percentile(50) - report["bare_single_image_ms"], 2)
    report["bentoml"] = _best(bento) if bento else None
    report["checked_failures"] = {"imgrec": _failures([*single, *hundred, idle]), "bentoml": _failures(bento)}
    rate = report["imgrec_single"]["images_per_second"]
    report["ratios"] = {
        "imgrec / bentoml": round(rate / report["bentoml"]["images_per_second"], 3) if bento else None,
        "imgrec single / engine bare": round(rate / engine_rate, 3),
        "imgrec 100 per request / engine bare": round(report["imgrec_100_per_request"]["images_per_second"] / engine_rate, 3),
        "imgrec single / plain bare": round(rate / plain_rate, 3),
    }
    return report
