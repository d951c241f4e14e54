"""`imgrec bench engine`: the engine's stages beside a plain onnxruntime + Pillow loop.

Both run in the same process on the same images, one after the other, so the
ratio is meaningful on a noisy shared machine even when absolute numbers are not.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from imgrec.client.files import IMAGE_SUFFIXES
from imgrec.engine.classifier import Classifier


@dataclass
class StageTimes:
    batch_size: int
    decode_ms: float  # decode + orientation + resize + crop, per image
    normalize_ms: float
    inference_ms: float
    plain_ms: float  # the plain loop, everything, per image

    @property
    def engine_ms(self) -> float:
        return self.decode_ms + self.normalize_ms + self.inference_ms

    @property
    def ratio(self) -> float:
        """Engine images/s over plain images/s (>1: the engine is faster)."""
        return self.plain_ms / self.engine_ms


def read_images(folder: Path) -> list[bytes]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images in {folder}")
    return [p.read_bytes() for p in files]


def _plain_loop(session: ort.InferenceSession, images: list[bytes], batch_size: int, resize: int = 256,
                crop: int = 224) -> None:
    """What one writes without thinking about speed: Pillow, float math, default session."""
    for start in range(0, len(images), batch_size):
        crops = []
        for data in images[start : start + batch_size]:
            img = Image.open(io.BytesIO(data)).convert("RGB")
            w, h = img.size
            s = resize / min(w, h)
            img = img.resize((int(w * s), int(h * s)), Image.Resampling.BILINEAR)
            w, h = img.size
            left, top = round((w - crop) / 2), round((h - crop) / 2)
            crops.append(np.asarray(img.crop((left, top, left + crop, top + crop)), dtype=np.uint8))
        session.run(None, {"input": np.stack(crops)})


def _engine_loop(clf: Classifier, images: list[bytes], batch_size: int) -> tuple[float, float, float]:
    decode = normalize = infer = 0.0
    for start in range(0, len(images), batch_size):
        t0 = time.perf_counter()
        pixels = [p for p in clf.decode_many(images[start : start + batch_size]) if isinstance(p, np.ndarray)]
        t1 = time.perf_counter()
        batch = clf.normalize(pixels)
        t2 = time.perf_counter()
        clf.predictions(clf.run(batch))
        t3 = time.perf_counter()
        decode, normalize, infer = decode + t1 - t0, normalize + t2 - t1, infer + t3 - t2
    return decode, normalize, infer


def bench_engine(
    model_dir: Path, images: list[bytes], threads: int, batch_sizes=(1, 8, 32), rounds: int = 3
) -> list[StageTimes]:
    clf = Classifier(model_dir, threads=threads)
    plain = ort.InferenceSession(str(model_dir / clf.manifest.file), providers=["CPUExecutionProvider"])
    n = len(images)
    _engine_loop(clf, images[:8], 8)  # warm-up: first runs allocate
    sizes = (clf.manifest.resize_size, clf.manifest.input_size)
    _plain_loop(plain, images[:8], 8, *sizes)
    results = []
    for bs in batch_sizes:
        best_engine, best_plain = (float("inf"),) * 3, float("inf")
        # Interleave the two and keep each one's best round: noise only ever adds time.
        for _ in range(rounds):
            stages = _engine_loop(clf, images, bs)
            if sum(stages) < sum(best_engine):
                best_engine = stages
            t0 = time.perf_counter()
            _plain_loop(plain, images, bs, *sizes)
            best_plain = min(best_plain, time.perf_counter() - t0)
        d, z, i = (1000 * x / n for x in best_engine)
        results.append(StageTimes(bs, d, z, i, 1000 * best_plain / n))
    return results


def _throughput(model_dir: Path, images: list[bytes], threads: int, batch_size: int, rounds: int, start=None) -> float:
    clf = Classifier(model_dir, threads=threads)
    clf.classify(images[:batch_size])  # warm-up
    if start is not None:
        start.wait()  # all processes begin together
    t0 = time.perf_counter()
    for _ in range(rounds):
        for i in range(0, len(images), batch_size):
            clf.classify(images[i : i + batch_size])
    return rounds * len(images) / (time.perf_counter() - t0)


def _overlapped(model_dir: Path, images: list[bytes], batch_size: int, rounds: int) -> float:
    """One process, one inference thread, with the next batch decoded on a second thread."""
    import queue
    import threading

    clf = Classifier(model_dir, threads=1)
    clf.classify(images[:batch_size])
    batches: queue.Queue = queue.Queue(maxsize=2)

    def decode() -> None:
        for _ in range(rounds):
            for i in range(0, len(images), batch_size):
                batches.put([clf.decode(d) for d in images[i : i + batch_size]])
        batches.put(None)

    t0 = time.perf_counter()
    threading.Thread(target=decode, daemon=True).start()
    while (batch := batches.get()) is not None:
        clf.infer(batch)
    return rounds * len(images) / (time.perf_counter() - t0)


def _plain_throughput(onnx_file: Path, images: list[bytes], batch_size: int, rounds: int, start=None) -> float:
    """The plain pipeline a user writes (Pillow, no DCT draft) on one thread, images/s."""
    from imgrec.engine.model import load_manifest

    m = load_manifest(onnx_file.parent)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_file), sess_options=opts, providers=["CPUExecutionProvider"])
    _plain_loop(session, images[:batch_size], batch_size, m.resize_size, m.input_size)  # warm-up
    if start is not None:
        start.wait()
    t0 = time.perf_counter()
    for _ in range(rounds):
        _plain_loop(session, images, batch_size, m.resize_size, m.input_size)
    return rounds * len(images) / (time.perf_counter() - t0)


def _timed(target, args, start, out) -> None:
    """In a child: images/s of `target`, and the CPU ms per image it spent (all threads)."""
    cpu = time.process_time()
    rate = target(*args, start=start)
    images = args[-1] * len(args[1]) + args[-2]  # rounds x images, and the warm-up batch
    out.put((rate, 1000 * (time.process_time() - cpu) / images))


def per_core(target, args: tuple, cores: int) -> tuple[float, float]:
    """`cores` processes running `target` together (`args` end with images, batch size,
    rounds): (images/s summed, CPU ms per image)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(cores), ctx.Queue()
    procs = [ctx.Process(target=_timed, args=(target, args, start, out)) for _ in range(cores)]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(r for r, _ in results), sum(c for _, c in results) / len(results)


def plain_bare(onnx_file: Path, images: list[bytes], cores: int, batch_size: int = 8, rounds: int = 2) -> tuple[float, float]:
    """The plain fp32 pipeline, one single-threaded process per core: (images/s, CPU ms per image)."""
    return per_core(_plain_throughput, (onnx_file, images, batch_size, rounds), cores)


def engine_bare(model_dir: Path, images: list[bytes], cores: int, batch_size: int = 8, rounds: int = 2) -> tuple[float, float]:
    """The engine's own pipeline, one single-threaded process per core: (images/s, CPU ms per image)."""
    return per_core(_throughput, (model_dir, images, 1, batch_size, rounds), cores)


def bench_parallelism(
    model_dir: Path, images: list[bytes], cores: int, batch_size: int = 8, rounds: int = 2, overlapped: bool = False
) -> dict[str, float]:
    """Images/s of one process with `cores` intra-op threads vs `cores` single-threaded
    processes (and, with `overlapped`, one process decoding on one thread while it infers on another)."""
    results = {f"1 process x {cores} threads": _throughput(model_dir, images, cores, batch_size, rounds)}
    results[f"{cores} processes x 1 thread"] = engine_bare(model_dir, images, cores, batch_size, rounds)[0]
    if overlapped:
        results["1 process, decode overlapped with inference"] = _overlapped(model_dir, images, batch_size, rounds)
    return results
