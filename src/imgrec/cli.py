"""The `imgrec` command: parses arguments and delegates; no logic lives here.

The settings are built once, in the callback, from the environment; a command's
flags override them (`Settings.with_overrides`), and a child process receives
the result through its environment (`Settings.to_env`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress

from imgrec.bench.cli import bench_app
from imgrec.bench.commands import simulate
from imgrec.client import commands
from imgrec.errors import ConfigError
from imgrec.ops.commands import model_pull, model_push, status
from imgrec.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Elastic image recognition.")
model_app = typer.Typer(no_args_is_help=True, help="Build, inspect, push or pull the ONNX model.")
app.add_typer(model_app, name="model")
app.add_typer(bench_app, name="bench")
app.command("simulate")(simulate)  # its flags live in bench/commands.py, beside the other scaling tools'
app.command("classify")(commands.classify)  # these two live in client/commands.py, beside what they use
app.command("submit")(commands.submit)
console = Console()
err = Console(stderr=True)

Threads = Annotated[int, typer.Option(help="onnxruntime intra-op threads (default: all cores)")]
Host = Annotated[str | None, typer.Option(help="Address to listen on [IMGREC_HOST, default 127.0.0.1]")]
Port = Annotated[int | None, typer.Option(help="Port [IMGREC_PORT, default 8000]")]
MinW = Annotated[int | None, typer.Option(help="Fewest workers [IMGREC_MIN_WORKERS, default 0]")]
MaxW = Annotated[int | None, typer.Option(help="Most workers [IMGREC_MAX_WORKERS, default: CPU count]")]
Delay = Annotated[
    float | None, typer.Option(help="Seconds of lower demand before scaling in [IMGREC_SCALE_IN_DELAY, default 10]")
]
# `--idle-timeout` once meant the scale-in delay for `up` and `autoscaler`; it still
# does there, hidden, so that existing scripts keep working.
OldDelay = Annotated[float | None, typer.Option("--idle-timeout", hidden=True)]


@app.callback()
def main(ctx: typer.Context) -> None:
    """Elastic image recognition: upload images, get ImageNet labels back."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise here
    try:
        ctx.obj = Settings()
    except ValidationError as exc:
        problems = "; ".join(f"IMGREC_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"bad setting: {problems}") from None


def _scale_in(delay: float | None, old: float | None) -> float | None:
    if old is not None:
        err.print("note: --idle-timeout is now --scale-in-delay here (it still works)")
    return delay if delay is not None else old


# --- the model and the engine ----------------------------------------------------------


Variant = Annotated[str | None, typer.Option(help="lite0, lite0-int8, lite2 or lite2-int8 [IMGREC_MODEL, default lite0]")]


@model_app.command("build")
def model_build(
    ctx: typer.Context,
    variant: Variant = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if present")] = False,
    calibration: Annotated[int, typer.Option(help="Images an int8 variant is calibrated on [default 256]")] = 0,
    eval_dir: Annotated[Path | None, typer.Option("--eval", help="Record top-1/top-5 on DIR/labels.csv in the manifest")] = None,
) -> None:
    """Export a model variant to ONNX in the data directory (idempotent)."""
    from imgrec.engine.model import build

    settings = ctx.obj.with_overrides(model=variant)
    path = settings.model_path
    manifest, built = build(path, force=force, variant=settings.model, calibration=calibration, eval_dir=eval_dir)
    verb = "built" if built else "already built"
    console.print(f"{manifest.name} {verb}: {path / manifest.file} sha256={manifest.sha256}")
    if manifest.accuracy:
        console.print(
            f"top-1 {manifest.accuracy['top1']:.2%}, top-5 {manifest.accuracy['top5']:.2%} "
            f"on {manifest.accuracy['images']} images of {manifest.accuracy['on']}"
        )


@model_app.command("info")
def model_info(ctx: typer.Context) -> None:
    """Print the model manifest (without the label list)."""
    from dataclasses import asdict

    from imgrec.engine.model import load_manifest

    data = asdict(load_manifest(ctx.obj.model_path, verify=True))
    data["labels"] = f"{len(data['labels'])} ImageNet classes"
    console.print_json(json.dumps(data))


@app.command("eval")
def evaluate(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(exists=True, file_okay=False)],
    batch_size: int = 16,
    threads: Threads = 0,
    all_variants: Annotated[bool, typer.Option("--all-variants", help="A table of every variant (built if missing)")] = False,
) -> None:
    """Top-1/top-5 accuracy on FOLDER/labels.csv (filename,class_index,...)."""
    from imgrec.engine.evaluate import evaluate as run_eval
    from imgrec.engine.evaluate import read_labels

    if all_variants:
        commands.eval_all_variants(ctx.obj, folder, batch_size, threads)
        return
    clf = commands.local_classifier(ctx.obj, threads)
    total = len(read_labels(folder))
    with Progress(console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task("classifying", total=total)
        report = run_eval(clf, folder, batch_size, lambda n: progress.advance(task, n))
    print(f"model: {clf.model_id}")
    print(f"images: {report.total}")
    print(f"top-1: {report.top1 / report.total:.4f}")
    print(f"top-5: {report.top5 / report.total:.4f}")
    print(f"images/s: {report.images_per_second:.1f}")
    if report.wrong:
        print(f"wrong ({len(report.wrong)}):")
        for name, expected, got in report.wrong:
            print(f"  {name}: expected {clf.manifest.labels[expected]['label']}, got {got}")


# --- the service -----------------------------------------------------------------------


@app.command("init")
def init(ctx: typer.Context) -> None:
    """Create the bucket and queues the configured adapters need (idempotent)."""
    from imgrec.supervisor import init_backends

    for line in init_backends(ctx.obj):
        console.print(line)


@app.command("config")
def config(
    ctx: typer.Context,
    markdown: Annotated[bool, typer.Option("--markdown", help="The table of every setting and its default")] = False,
) -> None:
    """The settings this process sees (from IMGREC_* variables), or their documentation."""
    from imgrec.settings import markdown_table

    if markdown:
        print(markdown_table())
        return
    settings = ctx.obj
    for name, value in settings.model_dump().items():
        shown = "(set)" if name == "api_keys" and value else value
        print(f"IMGREC_{name.upper()}={shown}")
    print(f"# store: {settings.store_url}\n# queue: {settings.queue_url}\n# model: {settings.model_path}")


@app.command("gc")
def gc(
    ctx: typer.Context,
    retention: Annotated[
        str | None, typer.Option(help="Delete what is older than this: 7d, 12h, 30m, seconds [IMGREC_RETENTION, default 7d]")
    ] = None,
) -> None:
    """Delete inputs, results and records older than the retention time, now (the
    autoscaler does it every hour)."""
    from imgrec.autoscaler.housekeeping import sweep_expired
    from imgrec.stores import open_store

    settings = ctx.obj.with_overrides(retention=retention)
    if settings.retention <= 0:
        console.print("retention is 0: everything is kept for ever, nothing to do")
        return
    deleted = sweep_expired(open_store(settings.store_url), settings.retention)
    for prefix, n in deleted.items():
        console.print(f"deleted {n} objects under {prefix}")
    console.print(f"done: {sum(deleted.values())} objects older than {settings.retention:g} s deleted")


@app.command("up")
def up(
    ctx: typer.Context, host: Host = None, port: Port = None, min_workers: MinW = None, max_workers: MaxW = None,
    scale_in_delay: Delay = None, idle_timeout: OldDelay = None,
) -> None:
    """Run the whole service: web tier + autoscaler (which runs the workers)."""
    from imgrec.supervisor import run_up

    settings = ctx.obj.with_overrides(
        host=host, port=port, min_workers=min_workers, max_workers=max_workers,
        scale_in_delay=_scale_in(scale_in_delay, idle_timeout),
    )
    raise typer.Exit(run_up(settings))


@app.command("web")
def web(ctx: typer.Context, host: Host = None, port: Port = None) -> None:
    """Run the web tier alone."""
    from imgrec.web import run_web

    run_web(ctx.obj.with_overrides(host=host, port=port))


@app.command("worker")
def worker(
    ctx: typer.Context,
    idle_timeout: Annotated[
        float | None, typer.Option(help="Exit after this many seconds without work [IMGREC_WORKER_IDLE_TIMEOUT, default 30]")
    ] = None,
    ready_file: Annotated[str | None, typer.Option(help="Write this file once ready [IMGREC_READY_FILE]")] = None,
) -> None:
    """Run one worker process (it pulls the model from the store if it has none)."""
    from imgrec.worker import run_worker

    run_worker(ctx.obj.with_overrides(worker_idle_timeout=idle_timeout, ready_file=ready_file))


@app.command("autoscaler")
def autoscaler(
    ctx: typer.Context, min_workers: MinW = None, max_workers: MaxW = None, scale_in_delay: Delay = None,
    idle_timeout: OldDelay = None,
) -> None:
    """Run the autoscaler alone; it starts and stops workers and does the housekeeping."""
    from imgrec.autoscaler.main import run_autoscaler

    run_autoscaler(ctx.obj.with_overrides(
        min_workers=min_workers, max_workers=max_workers, scale_in_delay=_scale_in(scale_in_delay, idle_timeout),
    ))


app.command("status")(status)  # it and the next two live in ops/commands.py
model_app.command("push")(model_push)
model_app.command("pull")(model_pull)


def run() -> None:
    """The console script: a configuration error is one clear line, not a traceback."""
    try:
        app(prog_name="imgrec")
    except ConfigError as exc:
        err.print(f"imgrec: {exc}", markup=False, soft_wrap=True)  # one line, and [aws] is no markup
        raise SystemExit(2) from None


if __name__ == "__main__":
    run()
