"""The recorded `imgrec bench peers` runs (docs/peers-*.json, which the performance page
renders) agree with themselves: a hand-edited or half-written report fails here."""

from __future__ import annotations

import json

import pytest

from docsite import DOCS

RUNS = ["peers-lite0.json", "peers-lite0-int8.json"]


@pytest.fixture(params=RUNS)
def run(request) -> dict:
    return json.loads((DOCS / request.param).read_text())


def test_each_side_s_best_round_is_the_one_reported(run):
    for side in ("imgrec_single", "imgrec_100_per_request", "bentoml"):
        rounds = run[side]["rounds_images_per_second"]
        assert len(rounds) == run["rounds"] and run[side]["images_per_second"] == max(rounds)
    assert run["bare"]["engine"] == max(run["bare"]["engine_rounds"])


def test_the_ratios_are_the_report_s_own_figures(run):
    engine, single = run["bare"]["engine"], run["imgrec_single"]["images_per_second"]
    ratios = run["ratios"]
    assert ratios["imgrec / bentoml"] == pytest.approx(single / run["bentoml"]["images_per_second"], abs=1e-3)
    assert ratios["imgrec single / engine bare"] == pytest.approx(single / engine, abs=1e-3)
    hundred = run["imgrec_100_per_request"]["images_per_second"]
    assert ratios["imgrec 100 per request / engine bare"] == pytest.approx(hundred / engine, abs=1e-3)


def test_every_answer_was_checked_and_right(run):
    assert run["checked_failures"] == {"imgrec": 0, "bentoml": 0}
    for side in ("imgrec_single", "bentoml"):
        assert run[side]["ok"] == run["requests"] and run[side]["wrong"] == 0
