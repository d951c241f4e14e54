"""The autoscaler starts no worker without a model here: it pulls the pushed one, or
says in one line what is missing and how to push one."""

from __future__ import annotations

import uuid

from fakes import fake_model
from imgrec.autoscaler.loop import ModelCheck
from imgrec.engine import registry
from imgrec.stores import open_store


def test_a_missing_model_is_pulled_from_the_store(tmp_path):
    store = open_store(f"memory://{uuid.uuid4().hex}")
    fake_model(tmp_path / "built")
    registry.push(store, tmp_path / "built")
    check = ModelCheck(tmp_path / "host", store)
    assert check.problem() == ""
    assert (tmp_path / "host" / "model.onnx").is_file()


def test_without_one_anywhere_the_problem_says_how_to_push_one(tmp_path, caplog):
    store = open_store(f"memory://{uuid.uuid4().hex}")
    check = ModelCheck(tmp_path / "host", store, every=0.0, pull_every=60.0)
    problem = check.problem()
    assert problem.startswith("workers cannot start: no model in") and "imgrec model push" in problem
    assert check.problem() == problem  # looked again at once, the store not asked again: the same line
    assert [r.message for r in caplog.records].count(problem) == 1
    fake_model(tmp_path / "host")  # the operator pulls or copies one
    assert check.problem() == ""
