"""`imgrec bench e2e` and `imgrec bench load`: the service as a user starts it, under load,
beside the bare in-process pipeline measured in the same run on the same images."""

from __future__ import annotations

import json
import os
import re
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from imgrec import presence
from imgrec.engine.classifier import Classifier
from imgrec.errors import require
from imgrec.lab.bench.engine import IMAGE_SUFFIXES
from imgrec.lab.bench.load import Item, LoadReport, run_load
from imgrec.lab.harness import ServiceProcess, wait_until
from imgrec.settings import Settings

API = "/api/v1/classify"


def load_items(folder: Path, model_dir: Path) -> list[Item]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images in {folder}")
    data = [p.read_bytes() for p in files]
    clf = Classifier(model_dir, threads=os.cpu_count() or 1)
    labels = [getattr(r, "label", None) for r in clf.classify(data)]
    return [Item(p.name, d, label) for p, d, label in zip(files, data, labels, strict=False) if label]


def bare_single_ms(model_dir: Path, items: list[Item]) -> float:
    """Median decode + inference of one image on one thread, in-process."""
    clf = Classifier(model_dir, threads=1)
    clf.classify([items[0].data])
    times = []
    for item in items[:50]:
        t0 = time.perf_counter()
        clf.classify([item.data])
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def web_stages(url: str) -> dict[str, tuple[float, float]]:
    """(sum of seconds, count) per web-tier stage, from the service's own /metrics."""
    text = _get(url + "/metrics")
    out: dict[str, list[float]] = {}
    for kind, stage, value in re.findall(r'imgrec_web_stage_seconds_(sum|count)\{stage="(\w+)"\} (\S+)', text):
        out.setdefault(stage, [0.0, 0.0])[0 if kind == "sum" else 1] = float(value)
    return {k: (v[0], v[1]) for k, v in out.items()}


def worker_stages(store) -> tuple[dict[str, float], int]:
    """Seconds per worker stage summed over all workers, and images completed."""
    done = presence.totals(presence.read(store, "worker"))
    return done.stage_seconds, done.completed


def stage_breakdown(before, after, images: int) -> dict[str, float]:
    """Milliseconds per image in each stage during one run (web and worker stages)."""
    (web0, (wk0, done0)), (web1, (wk1, done1)) = before, after
    out: dict[str, float] = {}
    for stage in ("parse", "store", "enqueue"):
        s0, c0 = web0.get(stage, (0, 0))
        s1, c1 = web1.get(stage, (0, 0))
        out[f"web.{stage}"] = 1000 * (s1 - s0) / max(1, c1 - c0)
    n = max(1, done1 - done0)
    for stage in ("queue_wait", "fetch", "decode", "inference", "result_write", "reply_and_ack"):
        out[f"worker.{stage}"] = 1000 * (wk1.get(stage, 0) - wk0.get(stage, 0)) / n
    s0, c0 = web0.get("wait", (0, 0))
    s1, c1 = web1.get("wait", (0, 0))
    out["web.wait_for_reply"] = 1000 * (s1 - s0) / max(1, c1 - c0)
    return {k: round(v, 3) for k, v in out.items()}


def _snapshot(svc: ServiceProcess):
    return web_stages(svc.url), worker_stages(svc.store)


def _snapshot_after(svc: ServiceProcess, since, images: int, timeout: float = 15.0):
    """A snapshot once the workers' heartbeats (rewritten every few seconds) count the
    `images` done since `since`, or after `timeout`."""
    deadline = time.monotonic() + timeout
    while (after := _snapshot(svc))[1][1] - since[1][1] < images and time.monotonic() < deadline:
        time.sleep(0.5)
    return after


def _workers(svc: ServiceProcess) -> int:
    return svc.status()["workers"]


def measure_cold_start(model_dir: Path, items: list[Item], workdir: Path, env: dict | None = None) -> float:
    """Seconds from a request reaching a service with 0 workers to its answer."""
    svc = ServiceProcess(workdir / "cold", model_dir, "--max-workers", "1", "--scale-in-delay", "30", env=env)
    try:
        wait_until(lambda: _workers(svc) == 0, 30, what="0 workers")
        report = run_load(svc.url, items[:1], 1, 1, API)
        if report.ok != 1:
            raise RuntimeError(f"cold-start request failed: {report.summary()}")
        return report.latencies[0]
    finally:
        svc.stop()


def fp32_counterpart(settings: Settings) -> Path:
    """The fp32 model of the served variant's architecture: the plain pipeline's model."""
    from imgrec.engine.model import load_manifest
    from imgrec.engine.variants import VARIANTS

    fp32 = settings.with_overrides(model=VARIANTS[settings.model].fp32)
    load_manifest(fp32.model_path, variant=fp32.model)  # ModelMissing says how to build it
    return fp32.model_path


def run_e2e(
    settings: Settings, folder: Path, requests: int, concurrency: int, sweep: list[int], out_dir: Path, rounds: int = 3
) -> dict:
    """The main comparison runs in `rounds` interleaved rounds (bare, service, bare, ...)
    and keeps each side's best: on a shared machine noise only ever slows a round down."""
    from imgrec.engine.model import load_manifest
    from imgrec.lab.bench.targets import targets

    model_dir, plain_dir = settings.model_path, fp32_counterpart(settings)
    load_manifest(model_dir, variant=settings.model)  # if missing, says how to build this variant
    plain_onnx = plain_dir / load_manifest(plain_dir).file
    cores = os.cpu_count() or 1
    items = load_items(folder, model_dir)
    report: dict = {
        "machine": {"cores": cores},
        "model": settings.model,
        "images": len(items),
        "requests": requests,
        "rounds": rounds,
    }
    report["bare_single_image_ms"] = round(bare_single_ms(model_dir, items), 2)
    env: dict[str, str] = {"IMGREC_MODEL": settings.model}

    with tempfile.TemporaryDirectory(prefix="imgrec-bench-") as tmp:
        workdir = Path(tmp)
        report["cold_start_seconds"] = round(measure_cold_start(model_dir, items, workdir, env), 3)
        svc = ServiceProcess(
            workdir / "warm",
            model_dir,
            "--min-workers",
            str(cores),
            "--max-workers",
            str(cores),
            "--scale-in-delay",
            "300",
            env=env,
        )
        try:
            warm = run_load(svc.url, items, cores * 32, cores * 8, API)  # every worker started and warm
            wait_until(lambda: _workers(svc) == cores, 60, what="all workers")
            idle_before = _snapshot_after(svc, ({}, ({}, 0)), warm.ok)  # the warm-up all counted
            single = run_load(svc.url, items, 30, 1, API)
            report["idle_single_request"] = single.summary()
            # Where an idle request's time goes: the same stages, one request at a time.
            idle_after = _snapshot_after(svc, idle_before, single.ok)
            report["idle_stages_ms_per_image"] = stage_breakdown(idle_before, idle_after, single.ok)
            report["idle_p50_overhead_ms"] = round(single.percentile(50) - report["bare_single_image_ms"], 2)

            report.update(_interleaved(svc, items, requests, concurrency, rounds, plain_onnx, model_dir, settings.model))
            report["sweep"] = [run_load(svc.url, items, requests, c, API).summary() for c in sweep]
        finally:
            svc.stop()
    report["targets"] = targets(report, settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "e2e.json").write_text(json.dumps(report, indent=1))
    if report["sweep"]:
        _chart(report, out_dir / "e2e.png")
    return report


def _interleaved(svc, items, requests: int, concurrency: int, rounds: int, plain_onnx: Path, model_dir: Path,
                 variant: str) -> dict:
    """The bare pipelines and the service in `rounds` interleaved rounds, each side's best
    kept, with the CPU each image cost the service's processes."""
    from imgrec.lab.bench.engine import engine_bare, plain_bare
    from imgrec.lab.cpu import CpuSample, account

    cores = os.cpu_count() or 1
    images = [i.data for i in items]
    report: dict = {}
    plain_runs, engine_runs, service_runs, cpu = [], [], [], []
    before = _snapshot(svc)
    for _ in range(rounds):
        plain_runs.append(plain_bare(plain_onnx, images, cores))
        engine_runs.append(engine_bare(model_dir, images, cores))
        sample = CpuSample.take(svc.proc.pid)
        service_runs.append(run_load(svc.url, items, requests, concurrency, API))
        cpu.append(account(sample, CpuSample.take(svc.proc.pid), service_runs[-1].ok))
    after = _snapshot_after(svc, before, sum(r.ok for r in service_runs))
    best = max(range(rounds), key=lambda i: service_runs[i].images_per_second)
    main = service_runs[best]
    plain, engine = max(plain_runs), max(engine_runs)
    report["bare"] = {
        name: {"images_per_second": round(rate, 2), "cpu_ms_per_image": round(ms, 3)}
        for name, (rate, ms) in (("plain fp32 (Pillow, no draft)", plain), (f"engine {variant}", engine))
    }
    report["bare_images_per_second"] = round(plain[0], 2)
    report["bare_rounds"] = [round(x[0], 2) for x in plain_runs]
    report["service_rounds"] = [round(r.images_per_second, 2) for r in service_runs]
    report["main"] = main.summary()
    report["cpu"] = cpu[best]
    report["cpu_busy_rounds"] = [c["cpu_busy"] for c in cpu]
    report["lost_or_5xx_or_wrong"] = sum(r.lost + r.server_errors + len(r.wrong) for r in service_runs)
    report["stages_ms_per_image"] = stage_breakdown(before, after, sum(r.ok for r in service_runs))
    report["ratio_to_bare"] = round(main.images_per_second / report["bare_images_per_second"], 3)
    return report


def _chart(report: dict, path: Path) -> None:
    matplotlib = require("matplotlib", "bench", "the chart of imgrec bench e2e")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["concurrency"] for r in report["sweep"]]
    fig, left = plt.subplots(figsize=(8, 4.5))
    left.plot(xs, [r["images_per_second"] for r in report["sweep"]], "o-", color="tab:blue", label="service images/s")
    left.axhline(report["bare_images_per_second"], color="tab:blue", ls="--", label="bare pipeline images/s")
    left.set_xscale("log", base=2)
    left.set_xlabel("concurrent clients")
    left.set_ylabel("images/s")
    right = left.twinx()
    right.plot(xs, [r["p50_ms"] for r in report["sweep"]], "s-", color="tab:orange", label="p50 latency")
    right.plot(xs, [r["p99_ms"] for r in report["sweep"]], "^-", color="tab:red", label="p99 latency")
    right.set_ylabel("latency (ms)")
    right.set_yscale("log")
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.legend(handles, [str(h.get_label()) for h in handles], loc="upper left", fontsize=8)
    left.set_title(f"imgrec end to end on {report['machine']['cores']} cores ({report['requests']} requests per point)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_load_check(settings: Settings, folder: Path, requests: int, concurrency: int, endpoint: str) -> LoadReport:
    """`imgrec bench load`: correctness under load: lost, 5xx and wrong labels must all be 0."""
    items = load_items(folder, settings.model_path)
    with tempfile.TemporaryDirectory(prefix="imgrec-load-") as tmp:
        svc = ServiceProcess(Path(tmp), settings.model_path, "--scale-in-delay", "60")
        try:
            return run_load(svc.url, items, requests, concurrency, endpoint)
        finally:
            svc.stop()
