"""The recorded `imgrec bench e2e` runs (docs/e2e*.json, which the performance page
renders) agree with themselves: a hand-edited or half-written report fails here."""

from __future__ import annotations

import json

import pytest

from docsite import DOCS
from imgrec.lab.bench import targets

RUNS = ["e2e.json", "e2e-lite0-int8.json"]
PLAIN = "plain fp32 (Pillow, no draft)"


@pytest.fixture(params=RUNS)
def run(request) -> dict:
    return json.loads((DOCS / request.param).read_text())


def test_the_best_round_is_the_one_reported(run):
    best = run["service_rounds"].index(max(run["service_rounds"]))
    assert run["main"]["images_per_second"] == run["service_rounds"][best]
    assert run["cpu"]["cpu_busy"] == run["cpu_busy_rounds"][best]
    assert run["bare_images_per_second"] == run["bare"][PLAIN]["images_per_second"] == max(run["bare_rounds"])
    assert run["ratio_to_bare"] == pytest.approx(run["main"]["images_per_second"] / run["bare_images_per_second"], abs=1e-3)
    idle = run["idle_single_request"]["p50_ms"] - run["bare_single_image_ms"]
    assert run["idle_p50_overhead_ms"] == pytest.approx(idle, abs=0.01)


def test_the_targets_are_the_reports_own_figures(run):
    rows = {t["target"].removeprefix(f"{run['model']} ").split(" ")[0]: t for t in run["targets"]}
    ratio = run["ratio_to_bare"]
    bar = targets.INT8_RATIO if run["model"].endswith("int8") else targets.FP32_RATIO
    assert (rows["service"]["measured"], rows["service"]["passed"]) == (f"{ratio:.2f}x", ratio >= bar)
    busy = run["cpu"]["cpu_busy"]
    assert (rows["CPU"]["measured"], rows["CPU"]["passed"]) == (f"{busy:.1%}", busy >= targets.CPU_BUSY)
    over = run["idle_p50_overhead_ms"]
    assert (rows["idle"]["measured"], rows["idle"]["passed"]) == (f"bare + {over:.1f} ms", over <= targets.IDLE_OVERHEAD_MS)
    cold = run["cold_start_seconds"]
    assert (rows["cold"]["measured"], rows["cold"]["passed"]) == (f"{cold:.2f} s", cold <= targets.COLD_START_S)
