"""Parts that die or hang come back: the web tier is restarted by `imgrec up`, a hung
worker is replaced, a host without a model says so once and starts no worker."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess

import httpx

from images import chelsea, encode, photo_variants
from imgrec.lab.harness import IMGREC, Part, ServiceProcess, WebPart, free_port, service_env, wait_until

CAT = ("cat.png", encode(chelsea().resize((400, 260)), "PNG"), "image/png")


def _answers(url: str) -> bool:
    try:
        return httpx.post(url + "/", files={"myfile": CAT}, timeout=60).text == "cat:tiger cat"
    except httpx.HTTPError:
        return False


def _children(pid: int, title: str) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid), "-f", title], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_a_dead_web_tier_is_restarted(tmp_path, model_dir):
    svc = ServiceProcess(tmp_path / "svc", model_dir, "--max-workers", "1")
    try:
        (web,) = _children(svc.proc.pid, "imgrec web")
        os.kill(web, signal.SIGKILL)
        wait_until(lambda: _children(svc.proc.pid, "imgrec web") not in ([], [web]), 30, 0.2, "a new web tier")
        wait_until(lambda: _answers(svc.url), 30, 0.5, "the service to answer again")
        assert wait_until(lambda: svc.status()["restarts"] >= 1, 15, 0.5, "the restart in the status")
        assert "restarted web" in svc.log.read_text()
    finally:
        assert svc.stop() == 0


def test_a_hung_worker_is_replaced_and_its_work_answered(tmp_path, model_dir):
    svc = ServiceProcess(
        tmp_path / "svc", model_dir, "--min-workers", "1", "--max-workers", "1",
        env={"IMGREC_VISIBILITY_TIMEOUT": "3", "IMGREC_MAX_BATCH": "2"},
    )
    variants = photo_variants(16)
    try:
        (first,) = wait_until(svc.worker_pids, 30, what="the worker")

        async def send_all():
            async with httpx.AsyncClient(timeout=120) as client:
                return await asyncio.gather(*(client.post(svc.url + "/", files={"myfile": (n, d, "image/jpeg")})
                                              for n, d in variants.items()))

        async def hang_it_meanwhile():
            sent = asyncio.ensure_future(send_all())
            # Stop it while it holds messages (not after a fixed time: a fast machine may
            # have answered everything by then): its heartbeat goes silent.
            while (await asyncio.to_thread(svc.status))["in_flight"] == 0:
                assert not sent.done(), "everything was answered before the worker could be stopped"
                await asyncio.sleep(0.005)
            os.kill(first, signal.SIGSTOP)
            return await sent

        answers = asyncio.run(hang_it_meanwhile())
        assert [a.status_code for a in answers] == [200] * len(variants), [a.text for a in answers if a.status_code != 200]
        assert first not in svc.worker_pids()
        wait_until(lambda: svc.status()["hung_workers_replaced"] >= 1, 15, 0.5, "the replacement in the status")
        assert f"worker pid {first} is silent" in svc.log.read_text()
    finally:
        try:
            os.kill(first, signal.SIGKILL)
        except ProcessLookupError:
            pass
        assert svc.stop() == 0


def test_no_model_is_one_line_a_status_entry_and_no_worker(tmp_path, model_dir):
    empty = tmp_path / "no-model"
    env = service_env(tmp_path, empty, scale_in_delay=30)
    web = WebPart(tmp_path / "web.log", env)
    scaler = Part(tmp_path / "autoscaler.log", env, "autoscaler", "--max-workers", "1")
    try:
        assert httpx.post(web.url + "/api/v1/jobs", files={"file": CAT}, timeout=30).status_code == 202
        status = wait_until(lambda: (s := web.status())["problems"] and s, 20, 0.5, "the problem in the status")
        assert status["problems"] == ["workers cannot start: no model"] and status["workers"] == 0, "which, not where"
        assert f"workers cannot start: no model in {empty}" in _operators_problems(env)[0], "where, for the operator"
        r = httpx.post(web.url + "/", files={"myfile": CAT}, timeout=30)
        assert r.status_code == 503 and "cannot classify right now" in r.text, "a waiting client is told at once"
        log = scaler.log.read_text()
        assert log.count("workers cannot start") == 1 and "started worker" not in log
        shutil.copytree(model_dir, empty, dirs_exist_ok=True)  # the operator builds or pulls the model
        wait_until(lambda: _answers(web.url), 60, 1.0, "workers to start once the model is there")
        assert "model found" in scaler.log.read_text()
    finally:
        scaler.stop()
        web.stop()


def _operators_problems(env: dict[str, str]) -> list[str]:
    """The problems as `imgrec status` shows them to an operator (with where they are)."""
    out = subprocess.run([IMGREC, "status", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["summary"]["problems"]


def _shared(tmp_path, host: str) -> dict[str, str]:
    """A host of its own (data and model directories) on a store and queue others share."""
    return service_env(
        tmp_path / host,
        tmp_path / host / "model",
        store=(tmp_path / "store").as_uri(),
        queue=f"sqlite://{tmp_path / 'queue.sqlite3'}",
        scale_in_delay=30,
    )


def test_a_worker_host_without_a_model_waits_for_one_then_pulls_it(tmp_path, model_dir):
    from imgrec.engine import registry
    from imgrec.stores import open_store

    ready = tmp_path / "ready"
    ready.write_text("left by a worker that died")
    web = WebPart(tmp_path / "web.log", _shared(tmp_path, "web-host"))
    worker = Part(
        tmp_path / "worker.log", _shared(tmp_path, "worker-host"), "worker", "--idle-timeout", "120", "--ready-file", str(ready)
    )
    try:
        status = wait_until(lambda: (s := web.status())["problems"] and s, 30, 0.5, "the worker's problem")
        assert status["problems"] == ["a worker waits for its model"]
        detail = _operators_problems(_shared(tmp_path, "web-host"))[0]
        assert detail.startswith("no model in") and "imgrec model push" in detail
        assert httpx.post(web.url + "/", files={"myfile": CAT}, timeout=30).status_code == 503
        assert not ready.exists(), "not ready while waiting"
        registry.push(open_store((tmp_path / "store").as_uri()), model_dir)  # built and pushed elsewhere
        wait_until(lambda: _answers(web.url), 60, 1.0, "the worker to pull the model and answer")
        assert web.status()["problems"] == [] and worker.proc.poll() is None
        assert ready.read_text().startswith("efficientnet-lite0@")
        log = worker.log.read_text()
        assert log.count("waiting for a model") == 1 and "pulled from the store" in log
    finally:
        worker.stop()
        web.stop()
    assert not ready.exists(), "removed as it stops"


def test_an_autoscaler_pulls_the_pushed_model_before_starting_workers(tmp_path, model_dir):
    from imgrec.engine import registry
    from imgrec.stores import open_store

    registry.push(open_store((tmp_path / "store").as_uri()), model_dir)
    web = WebPart(tmp_path / "web.log", _shared(tmp_path, "web-host"))
    scaler = Part(tmp_path / "autoscaler.log", _shared(tmp_path, "worker-host"), "autoscaler", "--max-workers", "1")
    try:
        wait_until(lambda: _answers(web.url), 60, 1.0, "a worker with the pulled model")
        assert (tmp_path / "worker-host" / "model" / "manifest.json").is_file()
        assert "workers cannot start" not in scaler.log.read_text()
    finally:
        scaler.stop()
        web.stop()


def test_a_second_up_over_the_same_store_on_this_host_says_so_and_exits(tmp_path, model_dir):
    """Two `imgrec up` in two terminals over one data directory would run two sets of
    workers on the same cores; the second one says what to do instead."""
    first = ServiceProcess(tmp_path, model_dir, "--max-workers", "1")
    try:
        second = Part(tmp_path / "second.log", service_env(tmp_path, model_dir), "up", "--port", str(free_port()))
        assert second.proc.wait(60) == 1
        second.stop()
        out = second.log.read_text()
        assert f"another imgrec up (pid {first.proc.pid}) already runs on this host" in out, out
        assert "imgrec web --port" in out and "imgrec is up" not in out
        assert _answers(first.url), "the first one is untouched"
    finally:
        assert first.stop() == 0
    again = ServiceProcess(tmp_path, model_dir, "--max-workers", "1")  # once stopped, a new one starts
    assert again.stop() == 0


def test_a_second_up_over_the_store_spelt_another_way_says_so_too(tmp_path, model_dir):
    """The host lock is named by the store URL as written; the first one's heartbeat in the
    store catches the same store written another way (here with a trailing slash)."""
    store = (tmp_path / "store").as_uri()
    first = ServiceProcess(tmp_path, model_dir, "--max-workers", "1", env={"IMGREC_STORE": store})
    try:
        env = {**service_env(tmp_path, model_dir), "IMGREC_STORE": store + "/"}
        second = Part(tmp_path / "second.log", env, "up", "--port", str(free_port()))
        assert second.proc.wait(60) == 1
        second.stop()
        assert f"another imgrec up (pid {first.proc.pid}) already runs on this host" in second.log.read_text()
    finally:
        assert first.stop() == 0


def test_two_ups_started_at_once_over_one_store_leave_one_running(tmp_path, model_dir):
    """Started in the same instant, neither has written its heartbeat when the other looks:
    a lock on this host decides, and the second one out says who holds it."""
    env = service_env(tmp_path, model_dir, max_workers=1)
    ports = [free_port(), free_port()]
    ups = [Part(tmp_path / f"up{i}.log", env, "up", "--port", str(port)) for i, port in enumerate(ports)]
    try:
        wait_until(lambda: any(u.proc.poll() is not None for u in ups), 60, 0.2, "one of the two to give way")
        (lost,) = [u for u in ups if u.proc.poll() is not None]
        (kept,) = [u for u in ups if u is not lost]
        assert lost.proc.returncode == 1
        assert f"another imgrec up (pid {kept.proc.pid}) already runs on this host" in lost.log.read_text()
        wait_until(lambda: _answers(f"http://127.0.0.1:{ports[ups.index(kept)]}"), 60, 0.5, "the other to answer")
    finally:
        codes = [u.stop() for u in ups]
    assert sorted(codes) == [0, 1]
