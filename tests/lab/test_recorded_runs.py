"""The recorded live replays (docs/replay*.json, which the performance page renders)
agree with themselves: pooled figures, differences and verdicts as `imgrec bench replay`
computes them."""

from __future__ import annotations

import json

import pytest

from docsite import DOCS
from imgrec.lab.scaling.replay import AGREEMENT

REPLAYS = ["replay.json", "replay-before.json", "replay-median.json"]


@pytest.fixture(params=REPLAYS)
def report(request) -> dict:
    return json.loads((DOCS / request.param).read_text())


def test_each_round_was_calibrated_and_each_trace_run_in_it(report):
    assert len(report["calibrations"]) == report["repeats"] and report["model"] == report["calibrations"][0]
    for shape in report["shapes"].values():
        assert len(shape["live_runs"]) == shape["live"]["runs"] == report["repeats"]
        mean = sum(r["worker_seconds"] for r in shape["live_runs"]) / report["repeats"]
        assert shape["live"]["worker_seconds"] == pytest.approx(mean, abs=0.1)


def test_differences_and_verdicts_are_the_figures_own(report):
    for name, shape in report["shapes"].items():
        live, sim = shape["live"], shape["simulated"]
        for figure in ("worker_seconds", "p99_ms"):
            # the figures are rounded in the report, the difference was not: a rounding's slack
            assert shape["difference"][figure] == pytest.approx(abs(sim[figure] - live[figure]) / live[figure], abs=2e-3), name
        assert shape["agrees"] == all(d <= AGREEMENT for d in shape["difference"].values()), name
    assert report["agreeing_shapes"] == sum(s["agrees"] for s in report["shapes"].values())
