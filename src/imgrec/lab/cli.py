"""The lab's commands, added to `imgrec` through the entry-point group `imgrec.commands`
(see pyproject.toml): `imgrec bench ...`, benchmarks that print ratios against a
baseline measured in the same run, and `imgrec simulate`, the scaling simulator."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from imgrec.lab.scaling.commands import simulate

bench_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Benchmarks that print ratios against a baseline.")
simulate_app = typer.Typer(add_completion=False)
simulate_app.command("simulate")(simulate)
console = Console()
err = Console(stderr=True)
Threads = Annotated[int, typer.Option(help="onnxruntime intra-op threads (default: all cores)")]
Folder = Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Images to send (repeated as needed)")]


@bench_app.command("engine")
def bench_engine(ctx: typer.Context, folder: Folder, threads: Threads = 0, rounds: int = 3) -> None:
    """Engine stages at batch 1, 8, 32 beside a plain onnxruntime + Pillow loop."""
    from imgrec.engine.model import build
    from imgrec.lab.bench.engine import bench_engine as run
    from imgrec.lab.bench.engine import bench_parallelism, read_images
    from imgrec.lab.report import engine_table, parallelism_table

    build(ctx.obj.model_path, variant=ctx.obj.model)  # no-op when the model is already there
    model, images, cores = ctx.obj.model_path, read_images(folder), os.cpu_count() or 1
    console.print(engine_table(run(model, images, threads or cores, rounds=rounds)))
    if cores > 1:
        console.print(parallelism_table(bench_parallelism(model, images, cores, overlapped=True)))


@bench_app.command("load")
def bench_load(
    ctx: typer.Context,
    folder: Folder,
    requests: int = 2000,
    concurrency: int = 100,
    endpoint: Annotated[str, typer.Option(help="'/' (classic) or '/api/v1/classify'")] = "/",
) -> None:
    """Correctness under load against `imgrec up`: lost, 5xx and wrong labels must all be 0."""
    from imgrec.lab.bench.e2e import run_load_check

    report = run_load_check(ctx.obj, folder, requests, concurrency, endpoint)
    console.print_json(json.dumps(report.summary()))
    for line in report.wrong[:20]:
        err.print(line)
    bad = report.lost + report.server_errors + report.client_errors + len(report.wrong)
    print(f"{report.ok} passed, {bad} failed")
    raise typer.Exit(1 if bad else 0)


@bench_app.command("e2e")
def bench_e2e(
    ctx: typer.Context,
    folder: Folder,
    requests: int = 1000,
    concurrency: int = 64,
    sweep: Annotated[str, typer.Option(help="Concurrency levels for the chart; '' for none")] = "1,8,32,64,128",
    out: Path = Path("bench-results"),
    rounds: Annotated[int, typer.Option(help="Interleaved rounds of service and bare pipeline; the best of each kept")] = 3,
    model: Annotated[str | None, typer.Option(help="The variant served [IMGREC_MODEL, default lite0]")] = None,
) -> None:
    """Service throughput and latency beside the bare pipeline, CPU per image, per-stage times,
    cold start, and the performance targets as pass/fail rows."""
    from imgrec.lab.bench.e2e import run_e2e
    from imgrec.lab.report import e2e_line, e2e_tables

    levels = [int(x) for x in sweep.split(",") if x.strip()]
    r = run_e2e(ctx.obj.with_overrides(model=model), folder, requests, concurrency, levels, out, rounds=rounds)
    for table in e2e_tables(r, requests, concurrency):
        console.print(table)
    console.print(e2e_line(r))
    console.print(f"written: {out / 'e2e.json'}" + (f", {out / 'e2e.png'}" if levels else ""))


@bench_app.command("peers")
def bench_peers(
    ctx: typer.Context,
    folder: Folder,
    bentoml_python: Annotated[str | None, typer.Option(help="A Python with bentoml installed (`make peers` makes "
                                                            "one); without it, only the bare pipelines")] = None,
    requests: int = 600,
    concurrency: int = 64,
    rounds: Annotated[int, typer.Option(help="Interleaved rounds; each side's best kept")] = 2,
    model: Annotated[str | None, typer.Option(help="The variant served [IMGREC_MODEL, default lite0]")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the run's report here (JSON)")] = None,
) -> None:
    """imgrec beside BentoML serving the same ONNX file and the bare pipelines, in one run:
    images/s, the ratios, idle latency, cold start; every answer checked."""
    from imgrec.lab.bench.peers import run_peers
    from imgrec.lab.report import peers_table

    report = run_peers(ctx.obj.with_overrides(model=model), folder, bentoml_python, requests, concurrency, rounds)
    console.print(peers_table(report))
    if out:
        out.write_text(json.dumps(report, indent=1))
        console.print(f"written: {out}")
    raise typer.Exit(1 if any(report["checked_failures"].values()) else 0)


@bench_app.command("replay")
def bench_replay(
    ctx: typer.Context,
    traces: Annotated[list[str] | None, typer.Argument(help="Shapes (steady, step, spike, diurnal, onoff, bursts) "
                                                           "or CSV files [default: steady step onoff bursts]")] = None,
    duration: Annotated[float, typer.Option(help="Seconds a shape lasts")] = 60.0,
    rate: Annotated[float, typer.Option(help="A shape's mean arrivals per second")] = 6.0,
    seed: int = 0,
    time_scale: Annotated[float, typer.Option(help="Multiply a CSV trace's clock (0.1: ten times faster)")] = 1.0,
    rate_scale: Annotated[float, typer.Option(help="Keep each arrival this many times on average")] = 1.0,
    images: Annotated[Path | None, typer.Option(help="A folder of images to send (default: sample photographs)")] = None,
    out: Path = Path("bench-results"),
    starts: Annotated[int, typer.Option(min=1, help="Cold starts of the live service that calibrate the "
                                                    "simulated start-up, in each round")] = 3,
    repeats: Annotated[int, typer.Option(min=1, help="Rounds of live runs of each trace, each calibrated before it, "
                                                     "pooled: the mean worker-seconds, the percentiles of all "
                                                     "their answers")] = 1,
) -> None:
    """Replay short traces against `imgrec up` and set the simulator's prediction beside
    each: worker-seconds and p99 must agree within 25 %."""
    from imgrec.lab.report import replay_table
    from imgrec.lab.scaling.commands import load_trace
    from imgrec.lab.scaling.replay import AGREEMENT, replay
    from imgrec.lab.scaling.service_time import sample_photos

    arrivals = [load_trace(t, duration, rate, seed, "auto", "", time_scale, rate_scale)
                for t in (traces or ["steady", "step", "onoff", "bursts"])]
    if images:
        from imgrec.client.files import image_files

        pictures = [(p.name, p.read_bytes()) for p in image_files([images])]
    else:
        pictures = [(f"photo{i}.jpg", data) for i, data in enumerate(sample_photos(16))]
    report = replay(ctx.obj, arrivals, pictures, out, starts, repeats)
    console.print(replay_table(report, AGREEMENT))
    console.print(f"{report['agreeing_shapes']} of {len(arrivals)} shapes agree; written: {out / 'replay.json'}")
