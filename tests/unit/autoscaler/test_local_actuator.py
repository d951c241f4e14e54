"""The local actuator's care for its workers, with stand-in commands for workers."""

from __future__ import annotations

import sys
import time

from imgrec.actuators.local import LocalActuator, host_capacity
from imgrec.lab.harness import wait_until
from imgrec.messages import Heartbeat

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
CRASHER = [sys.executable, "-c", "import sys; sys.exit(3)"]


def test_a_crash_loop_backs_off():
    actuator = LocalActuator(capacity=2, command=CRASHER)
    started_at = time.monotonic()
    while time.monotonic() - started_at < 4:
        actuator.reconcile(2)
        time.sleep(0.05)
    actuator.shutdown(5)
    # Without backoff: a start every tick (about 80 in 4 s); with it: 0.5 s, then 1, 2, ...
    assert 2 <= actuator.counters["workers_started"] <= 5, actuator.counters
    assert actuator.counters["worker_crashes"] >= 2


def test_a_silent_worker_is_killed_and_replaced(monkeypatch):
    import imgrec.actuators.local as local

    monkeypatch.setattr(local, "QUICK_DEATH", 0.0)
    actuator = LocalActuator(capacity=1, command=SLEEPER)
    try:
        actuator.reconcile(1)
        (pid,) = actuator.pids()
        beat = Heartbeat("w", "worker", pid=pid, last_seen=time.time() - 60, progress_at=time.time() - 60)
        actuator.watch([beat])  # silent for a minute: killed
        wait_until(lambda: actuator.running() == 0, 10, what="the silent worker to be gone")
        actuator.reconcile(1)
        assert actuator.pids() != [pid] and actuator.counters["hung_workers_replaced"] == 1
        assert actuator.counters["worker_crashes"] == 0, "a kill for hanging is not a crash"
        (new,) = actuator.pids()
        actuator.watch([Heartbeat("w2", "worker", pid=new, last_seen=time.time(), progress_at=time.time())])
        assert actuator.running() == 1, "a worker that beats and turns round is left alone"
    finally:
        actuator.shutdown(5)


def test_a_stuck_loop_is_killed_even_with_a_beating_heart(monkeypatch):
    import imgrec.actuators.local as local

    monkeypatch.setattr(local, "QUICK_DEATH", 0.0)
    actuator = LocalActuator(capacity=1, command=SLEEPER, hung_after=30)
    try:
        actuator.reconcile(1)
        (pid,) = actuator.pids()
        actuator.watch([Heartbeat("w", "worker", pid=pid, last_seen=time.time(), progress_at=time.time() - 31)])
        wait_until(lambda: actuator.running() == 0, 10, what="the stuck worker to be gone")
    finally:
        actuator.shutdown(5)


def test_the_host_caps_the_workers(caplog):
    assert 1 <= host_capacity() <= (__import__("os").cpu_count() or 1)
    assert host_capacity(threads_per_worker=64) == 1
    actuator = LocalActuator(capacity=2, command=SLEEPER)
    try:
        actuator.reconcile(5)
        assert actuator.running() == 2 and "this host can use 2" in caplog.text
    finally:
        actuator.shutdown(5)
