"""What a worker costs on this machine, for the simulator: the seconds a batch of n
takes (fitted as a + b * n on the real classifier) and a worker's cold start (an
`imgrec worker` process from spawn to its "ready" line).

Both are measured once and kept in the data directory, keyed by what they depend on
(model, threads, batch limit, cores), so repeated simulations agree with each other.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from imgrec.lab.scaling.simulate import ServiceModel
from imgrec.settings import Settings

CACHE = Path("simulate") / "measured.json"
ROUNDS = 5


def sample_photos(count: int = 16) -> list[bytes]:
    """JPEGs of the photographs scikit-image ships (in the test extra), or, without it,
    smooth synthetic pictures of a typical photo's size."""
    from PIL import Image

    try:
        import skimage

        folder = Path(skimage.__file__).parent / "data"
        images = [Image.open(p).convert("RGB") for p in sorted(folder.glob("*.[pj][np]g"))]
        images = [im for im in images if min(im.size) >= 200]
    except ImportError:
        images = []
    if not images:
        y, x = np.mgrid[0:375, 0:500]
        images = [Image.fromarray(np.stack([(x + k * 40) % 256, (y * 2) % 256, (x + y) % 256], -1).astype(np.uint8))
                  for k in range(count)]
    out = []
    for im in (images * count)[:count]:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def measure_service(settings: Settings) -> ServiceModel:
    """Best of `ROUNDS` timings of the classifier on batches of 1, 2, 4, ... max_batch
    (one worker's threads), fitted by least squares."""
    from imgrec.engine.classifier import Classifier

    clf = Classifier.from_settings(settings)
    photos = sample_photos()
    clf.classify(photos[:2])  # the first runs allocate
    sizes = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= settings.max_batch] or [1]
    seconds = []
    for n in sizes:
        batch = [photos[i % len(photos)] for i in range(n)]
        best = float("inf")
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            clf.classify(batch)
            best = min(best, time.perf_counter() - t0)
        seconds.append(best)
    if len(sizes) == 1:
        return ServiceModel(0.0, seconds[0])
    b, a = np.polyfit(sizes, seconds, 1)
    return ServiceModel(max(0.0, float(a)), float(b))


def measure_cold_start(settings: Settings, rounds: int = 3) -> float:
    """Median seconds from spawning `imgrec worker` to its "ready" log line (imports,
    model load), on in-memory queue and store so that nothing else is touched."""
    env = {**os.environ, **settings.to_env(), "IMGREC_QUEUE": "memory://cold-start", "IMGREC_STORE": "memory://cold-start",
           "IMGREC_ALLOW_VOLATILE_QUEUE": "1"}
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "imgrec", "worker"], env=env, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        try:
            for line in proc.stderr:
                if " ready (" in line:
                    times.append(time.perf_counter() - t0)
                    break
        finally:
            proc.terminate()
            proc.wait(30)
            proc.stderr.close()
    if not times:
        raise RuntimeError("a worker never said it was ready; pass --cold-start")
    return statistics.median(times)


def measured(settings: Settings, refresh: bool = False) -> tuple[ServiceModel, float, str]:
    """(service model, cold start, where they came from), measured now or read back."""
    from imgrec.engine.model import build

    manifest, _ = build(settings.model_path, variant=settings.model)  # a no-op when the model is there
    key = {"model": manifest.sha256, "threads": settings.intra_op_threads, "max_batch": settings.max_batch,
           "cores": os.cpu_count()}
    path = settings.data_dir / CACHE
    if not refresh and path.is_file():
        data = json.loads(path.read_text())
        if data.get("key") == key:
            return ServiceModel(*data["service"]), data["cold_start"], f"measured earlier ({path})"
    service, cold_start = measure_service(settings), measure_cold_start(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "service": [service.a, service.b], "cold_start": cold_start}))
    return service, cold_start, f"measured now (kept in {path})"
