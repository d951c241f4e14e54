"""The `imgrec` command: parses arguments and delegates; no logic lives here."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from imgrec.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Elastic image recognition.")
model_app = typer.Typer(no_args_is_help=True, help="Build or inspect the ONNX model.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print ratios against a baseline.")
app.add_typer(model_app, name="model")
app.add_typer(bench_app, name="bench")
console = Console()
err = Console(stderr=True)

Threads = Annotated[int, typer.Option(help="onnxruntime intra-op threads (default: all cores)")]


def _classifier(threads: int | None = None):
    from imgrec.engine import Classifier
    from imgrec.model import build

    settings = Settings()
    build(settings.model_path)  # no-op when the model is already there
    return Classifier(settings.model_path, threads=threads or os.cpu_count() or 1, max_pixels=settings.max_pixels)


@model_app.command("build")
def model_build(force: Annotated[bool, typer.Option(help="Rebuild even if present")] = False) -> None:
    """Export EfficientNet-Lite0 to ONNX in the data directory (idempotent)."""
    from imgrec.model import build

    path = Settings().model_path
    manifest, built = build(path, force=force)
    verb = "built" if built else "already built"
    console.print(f"{manifest.name} {verb}: {path / manifest.file} sha256={manifest.sha256}")


@model_app.command("info")
def model_info() -> None:
    """Print the model manifest (without the label list)."""
    from dataclasses import asdict

    from imgrec.model import load_manifest

    data = asdict(load_manifest(Settings().model_path, verify=True))
    data["labels"] = f"{len(data['labels'])} ImageNet classes"
    console.print_json(json.dumps(data))


@app.command("classify")
def classify(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Full predictions as JSON")] = False,
    threads: Threads = 0,
) -> None:
    """Classify image files; prints `name:label` lines."""
    clf = _classifier(threads)
    results = clf.classify([f.read_bytes() for f in files])
    failed = False
    for f, r in zip(files, results):
        failed |= hasattr(r, "error")
        if as_json:
            print(json.dumps({"file": str(f), **r.to_dict()}))
        elif hasattr(r, "error"):
            err.print(f"{f.stem}: error: {r.error}")
        else:
            print(f"{f.stem}:{r.label}")
    raise typer.Exit(1 if failed else 0)


@app.command("eval")
def evaluate(
    folder: Annotated[Path, typer.Argument(exists=True, file_okay=False)],
    batch_size: int = 16,
    threads: Threads = 0,
) -> None:
    """Top-1/top-5 accuracy on FOLDER/labels.csv (filename,class_index,...)."""
    from imgrec.evaluate import evaluate as run_eval
    from imgrec.evaluate import read_labels

    clf = _classifier(threads)
    total = len(read_labels(folder))
    with Progress(console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task("classifying", total=total)
        report = run_eval(clf, folder, batch_size, lambda n: progress.advance(task, n))
    print(f"images: {report.total}")
    print(f"top-1: {report.top1 / report.total:.4f}")
    print(f"top-5: {report.top5 / report.total:.4f}")
    print(f"images/s: {report.images_per_second:.1f}")
    if report.wrong:
        print(f"wrong ({len(report.wrong)}):")
        for name, expected, got in report.wrong:
            print(f"  {name}: expected {clf.manifest.labels[expected]['label']}, got {got}")


@bench_app.command("engine")
def bench_engine(
    folder: Annotated[Path, typer.Argument(exists=True, file_okay=False)],
    threads: Threads = 0,
    rounds: int = 3,
) -> None:
    """Engine stages at batch 1, 8, 32 beside a plain onnxruntime + Pillow loop."""
    from imgrec.bench.engine import bench_engine as run, read_images

    _classifier()  # builds the model if needed
    rows = run(Settings().model_path, read_images(folder), threads or os.cpu_count() or 1, rounds=rounds)
    table = Table(title="engine vs plain onnxruntime + Pillow loop (ms per image, best of rounds)")
    for col in ("batch", "decode", "stack", "infer", "engine", "img/s", "plain", "img/s", "ratio"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r.batch_size), f"{r.decode_ms:.2f}", f"{r.normalize_ms:.2f}", f"{r.inference_ms:.2f}",
            f"{r.engine_ms:.2f}", f"{1000 / r.engine_ms:.1f}", f"{r.plain_ms:.2f}",
            f"{1000 / r.plain_ms:.1f}", f"{r.ratio:.2f}x",
        )
    console.print(table)
    from imgrec.bench.engine import bench_parallelism

    cores = os.cpu_count() or 1
    if cores > 1:
        par = bench_parallelism(Settings().model_path, read_images(folder), cores, overlapped=True)
        table = Table(title="parallelism on all cores (decode + inference, batch 8)")
        table.add_column("layout")
        table.add_column("images/s", justify="right")
        for layout, ips in par.items():
            table.add_row(layout, f"{ips:.1f}")
        console.print(table)


DEV_IMAGES = Path("../shared/dev-images")
Folder = Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Images to send (repeated as needed)")]


@bench_app.command("load")
def bench_load(
    folder: Folder = DEV_IMAGES,
    requests: int = 2000,
    concurrency: int = 100,
    endpoint: Annotated[str, typer.Option(help="'/' (classic) or '/api/v1/classify'")] = "/",
) -> None:
    """Correctness under load against `imgrec up`: lost, 5xx and wrong labels must all be 0."""
    from imgrec.bench.e2e import run_load_check

    report = run_load_check(folder, requests, concurrency, endpoint)
    console.print_json(json.dumps(report.summary()))
    for line in report.wrong[:20]:
        err.print(line)
    bad = report.lost + report.server_errors + report.client_errors + len(report.wrong)
    print(f"{report.ok} passed, {bad} failed")
    raise typer.Exit(1 if bad else 0)


@bench_app.command("e2e")
def bench_e2e(
    folder: Folder = DEV_IMAGES,
    requests: int = 1000,
    concurrency: int = 64,
    sweep: Annotated[str, typer.Option(help="Concurrency levels for the chart; '' for none")] = "1,8,32,64,128",
    out: Path = Path("bench-results"),
) -> None:
    """Service throughput and latency beside the bare pipeline, per-stage times, cold start."""
    from imgrec.bench.e2e import run_e2e

    levels = [int(x) for x in sweep.split(",") if x.strip()]
    r = run_e2e(folder, requests, concurrency, levels, out)
    main = r["main"]
    table = Table(title=f"imgrec end to end, {concurrency} clients, {requests} requests (best of {r['rounds']} rounds)")
    for col in ("", "images/s", "p50 ms", "p95 ms", "p99 ms"):
        table.add_column(col, justify="right")
    table.add_row("service", f"{main['images_per_second']:.1f}", f"{main['p50_ms']:.1f}", f"{main['p95_ms']:.1f}", f"{main['p99_ms']:.1f}")
    table.add_row("bare pipeline", f"{r['bare_images_per_second']:.1f}", "", "", "")
    table.add_row("ratio", f"{r['ratio_to_bare']:.3f}x", "", "", "")
    console.print(table)
    stages = Table(title="ms per image in each stage (the service's own timings)")
    stages.add_column("stage")
    stages.add_column("ms", justify="right")
    for stage, ms in r["stages_ms_per_image"].items():
        stages.add_row(stage, f"{ms:.2f}")
    console.print(stages)
    console.print(
        f"idle single request p50: {r['idle_single_request']['p50_ms']:.1f} ms "
        f"(bare single image {r['bare_single_image_ms']:.1f} ms, overhead {r['idle_p50_overhead_ms']:.1f} ms); "
        f"cold start to first result: {r['cold_start_seconds']:.2f} s; "
        f"lost/5xx/wrong: {r['lost_or_5xx_or_wrong']}; client CPU share {main['client_cpu_share']:.1%}"
    )
    console.print(f"written: {out / 'e2e.json'}" + (f", {out / 'e2e.png'}" if levels else ""))


# --- the service -----------------------------------------------------------------------

Host = Annotated[str | None, typer.Option(help="Address to listen on [IMGREC_HOST, default 127.0.0.1]")]
Port = Annotated[int | None, typer.Option(help="Port [IMGREC_PORT, default 8000]")]
MinW = Annotated[int | None, typer.Option(help="Fewest workers [IMGREC_MIN_WORKERS, default 0]")]
MaxW = Annotated[int | None, typer.Option(help="Most workers [IMGREC_MAX_WORKERS, default: CPU count]")]
Idle = Annotated[float | None, typer.Option(help="Seconds without work before scaling in [IMGREC_SCALE_IN_DELAY, default 30]")]


def _overrides(**flags) -> dict[str, str]:
    """Flags become IMGREC_* variables, so child processes see the same settings."""
    env = {f"IMGREC_{k.upper()}": str(v) for k, v in flags.items() if v is not None}
    os.environ.update(env)
    return env


@app.command("init")
def init() -> None:
    """Create the bucket and queues the configured adapters need (idempotent)."""
    from imgrec import connect

    for line in connect.init(Settings()):
        console.print(line)


@app.command("up")
def up(host: Host = None, port: Port = None, min_workers: MinW = None, max_workers: MaxW = None, idle_timeout: Idle = None) -> None:
    """Run the whole service: web tier + autoscaler (which runs the workers)."""
    from imgrec.services import run_up, setup_logging

    setup_logging()
    env = _overrides(host=host, port=port, min_workers=min_workers, max_workers=max_workers, scale_in_delay=idle_timeout)
    raise typer.Exit(run_up(Settings(), env))


@app.command("web")
def web(host: Host = None, port: Port = None) -> None:
    """Run the web tier alone."""
    from imgrec.services import run_web, setup_logging

    setup_logging()
    _overrides(host=host, port=port)
    run_web(Settings())


@app.command("worker")
def worker(
    idle_timeout: Annotated[float | None, typer.Option(help="Exit after this many seconds without work [IMGREC_WORKER_IDLE_TIMEOUT, default 30]")] = None,
) -> None:
    """Run one worker process (app tier)."""
    from imgrec.services import setup_logging
    from imgrec.worker import run_worker

    setup_logging()
    settings = Settings()
    run_worker(settings, idle_timeout if idle_timeout is not None else settings.worker_idle_timeout)


@app.command("autoscaler")
def autoscaler(min_workers: MinW = None, max_workers: MaxW = None, idle_timeout: Idle = None) -> None:
    """Run the autoscaler alone; it starts and stops local worker processes."""
    from imgrec.services import run_autoscaler, setup_logging

    setup_logging()
    _overrides(min_workers=min_workers, max_workers=max_workers, scale_in_delay=idle_timeout)
    run_autoscaler(Settings())


if __name__ == "__main__":
    app()
