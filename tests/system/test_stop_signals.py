"""A storm of stop signals stops each long-running command cleanly and promptly.

Ctrl-C on `imgrec up` sends SIGINT to every process of the group and then each parent
sends SIGTERM to its children: a process gets two signals microseconds apart. A handler
that took a lock (`threading.Event.set`) could be interrupted by the second one inside
that lock and wait forever for itself; the worker then hung until its parent killed it
(visibility timeout + 5 s later). Here each command gets a second of SIGINTs and
SIGTERMs at irregular intervals: it must exit within seconds and leave its last
heartbeat saying "stopped", i.e. it went through its own shutdown, not a kill.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import httpx
import pytest

from images import chelsea, encode
from imgrec.lab.cpu import tree_cpu
from imgrec.lab.harness import Part, ServiceProcess, WebPart, alive, service_env, wait_until

CAT = ("cat.png", encode(chelsea().resize((400, 260)), "PNG"), "image/png")
ROLE_FOLDER = {"worker": "workers", "autoscaler": "autoscalers", "up": "supervisors"}


def _storm(pid: int, seconds: float = 1.0) -> int:
    """SIGINT and SIGTERM alternately, 0-120 µs apart, for `seconds`: the signals sent."""
    end, sent = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        try:
            os.kill(pid, signal.SIGINT if sent % 2 else signal.SIGTERM)
        except ProcessLookupError:
            break
        sent += 1
        pause = time.perf_counter() + 0.00002 * (sent % 7)
        while time.perf_counter() < pause:
            pass
    return sent


def _last_states(data_dir, role: str) -> list[str]:
    beats = list(data_dir.rglob(f"{ROLE_FOLDER[role]}/*.json"))
    return [json.loads(p.read_text())["state"] for p in beats]


def _start(command: str, data_dir, model_dir) -> Part:
    env = service_env(data_dir, model_dir, min_workers=1, max_workers=1)
    if command == "up":
        return WebPart(data_dir / "log", env, command="up")
    part = Part(data_dir / "log", env, command)
    ready = "ready (model" if command == "worker" else "autoscaler started"
    wait_until(lambda: ready in part.log.read_text(), 60, 0.1, f"{command} to start (log: {part.log})")
    return part


@pytest.mark.parametrize("command", ["worker", "autoscaler", "up"])
def test_a_storm_of_stop_signals_stops_it_cleanly(tmp_path, model_dir, command):
    for attempt in range(2):  # each storm hung the worker about one time in two before the fix
        data_dir = tmp_path / f"{attempt}"
        part = _start(command, data_dir, model_dir)
        try:
            # Settled: its heartbeat says it runs (the worker waits for messages, the
            # supervisor looks after its children).
            wait_until(lambda d=data_dir: _last_states(d, command) == ["running"], 60, 0.1, f"{command} running")
            assert _storm(part.proc.pid) > 100
            try:
                part.proc.wait(20)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{command} still running 20 s after the stop signals (log: {part.log.read_text()[-2000:]})")
            # A signal that lands after its shutdown, as the interpreter exits, may end it by
            # that signal; its shutdown must have run in full by then.
            assert part.proc.returncode in (0, -signal.SIGINT, -signal.SIGTERM), part.log.read_text()
            assert _last_states(data_dir, command) == ["stopped"], part.log.read_text()
        finally:
            for pid in tree_cpu(part.proc.pid) if part.proc.poll() is None else ():
                os.kill(pid, signal.SIGKILL)  # a hung one and what it started
            part.stop()


def test_the_children_of_an_up_killed_with_sigkill_stop_and_free_the_port(tmp_path, model_dir):
    """No orphans: `imgrec up` killed outright (OOM killer, `kill -9`) leaves no web tier
    holding its port and no autoscaler or worker running; the next `up` starts cleanly."""
    svc = ServiceProcess(tmp_path / "first", model_dir, "--min-workers", "1")
    try:
        wait_until(lambda: svc.worker_pids(), 60, 0.2, "a worker")
        children = set(tree_cpu(svc.proc.pid)) - {svc.proc.pid}
        assert {tree_cpu(svc.proc.pid)[pid][0] for pid in children} >= {"web", "autoscaler", "worker"}
        svc.proc.kill()
        svc.proc.wait()
        wait_until(lambda: not any(alive(pid) for pid in children), 20, 0.2, "the orphans to stop")
        assert "is gone: stopping" in svc.log.read_text()
    finally:
        svc.stop()
    again = ServiceProcess(tmp_path / "again", model_dir, "--min-workers", "1", port=svc.port)
    try:
        assert "restarting" not in again.log.read_text()  # it started (on the freed port) at once
    finally:
        assert again.stop() == 0


def test_up_on_a_port_in_use_says_so_in_one_line_and_exits(tmp_path, model_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        part = Part(tmp_path / "up.log", service_env(tmp_path, model_dir), "up", "--port", str(port))
        assert part.proc.wait(30) == 1
        part.stop()
        out = part.log.read_text()
        assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in out, out
        assert "restarting" not in out and "imgrec is up" not in out


def test_the_workers_of_a_killed_autoscaler_stop_and_the_restarted_one_runs_its_own(tmp_path, model_dir):
    """Never more workers than the maximum: the dead autoscaler's workers finish their
    batch and stop (nobody would supervise them), the restarted autoscaler starts its own."""
    svc = ServiceProcess(tmp_path, model_dir, "--min-workers", "2", "--max-workers", "2")
    try:
        wait_until(lambda: len(svc.worker_pids()) == 2, 60, 0.2, "two workers")
        old = set(svc.worker_pids())
        (scaler,) = [pid for pid, (role, _) in tree_cpu(svc.proc.pid).items() if role == "autoscaler"]
        os.kill(scaler, signal.SIGKILL)
        wait_until(lambda: not any(alive(pid) for pid in old), 20, 0.2, "the old workers to stop")

        def workers() -> list[int]:
            return [pid for pid, (role, _) in tree_cpu(svc.proc.pid).items() if role == "worker"]

        wait_until(lambda: len(workers()) == 2 and not old & set(workers()), 60, 0.2, "two new workers")
        time.sleep(2)  # a window in which a third would show: slowness can only hide one, never invent it
        assert len(workers()) == 2
        r = httpx.post(svc.url + "/", files={"myfile": CAT}, timeout=60)
        assert r.text == "cat:tiger cat"
    finally:
        assert svc.stop() == 0
