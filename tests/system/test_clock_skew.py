"""Hosts whose clocks differ: the autoscaler's housekeeping runs under a clock 40 minutes
ahead (libfaketime), beside a web tier and a worker on the true clock, with a retention
of 30 minutes. Every decision across hosts is by the store's clock, so the web tier's
reply queue is not taken for a dead replica's, and results answered seconds ago are not
swept as expired."""

from __future__ import annotations

import shutil

import httpx
import pytest

from images import chelsea, encode
from imgrec.lab.harness import IMGREC, Part, WebPart, service_env, wait_until

CAT = ("cat.png", encode(chelsea().resize((400, 260)), "PNG"), "image/png")


def _replies_from(url: str, source: str) -> float:
    lines = httpx.get(url + "/metrics").text.splitlines()
    return sum(float(x.split()[-1]) for x in lines if x.startswith(f'imgrec_replies_total{{source="{source}"}}'))


@pytest.mark.parametrize("ahead", ["+5m", "+40m"])
def test_an_autoscaler_ahead_of_the_others_sweeps_nothing_alive_or_young(tmp_path, model_dir, ahead):
    faketime = shutil.which("faketime")
    if faketime is None:
        pytest.fail("faketime is required (make test-system-packages installs it)")
    env = service_env(tmp_path, model_dir, retention="30m", visibility_timeout=1, max_workers=0)
    web = WebPart(tmp_path / "web.log", env)
    worker = Part(tmp_path / "worker.log", env, "worker", "--idle-timeout", "600")
    scaler = None
    try:
        first = httpx.post(web.url + "/", files={"myfile": CAT}, timeout=60)
        assert first.text == "cat:tiger cat"
        job = httpx.post(web.url + "/api/v1/jobs", files={"file": CAT}, timeout=60).json()["jobs"][0]
        wait_until(lambda: httpx.get(web.url + job["url"]).json()["status"] == "done", 60, 0.1, "the async job")
        # Its housekeeping only (--max-workers 0), on a clock ahead of every other.
        # Only the wall clock is faked: a faked monotonic clock makes libfaketime's timed waits wrong.
        skewed = {**env, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
        scaler = Part(tmp_path / "autoscaler.log", skewed, "-f", ahead, IMGREC, "autoscaler", "--max-workers", "0",
                      program=faketime)
        wait_until(lambda: "retention sweep:" in scaler.log.read_text(), 60, 0.2, "a retention sweep")
        assert "retention sweep: 0 objects" in scaler.log.read_text(), scaler.log.read_text()
        assert "removed reply queue" not in scaler.log.read_text()
        done = httpx.get(web.url + job["url"])
        assert done.status_code == 200 and done.json()["status"] == "done"
        before = _replies_from(web.url, "queue")
        assert httpx.post(web.url + "/", files={"myfile": CAT}, timeout=60).text == "cat:tiger cat"
        assert _replies_from(web.url, "queue") == before + 1, "answered through the replica's own reply queue"
    finally:
        for part in (scaler, worker, web):
            if part is not None:
                part.stop()

