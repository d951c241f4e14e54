"""`LocalActuator`: worker processes on this machine (`imgrec worker` children)."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time

from imgrec.actuator import Actuator

log = logging.getLogger("imgrec.autoscaler")


class LocalActuator(Actuator):
    """`env` is the workers' whole environment (their settings travel in it)."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self._cmd = [sys.executable, "-m", "imgrec", "worker"]
        self._env = env
        self._procs: list[subprocess.Popen] = []
        self._stopping: list[subprocess.Popen] = []  # asked to stop, still finishing

    def _reap(self) -> None:
        for p in self._procs:
            if p.poll() not in (None, 0):
                log.warning("worker pid %d died (exit status %s); it will be replaced", p.pid, p.returncode)
        self._procs = [p for p in self._procs if p.poll() is None]
        self._stopping = [p for p in self._stopping if p.poll() is None]

    def running(self) -> int:
        self._reap()
        return len(self._procs)

    def pids(self) -> list[int]:
        self._reap()
        return [p.pid for p in self._procs]

    def reconcile(self, desired: int) -> None:
        self._reap()
        while len(self._procs) < desired:
            p = subprocess.Popen(self._cmd, env=self._env)
            log.info("started worker pid %d (%d/%d)", p.pid, len(self._procs) + 1, desired)
            self._procs.append(p)
        while len(self._procs) > desired:
            p = self._procs.pop()  # the newest: the oldest has the warmest caches
            p.send_signal(signal.SIGTERM)  # it finishes its batch, then exits
            self._stopping.append(p)
            log.info("stopping worker pid %d (%d left)", p.pid, len(self._procs))

    def shutdown(self, timeout: float) -> None:
        everyone = self._procs + self._stopping
        for p in self._procs:
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in everyone:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop in %.0fs; killing it", p.pid, timeout)
                p.kill()
                p.wait()
        self._procs, self._stopping = [], []
