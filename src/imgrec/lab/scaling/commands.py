"""`imgrec simulate` and the trace flags it shares with `imgrec bench replay`: they parse
the flags, build on the settings the callback made (`ctx.obj`), and delegate."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from imgrec.errors import BadInput, ConfigError

console = Console(width=None if sys.stdout.isatty() else 160)  # piped, numbers must not be cut short
err = Console(stderr=True)

TraceArg = Annotated[str, typer.Option(
    "--trace", help="A shape (steady, step, spike, diurnal, onoff, bursts) or a CSV file")]
Sets = Annotated[list[str] | None, typer.Option(
    "--set", help="key=value: a setting for the imgrec policy, e.g. target_per_worker=8 (repeatable)")]
Duration = Annotated[float, typer.Option(help="Seconds a shape lasts")]
Rate = Annotated[float, typer.Option(help="A shape's mean arrivals per second")]
Seed = Annotated[int, typer.Option(help="Seed of a shape (and of spreading CSV counts within their bins)")]
CsvKind = Annotated[str, typer.Option("--csv", help="A CSV's kind: auto, times, second, minute (counts) or azure")]
Select = Annotated[str, typer.Option(help="Azure CSV: only the rows of this owner, app or function hash")]
TimeScale = Annotated[float, typer.Option(help="Multiply the trace's clock (0.1: ten times faster)")]
RateScale = Annotated[float, typer.Option(help="Keep each arrival this many times on average (0.5: thin by half)")]
Service = Annotated[str, typer.Option(help="'a,b': seconds per batch of n = a + b*n (default: measured here)")]
ColdStart = Annotated[float | None, typer.Option(help="Seconds from a worker's start to ready (default: measured here)")]
Cores = Annotated[float | None, typer.Option(
    help="Cores the workers share (0: each its own) (default: this machine's with the local actuator, else 0)")]
SideCpu = Annotated[float, typer.Option(
    min=0, help="CPU ms per image spent beside the workers on the cores they share (the web tier's)")]
Slo = Annotated[float, typer.Option(help="Latency objective, seconds")]


def load_trace(spec: str, duration: float, rate: float, seed: int, csv_kind: str, select: str,
               time_scale: float, rate_scale: float):
    from imgrec.lab.scaling import traces

    try:
        trace = traces.load(spec, duration, rate, seed, csv_kind, select)
        return traces.scaled(trace, time_scale, rate_scale, seed)
    except (BadInput, OSError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--trace") from None


def overrides(sets: list[str] | None) -> dict[str, str]:
    pairs = [s.split("=", 1) for s in sets or []]
    if any(len(p) != 2 for p in pairs):
        raise typer.BadParameter("each --set is key=value", param_hint="--set")
    return dict(pairs)


def parse_service(text: str):
    from imgrec.lab.scaling.simulate import ServiceModel

    try:
        a, b = (float(x) for x in text.split(","))
    except ValueError:
        raise typer.BadParameter("'a,b', e.g. 0.001,0.0135", param_hint="--service") from None
    return ServiceModel(a, b)


def split_policies(text: str) -> list[str]:
    """`imgrec,imgrec:a=1,b=2,keda` -> imgrec, imgrec:a=1,b=2, keda: a part with `=` and no
    `:` is one more option of the policy before it (no policy's name has an `=`)."""
    specs: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if "=" in part and ":" not in part and specs:
            specs[-1] += "," + part
        elif part:
            specs.append(part)
    return specs


def simulate(
    ctx: typer.Context, trace: TraceArg = "bursts",
    policies: Annotated[str, typer.Option(help="Comma-separated: imgrec, keda, hpa, ray, fixed:N; each may add "
                                          ":key=value,... e.g. imgrec:scale_in_delay=10")] = "imgrec,keda,hpa,ray",
    set_: Sets = None, duration: Duration = 3600.0, rate: Rate = 2.0, seed: Seed = 0, csv_kind: CsvKind = "auto",
    select: Select = "", time_scale: TimeScale = 1.0, rate_scale: RateScale = 1.0, service: Service = "",
    cold_start: ColdStart = None, cores: Cores = None, side_cpu: SideCpu = 0.0, slo: Slo = 1.0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures here")] = None,
    chart: Annotated[str, typer.Option(help="The PNG chart ('' for none)")] = "bench-results/simulate.png",
    remeasure: Annotated[bool, typer.Option(help="Measure the service time and cold start again")] = False,
    blind: Annotated[bool, typer.Option(help="A queue that cannot say when it got its last message (SQS): "
                                        "imgrec sees only the work its ticks catch")] = False,
) -> None:
    """Replay a trace against imgrec's scaling policy and models of KEDA, HPA and Ray Serve."""
    from imgrec.lab.report import simulation_table
    from imgrec.lab.scaling import runs as scaling

    try:
        settings = ctx.obj.with_overrides(**overrides(set_))
    except (TypeError, ValueError) as exc:  # an unknown setting, or pydantic's ValidationError
        raise typer.BadParameter(str(exc), param_hint="--set") from None
    arrivals = load_trace(trace, duration, rate, seed, csv_kind, select, time_scale, rate_scale)
    given = parse_service(service) if service else None
    model, source = scaling.inputs(settings, given, cold_start, scaling.host_cores(settings, cores), remeasure)
    model = dataclasses.replace(model, side_cpu=side_cpu / 1000, sees_sends=not blind)
    specs = split_policies(policies)
    try:
        results, took = scaling.run_simulation(settings, arrivals, specs, model, slo, json_out, Path(chart) if chart else None)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--policies") from None
    console.print(f"{arrivals.name}: {len(arrivals.times)} requests over {arrivals.duration:g} s; a batch of n "
                  f"takes {model.service.a * 1000:.1f} + {model.service.b * 1000:.2f}n ms, a worker starts in "
                  f"{model.cold_start:.2f} s ({source}); cores shared: {model.host_cores or 'none'}"
                  + (f", {side_cpu:g} ms of CPU an image beside the workers" if side_cpu and model.host_cores else "")
                  + ("; the queue does not say when it got its last message" if blind else ""))
    console.print(simulation_table(results, f"within SLO: answered in {slo:g} s; starts: cold starts; "
                                            "events: scaling decisions"))
    written = [str(p) for p in (json_out, chart) if p]
    console.print(f"simulated in {took:.1f} s" + (f"; written: {', '.join(written)}" if written else ""))
