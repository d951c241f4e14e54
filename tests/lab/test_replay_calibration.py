"""The replay's arithmetic: several live runs of a trace pooled (the percentiles of all
their answers together), and the start-up read from a live service's log."""

from __future__ import annotations

import datetime

import numpy as np
import pytest

from imgrec.lab.scaling.calibrate import spawned_at
from imgrec.lab.scaling.replay import pooled


def test_pooled_runs_take_the_percentiles_of_all_answers_and_the_mean_cost():
    fast = {"worker_seconds": 100.0, "cold_starts": 1, "requests": 100, "latencies": [0.02] * 100}
    slow_start = {"worker_seconds": 120.0, "cold_starts": 2, "requests": 100,
                  "latencies": [0.02] * 96 + [0.5, 0.6, 0.7, 0.8]}
    both = pooled([fast, slow_start])
    expected = np.percentile([0.02] * 196 + [0.5, 0.6, 0.7, 0.8], 99) * 1000
    assert both["p99_ms"] == round(float(expected), 1) and both["p50_ms"] == 20.0
    assert both["worker_seconds"] == 110.0 and both["cold_starts"] == 1.5
    assert both["runs"] == 2 and both["requests"] == 100 and both["answered"] == 100
    # One run alone keeps its own figures.
    assert pooled([slow_start])["p99_ms"] == round(float(np.percentile(slow_start["latencies"], 99)) * 1000, 1)


LOG = """2026-12-02 16:01:55,386 imgrec INFO queue ready: sqlite:///q.sqlite3
2026-12-02 16:01:59,908 imgrec.autoscaler INFO started worker pid 7598 (1/1)
2026-12-02 16:01:59,990 imgrec.web INFO web tier ready; replies on queue replies-01a2
2026-12-02 16:02:00,571 imgrec.worker INFO worker vm-7598-01a237 ready (model efficientnet-lite0@803726e5644c)
"""


def test_the_start_up_is_timed_from_the_spawn_the_service_logs():
    expected = datetime.datetime(2026, 12, 2, 16, 1, 59, 908000).timestamp()  # local time, as logged
    assert spawned_at(LOG) == pytest.approx(expected)
    assert spawned_at(LOG.splitlines()[0]) is None  # no worker started: the fallback is used


def test_the_prediction_pools_every_calibration_start_up_and_tick_phase():
    """The simulated side is made as the live one: each round's calibration, each start-up
    it measured, ticks at several phases, all pooled."""
    from imgrec.lab.scaling.commands import load_trace
    from imgrec.lab.scaling.replay import PHASES, predicted
    from imgrec.lab.scaling.simulate import ServiceModel, WorkerModel
    from imgrec.settings import Settings

    settings = Settings()
    trace = load_trace("steady", 20.0, 6.0, 0, "auto", "", 1.0, 1.0)
    model = WorkerModel(ServiceModel(0.0, 0.02), 0.5, settings.max_batch, 2.0, settings.max_backlog, 0.015, 0.01)
    fast, slow = predicted(trace, settings, [(model, [0.3])]), predicted(trace, settings, [(model, [1.2])])
    both = predicted(trace, settings, [(model, [0.3]), (model, [1.2])])
    assert fast["runs"] == PHASES and both["runs"] == 2 * PHASES
    assert both["worker_seconds"] == pytest.approx((fast["worker_seconds"] + slow["worker_seconds"]) / 2, abs=0.15)
    # A slower start-up keeps more requests waiting: it shows in the pooled tail.
    assert fast["p99_ms"] < both["p99_ms"] < slow["p99_ms"]
    assert predicted(trace, settings, [(model, [0.3])]) == fast  # deterministic: no seed to pass
