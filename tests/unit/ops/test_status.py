"""`imgrec status`: every part of a deployment from its heartbeats and the queue, from any
host with the settings; no password printed."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest
from rich.console import Console
from typer.testing import CliRunner

from fakes import fake_model
from imgrec import cli
from imgrec.engine import registry
from imgrec.messages import Heartbeat, dumps
from imgrec.ops.status import gather, redact, render
from imgrec.queues import request_queue
from imgrec.settings import Settings
from imgrec.stores import open_store


@pytest.fixture
def deployment(tmp_path, monkeypatch):
    """A file store and a SQLite queue with the heartbeats of a small deployment in them."""
    monkeypatch.setenv("IMGREC_DATA_DIR", str(tmp_path))
    settings = Settings()
    store = open_store(settings.store_url)
    queue = request_queue(settings)
    queue.send_many([{"job_id": f"{i:032x}", "input_key": "inputs/x/a.png"} for i in range(3)])
    queue.receive(1)
    now = time.time()
    beat = Heartbeat("", host="host-a", started=now - 60, last_seen=now)
    for b in [
        replace(beat, id="web-1", role="web", pid=10),
        replace(beat, id="w-1", pid=11, completed=40, batch_sizes={"1": 4, "8": 2}, model="efficientnet-lite0@abc"),
        replace(beat, id="w-2", pid=12, last_seen=now - 600),  # killed: its beat went silent
        replace(beat, id="w-3", host="host-b", pid=13, state="waiting", problem="no model in /m, and none in the store"),
        replace(beat, id="scaler", role="autoscaler", pid=14, counters={"worker_crashes": 3, "hung_workers_replaced": 1}),
    ]:
        store.put(b.key, dumps(b.to_dict()))
    # The store's own time says who is silent: w-2's record was last written ten minutes ago.
    silent = settings.data_dir / "store" / replace(beat, id="w-2").key
    os.utime(silent, (now - 600, now - 600))
    fake_model(tmp_path / "built")
    registry.push(store, tmp_path / "built")
    yield settings
    queue.close()


def test_gather_sees_every_part(deployment):
    view = gather(deployment)
    s = view["summary"]
    assert (s["queue_depth"], s["in_flight"], s["dead_letter"], s["workers"], s["completed"]) == (2, 1, 0, 1, 40)
    assert s["problems"] == ["no model in /m, and none in the store"]
    states = {m["id"]: m["state"] for m in view["worker"]}
    assert states == {"w-1": "running", "w-2": "silent", "w-3": "waiting"}
    w1 = next(m for m in view["worker"] if m["id"] == "w-1")
    assert (w1["host"], w1["pid"], w1["batches"], w1["model"]) == ("host-a", 11, 6, "efficientnet-lite0@abc")
    assert [m["id"] for m in view["web"]] == ["web-1"]
    assert view["autoscaler"][0]["counters"]["worker_crashes"] == 3
    assert view["model"]["name"] == "efficientnet-lite0" and len(view["model"]["sha256"]) == 64
    assert view["retention_seconds"] == 7 * 86400 and view["queue"] == deployment.queue_url


def test_render_shows_it_to_a_person(deployment):
    console = Console(record=True, width=200)
    console.print(render(gather(deployment)))
    text = console.export_text()
    for part in (
        "2 waiting, 1 in flight, 0 dead letters",
        "web-1",
        "host-b",
        "silent",
        "waiting",
        "efficientnet-lite0 sha256",
        "retention 7d",
        "problem: no model in /m",
    ):
        assert part in text, part


def test_the_command_prints_json_for_scripts(deployment):
    result = CliRunner().invoke(cli.app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["summary"]["queue_depth"] == 2


def test_no_queue_yet_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGREC_DATA_DIR", str(tmp_path / "nothing-here"))
    result = CliRunner().invoke(cli.app, ["status"])
    assert result.exit_code != 0 and "imgrec init creates it" in str(result.exception)


def test_passwords_are_not_shown():
    assert redact("redis://:s3cret@redis.internal:6379/0?prefix=x") == "redis://:***@redis.internal:6379/0?prefix=x"
    assert redact("redis://user:s3cret@h:1/0") == "redis://user:***@h:1/0"
    assert redact("s3://bucket/prefix") == "s3://bucket/prefix"


def test_watch_redraws_until_interrupted(deployment, monkeypatch):
    from imgrec.cli import ops as commands

    waits = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            raise KeyboardInterrupt  # Ctrl-C

    # This command's clock only: threads other tests left behind keep the real one.
    monkeypatch.setattr(commands, "time", SimpleNamespace(sleep=sleep))
    result = CliRunner().invoke(cli.app, ["status", "--watch", "--every", "0.5"])
    assert result.exit_code == 0 and waits == [0.5, 0.5] and "web-1" in result.output


def _text(view: dict) -> str:
    console = Console(record=True, width=400)
    console.print(render(view))
    return console.export_text()


def test_no_autoscaler_is_a_warning(deployment):
    assert not any("autoscaler" in w for w in gather(deployment)["warnings"]), "the deployment's autoscaler runs"
    store = open_store(deployment.store_url)
    store.delete(Heartbeat("scaler", "autoscaler").key)
    view = gather(deployment)
    (warning,) = [w for w in view["warnings"] if "autoscaler" in w]
    assert warning.startswith("no autoscaler runs") and "housekeeping" in warning
    assert "warning: no autoscaler runs" in _text(view)


def _bare(tmp_path, monkeypatch, workers: list[Heartbeat]) -> Settings:
    """A deployment with a live autoscaler and `workers`, and no model in its store."""
    monkeypatch.setenv("IMGREC_DATA_DIR", str(tmp_path))
    settings = Settings()
    store = open_store(settings.store_url)
    request_queue(settings).close()
    now = time.time()
    for b in [Heartbeat("scaler", "autoscaler", last_seen=now), *(replace(w, last_seen=now) for w in workers)]:
        store.put(b.key, dumps(b.to_dict()))
    return settings


def test_a_model_that_comes_with_the_workers_image_is_no_problem(tmp_path, monkeypatch):
    """Workers whose image holds the model never need the store's: their heartbeats say
    what they run, and that is the deployment's model."""
    worker = Heartbeat("w-1", host="pod-a", pid=7, model="efficientnet-lite0@786f90d3af74", model_variant="lite0")
    view = gather(_bare(tmp_path, monkeypatch, [worker, replace(worker, id="w-2")]))
    model = view["model"]
    assert (model["name"], model["sha256"], model["store"], model["here"]) == ("efficientnet-lite0", "786f90d3af74", None, None)
    assert model["workers"] == [{"name": "efficientnet-lite0", "version": "786f90d3af74", "variant": "lite0", "workers": 2}]
    assert view["warnings"] == []
    text = _text(view)
    assert "run by 2 workers as efficientnet-lite0@786f90d3af74 (lite0)" in text and "none in the store: only" in text
    assert "no model" not in text


def test_a_model_on_this_host_is_no_problem_either(tmp_path, monkeypatch):
    made = fake_model(tmp_path / "baked")
    monkeypatch.setenv("IMGREC_MODEL_DIR", str(tmp_path / "baked"))
    view = gather(_bare(tmp_path, monkeypatch, []))
    assert view["model"]["here"] == {"path": str(tmp_path / "baked"), "name": made.name, "sha256": made.sha256}
    assert view["warnings"] == [] and f"here in {tmp_path / 'baked'}" in _text(view)


def test_no_model_anywhere_is_said_once_with_where_it_was_looked_for(tmp_path, monkeypatch):
    view = gather(_bare(tmp_path, monkeypatch, []))
    (warning,) = view["warnings"]
    assert warning.startswith("no model anywhere: none in the store (no model 'efficientnet-lite0' in the store")
    assert f"none on this host (no model in {tmp_path / 'model'}" in warning


def test_workers_on_another_model_than_the_store_s_are_a_warning(deployment):
    (warning,) = gather(deployment)["warnings"]  # w-1 runs efficientnet-lite0@abc; the fake one pushed is another
    assert warning.startswith("workers run efficientnet-lite0@abc but the store has efficientnet-lite0@")
