"""Pooling several live runs of a trace: the percentiles of all their answers together."""

from __future__ import annotations

import numpy as np

from imgrec.bench.replay import pooled


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
