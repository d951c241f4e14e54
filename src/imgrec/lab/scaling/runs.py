"""`imgrec simulate`: policies run over one trace, their figures as JSON and a chart.

`compare` is what a live replay reuses: the same arrivals, settings and service model
give the simulator's prediction beside the service's own figures.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from imgrec.errors import require
from imgrec.lab.scaling.peers import open_policy
from imgrec.lab.scaling.simulate import Result, ServiceModel, WorkerModel, simulate
from imgrec.lab.scaling.traces import Trace
from imgrec.settings import Settings

CHART_SAMPLES = 1000


def host_cores(settings: Settings, cores: float | None) -> float | None:
    """The cores workers share: as given (0: none shared, each worker has its own);
    by default this machine's when the local actuator runs them here, else none."""
    if cores is None:
        return float(os.cpu_count() or 1) if settings.actuator == "local" else None
    return cores or None


def inputs(settings: Settings, service: ServiceModel | None, cold_start: float | None, cores: float | None,
           remeasure: bool = False) -> tuple[WorkerModel, str]:
    """The workers as simulated, from what was given and what is measured on this
    machine for the rest; and a note saying which is which."""
    source = "given"
    if service is None or cold_start is None:
        from imgrec.lab.scaling.service_time import measured

        m_service, m_cold, source = measured(settings, remeasure)
        if service is not None or cold_start is not None:
            source = "partly given, the rest " + source
        service = service or m_service
        cold_start = m_cold if cold_start is None else cold_start
    return WorkerModel(service, cold_start, settings.max_batch, cores, settings.max_backlog), source


def compare(times, specs: list[str], settings: Settings, model: WorkerModel, duration: float | None = None,
            slo: float = 1.0, samples: int = 0, first_tick: float = 0.0, seed: int = 0) -> dict[str, Result]:
    """Each policy (`imgrec`, `keda`, ..., see `open_policy`) over the same arrivals."""
    return {spec: simulate(times, open_policy(spec, settings), model, duration, slo, samples, first_tick, seed)
            for spec in specs}


def run_simulation(settings: Settings, trace: Trace, specs: list[str], model: WorkerModel, slo: float,
                   json_path: Path | None, chart_path: Path | None) -> tuple[dict[str, Result], float]:
    """The runs, the JSON and the chart; and the seconds the simulation itself took."""
    t0 = time.perf_counter()
    if chart_path:  # before the runs, not after: a missing extra is said at once
        require("matplotlib", "bench", "the chart (--chart '' for none)")
    results = compare(trace.times, specs, settings, model, trace.duration, slo, CHART_SAMPLES if chart_path else 0)
    took = time.perf_counter() - t0
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report(results, trace, model, slo), indent=1))
    if chart_path:
        chart_path.parent.mkdir(parents=True, exist_ok=True)
        chart(results, trace, chart_path)
    return results, took


def report(results: dict[str, Result], trace: Trace, model: WorkerModel, slo: float) -> dict:
    return {
        "policies": {name: r.figures() for name, r in results.items()},
        "trace": {"name": trace.name, "requests": len(trace.times), "duration_s": trace.duration,
                  "mean_rate": round(trace.mean_rate, 3)},
        "model": {"service_a_s": model.service.a, "service_b_s": model.service.b, "cold_start_s": model.cold_start,
                  "max_batch": model.max_batch, "host_cores": model.host_cores, "side_cpu_ms": model.side_cpu * 1000,
                  "max_backlog": model.max_backlog},
        "slo_s": slo,
    }


def chart(results: dict[str, Result], trace: Trace, path: Path) -> None:
    """One panel per policy: arrivals per second and the queue (left), workers (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end = max(r.end for r in results.values())
    bins = np.linspace(0, end, CHART_SAMPLES + 1)
    rate = np.histogram(trace.times, bins)[0] / (bins[1] - bins[0])
    fig, axes = plt.subplots(len(results), 1, figsize=(10, 2.2 * len(results) + 0.6), sharex=True, squeeze=False)
    for ax, (name, r) in zip(axes[:, 0], results.items(), strict=True):
        f = r.figures()
        ax.fill_between(bins[:-1], rate, step="post", color="tab:blue", alpha=0.3, label="arrivals/s")
        s = r.series
        assert s is not None, "simulated with samples"
        ax.plot(s.t, s.backlog, color="tab:orange", lw=0.8, label="waiting")
        ax.set_ylabel("per s / waiting")
        right = ax.twinx()
        right.step(s.t, s.workers, where="post", color="tab:green", lw=1.2, label="workers")
        right.set_ylabel("workers")
        right.set_ylim(bottom=0)
        ax.set_title(f"{name}: {f['worker_seconds']:.0f} worker-s, p99 {f['p99_ms']} ms, "
                     f"{f['slo_attainment']:.1%} within {r.slo:g} s, {f['cold_starts']} cold starts", fontsize=9)
        handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
        ax.legend(handles, [h.get_label() for h in handles], loc="upper right", fontsize=7)
    axes[-1, 0].set_xlabel("seconds")
    fig.suptitle(f"trace {trace.name}: {len(trace.times)} requests over {trace.duration:g} s", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
