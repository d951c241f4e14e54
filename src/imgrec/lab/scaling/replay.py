"""`imgrec bench replay`: a short trace replayed against `imgrec up`, beside what the
simulator predicts for the same arrivals, settings and machine.

Each request is sent at its arrival time whatever happened to the earlier ones (an
open loop, as real users arrive), one image per classic `POST /`, and its latency is
the time to its answer. Worker-seconds come from the workers' heartbeats (each
worker from its process's start to its stop), counted until the autoscaler has
scaled back to zero, as the simulation counts them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from imgrec import presence
from imgrec.lab.harness import ServiceProcess, wait_until
from imgrec.lab.scaling.calibrate import calibrate, send_all, service_env
from imgrec.lab.scaling.runs import compare, host_cores, inputs
from imgrec.lab.scaling.simulate import WorkerModel
from imgrec.lab.scaling.traces import Trace
from imgrec.settings import Settings

AGREEMENT = 0.25  # the simulator is accepted within 25 % of the live figures


def _worker_seconds(svc: ServiceProcess, since: float) -> tuple[float, int]:
    """Seconds of every worker since `since` (each from its start to its last beat), and how many."""
    beats = [b for b in presence.read(svc.store, "worker") if b.id != presence.RETIRED_ID and b.last_seen > since]
    return sum(b.last_seen - max(b.started, since) for b in beats), len(beats)


def replay_live(settings: Settings, trace: Trace, images: list[tuple[str, bytes]], workdir: Path) -> dict:
    """The trace against `imgrec up` with these settings: its figures, as the simulator's
    (and, under "latencies", each answered request's seconds)."""
    svc = ServiceProcess(workdir, settings.model_path, env=service_env(settings))
    try:
        wait_until(lambda: svc.status()["workers"] == 0, 60, 0.5, "no worker before the replay")
        t0 = time.time()
        latencies = asyncio.run(send_all(svc.url, trace.times, images))
        settle = max(settings.scale_in_delay, settings.scale_to_zero_delay) + 30
        wait_until(lambda: svc.status()["workers"] == 0 and not svc.worker_pids(), settle + 60, 1.0, "scaling back to 0")
        time.sleep(2.5)  # the last workers' final heartbeats
        worker_seconds, started = _worker_seconds(svc, t0)
    finally:
        svc.stop()
    answered = [x for x in latencies if x is not None]
    return {"worker_seconds": round(worker_seconds, 1), **_percentiles(answered), "cold_starts": started,
            "requests": len(latencies), "answered": len(answered), "latencies": answered}


def _percentiles(seconds: list[float]) -> dict:
    p50, p95, p99 = (round(float(x) * 1000, 1) for x in np.percentile(np.array(seconds), [50, 95, 99]))
    return {"p50_ms": p50, "p95_ms": p95, "p99_ms": p99}


def pooled(runs: list[dict]) -> dict:
    """Several live runs of one trace as one: mean worker-seconds and cold starts, the
    percentiles of all their answers together (a 60 s trace's p99 is its 4th-slowest
    request: whether a few requests meet a worker's start moves it from run to run)."""
    latencies = [x for r in runs for x in r["latencies"]]
    return {
        "worker_seconds": round(float(np.mean([r["worker_seconds"] for r in runs])), 1), **_percentiles(latencies),
        "cold_starts": round(float(np.mean([r["cold_starts"] for r in runs])), 1),
        "requests": runs[0]["requests"], "answered": round(len(latencies) / len(runs), 1), "runs": len(runs),
    }


PHASES = 4  # simulated tick phases per calibrated start-up


def predicted(trace: Trace, settings: Settings, models: list[tuple[WorkerModel, list[float]]]) -> dict:
    """The simulator's figures for a trace, as the live ones are made: pooled over runs.

    A live run meets the autoscaler's ticks at no particular phase, one start-up from
    the machine's spread, and the machine as fast as it was around that run. So each
    calibration (one per round of live runs) is simulated with each start-up it measured
    and ticks at `PHASES` phases across the interval, and the runs are pooled as the
    live ones are: a short trace's p99 is its few slowest requests, which meet a start-up
    or not depending on exactly these."""
    runs: list = []
    for model, start_ups in models:
        for start_up in start_ups:
            for k in range(PHASES):
                first_tick = (k + 0.5) / PHASES * settings.poll_interval
                result = compare(trace.times, ["imgrec"], settings, dataclasses.replace(model, cold_start=start_up),
                                 trace.duration, first_tick=first_tick, seed=len(runs))["imgrec"]
                runs.append({**result.figures(), "latencies": result.latencies.tolist()})
    return {**pooled(runs), "peak_workers": max(r["peak_workers"] for r in runs)}


def _model_figures(model: WorkerModel, start_ups: list[float], source: str) -> dict:
    return {
        "service_a_ms": round(model.service.a * 1000, 2), "service_b_ms": round(model.service.b * 1000, 2),
        "cold_start_s": round(model.cold_start, 2), "start_ups_s": [round(x, 2) for x in start_ups],
        "overhead_ms": round(model.overhead * 1000, 1), "host_cores": model.host_cores and round(model.host_cores, 2),
        "overhead_p95_ms": round(float(np.percentile(model.overheads, 95)) * 1000, 1) if model.overheads else None,
        "side_cpu_ms": round(model.side_cpu * 1000, 2), "source": source,
    }


def replay(
    settings: Settings, traces: list[Trace], images: list[tuple[str, bytes]], out: Path, starts: int = 3,
    repeats: int = 1,
) -> dict:
    """Each trace live (`repeats` rounds, each calibrated just before it; pooled) and
    simulated; the report (also written to out/replay.json)."""
    engine, source = inputs(settings, None, None, host_cores(settings, None))
    models: list[tuple[WorkerModel, list[float]]] = []
    runs: dict[str, list[dict]] = {trace.name: [] for trace in traces}
    with tempfile.TemporaryDirectory(prefix="imgrec-replay-") as tmp:
        for k in range(repeats):  # the machine's speed drifts: calibrate beside each round
            models.append(calibrate(settings, images, engine, Path(tmp) / f"calibration{k}", starts))
            for i, trace in enumerate(traces):
                runs[trace.name].append(replay_live(settings, trace, images, Path(tmp) / f"run{i}-{k}"))
    report: dict = {
        "model": _model_figures(*models[0], source), "calibrations": [_model_figures(*m, source) for m in models],
        "repeats": repeats, "phases": PHASES, "shapes": {},
    }
    for trace in traces:
        live, sim = pooled(runs[trace.name]), predicted(trace, settings, models)
        close = {k: abs(sim[k] - live[k]) / max(live[k], 1e-9) for k in ("worker_seconds", "p99_ms")}
        report["shapes"][trace.name] = {
            "live": live, "simulated": sim, "difference": {k: round(v, 3) for k, v in close.items()},
            "agrees": all(v <= AGREEMENT for v in close.values()),
            "live_runs": [{k: v for k, v in r.items() if k != "latencies"} for r in runs[trace.name]],
        }
    report["agreeing_shapes"] = sum(s["agrees"] for s in report["shapes"].values())
    out.mkdir(parents=True, exist_ok=True)
    (out / "replay.json").write_text(json.dumps(report, indent=1))
    return report
