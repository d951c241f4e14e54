"""Start `imgrec up` (or one part) as a user does: a subprocess on a free port.

Used by the benchmarks and the tests, so that both measure and check the service
exactly as it is started in production.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

IMGREC = str(Path(sys.executable).parent / "imgrec")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class Part:
    """One `imgrec` command in a subprocess, its output in a log file."""

    def __init__(self, log: Path, env: dict[str, str], *args: str) -> None:
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = log.open("w")
        self.proc = subprocess.Popen([IMGREC, *args], env=env, stdout=self._log_file, stderr=subprocess.STDOUT)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, as an operator or an orchestrator stops it; SIGKILL after `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
        return self.proc.returncode


class ServiceProcess(Part):
    """`imgrec up` with its own data directory, ready when `/healthz` answers."""

    def __init__(self, data_dir: Path, model_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "IMGREC_DATA_DIR": str(data_dir), "IMGREC_MODEL_DIR": str(model_dir), **(env or {})}
        super().__init__(data_dir / "up.log", self.env, "up", "--port", str(self.port), *args)
        wait_until(self._healthy, 60, what=f"the service to start (log: {self.log})")

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"imgrec up exited: {self.log.read_text()}")
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                return True
        except OSError:
            return False
