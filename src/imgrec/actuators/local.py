"""`LocalActuator`: worker processes on this machine (`imgrec worker` children).

It starts no more workers than the host can use (cores and memory), replaces a
worker that died, kills and replaces one that hangs (its heartbeat or its loop went
quiet), and backs off when workers die as soon as they start (a crash loop), so
that a host without a model logs one line a minute instead of thousands.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from imgrec.actuators.base import Actuator
from imgrec.messages import Heartbeat

log = logging.getLogger("imgrec.autoscaler")
QUICK_DEATH = 10.0  # a worker that exits this soon after its start counts toward a crash loop
MAX_START_DELAY = 60.0
WORKER_MEMORY = 350 * 2**20  # bytes a worker may use (model, a batch, the largest image)
HOST_RESERVE = 512 * 2**20  # bytes left for the web tier and the rest of the host


def host_capacity(threads_per_worker: int = 1) -> int:
    """How many workers this host can run usefully: one per core (a worker is a
    single-threaded process), and no more than its available memory holds."""
    cores = max(1, (os.cpu_count() or 1) // max(1, threads_per_worker))
    try:
        with open("/proc/meminfo") as f:
            available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):  # not Linux: cores only
        return cores
    return max(1, min(cores, (available - HOST_RESERVE) // WORKER_MEMORY))


@dataclass
class _Worker:
    proc: subprocess.Popen
    started: float
    killed: bool = False  # by us, for hanging: not a crash


class LocalActuator(Actuator):
    """`env` is the workers' whole environment (their settings travel in it)."""

    def __init__(
        self, env: dict[str, str] | None = None, capacity: int | None = None, hung_after: float = 300.0,
        command: list[str] | None = None,
    ) -> None:
        self._cmd = command or [sys.executable, "-m", "imgrec", "worker"]
        self._env = env
        self.capacity = capacity or host_capacity()
        self.hung_after = hung_after  # seconds a worker's loop may go without turning round
        self._workers: list[_Worker] = []
        self._stopping: list[subprocess.Popen] = []  # asked to stop, still finishing
        self._quick_deaths = 0
        self._next_start = 0.0
        self.counters = {"workers_started": 0, "worker_crashes": 0, "hung_workers_replaced": 0}
        self._warned_cap = False

    def _reap(self) -> None:
        now = time.monotonic()
        for w in self._workers:
            code = w.proc.poll()
            if code is None or code == 0 or w.killed:
                continue
            self.counters["worker_crashes"] += 1
            if now - w.started < QUICK_DEATH:
                self._quick_deaths += 1
                delay = min(MAX_START_DELAY, 0.5 * 2**self._quick_deaths)
                self._next_start = now + delay
                log.warning("worker pid %d exited %.1fs after its start (status %s); next start in %.0fs",
                            w.proc.pid, now - w.started, code, delay)
            else:
                self._quick_deaths = 0
                log.warning("worker pid %d died (exit status %s); it will be replaced", w.proc.pid, code)
        self._workers = [w for w in self._workers if w.proc.poll() is None]
        self._stopping = [p for p in self._stopping if p.poll() is None]

    def running(self) -> int:
        self._reap()
        return len(self._workers)

    def pids(self) -> list[int]:
        self._reap()
        return [w.proc.pid for w in self._workers]

    def reconcile(self, desired: int) -> None:
        self._reap()
        if desired > self.capacity and not self._warned_cap:
            log.warning("asked for up to %d workers; this host can use %d (cores, memory): starting no more",
                        desired, self.capacity)
            self._warned_cap = True
        desired = min(desired, self.capacity)
        while len(self._workers) < desired and time.monotonic() >= self._next_start:
            p = subprocess.Popen(self._cmd, env=self._env)
            self.counters["workers_started"] += 1
            log.info("started worker pid %d (%d/%d)", p.pid, len(self._workers) + 1, desired)
            self._workers.append(_Worker(p, time.monotonic()))
            if self._quick_deaths:
                break  # in a crash loop: one at a time, each after its delay
        while len(self._workers) > desired:
            w = self._workers.pop()  # the newest: the oldest has the warmest caches
            w.proc.send_signal(signal.SIGTERM)  # it finishes its batch, then exits
            self._stopping.append(w.proc)
            log.info("stopping worker pid %d (%d left)", w.proc.pid, len(self._workers))
        if self._workers and all(time.monotonic() - w.started >= QUICK_DEATH for w in self._workers):
            self._quick_deaths = 0  # they live: the loop, if there was one, is over

    def watch(self, beats: list[Heartbeat]) -> None:
        """Kill (to replace) a worker that hangs: stopped (SIGSTOP, a debugger), its
        heartbeat silent, or its loop not turning round while its heartbeat goes on."""
        now, stale_after = time.time(), 3 * 2.0
        by_pid = {b.pid: b for b in beats if b.state == "running"}
        for w in self._workers:
            beat = by_pid.get(w.proc.pid)
            age = time.monotonic() - w.started
            silent = (now - beat.last_seen > stale_after) if beat else age > self.hung_after / 5
            turned = beat.progress_at if beat and beat.progress_at else now
            stuck = now - turned > self.hung_after
            if (silent or stuck) and age > QUICK_DEATH and not w.killed:
                log.warning("worker pid %d %s; killing it to replace it", w.proc.pid,
                            "is silent" if silent else f"has not turned round in {now - turned:.0f}s")
                w.killed = True
                w.proc.kill()
                self.counters["hung_workers_replaced"] += 1

    def shutdown(self, timeout: float) -> None:
        everyone = [w.proc for w in self._workers] + self._stopping
        for w in self._workers:
            w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in everyone:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop in %.0fs; killing it", p.pid, timeout)
                p.kill()
                p.wait()
        self._workers, self._stopping = [], []
