"""The service as a user starts it, for tests and benchmarks: `imgrec` commands as
subprocesses on free ports, with what a test looks at.

Both the tests and `imgrec bench` use this, so that both check and measure the
service exactly as it is started in production.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from imgrec import presence
from imgrec.settings import Settings
from imgrec.stores import ObjectStore, open_store
from imgrec.supervisor import answers

IMGREC = str(Path(sys.executable).parent / "imgrec")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll `predicate` until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


alive = presence.process_alive  # the tests' name for it


def service_env(data_dir: Path, model_dir: Path, **settings) -> dict[str, str]:
    """This process's environment for a part with its own data directory and the given
    settings (names as in Settings, e.g. max_batch=4)."""
    values = {"data_dir": data_dir, "model_dir": model_dir, **settings}
    return {**os.environ, **{f"IMGREC_{k.upper()}": str(v) for k, v in values.items()}}


class Part:
    """One `imgrec` command in a subprocess, its output in a log file; `program` is the
    `imgrec` of another installation (e.g. a serving-only venv)."""

    def __init__(self, log: Path, env: dict[str, str], *args: str, program: str = IMGREC) -> None:
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = log.open("w")
        self.env = env
        self.proc = subprocess.Popen([program, *args], env=env, stdout=self._log_file, stderr=subprocess.STDOUT)

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


class WebPart(Part):
    """`imgrec web` (or `imgrec up`, by `command`) on a free port, ready when it answers."""

    def __init__(
        self, log: Path, env: dict[str, str], *args: str, command: str = "web", port: int | None = None, program: str = IMGREC
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(log, env, command, "--port", str(self.port), *args, program=program)
        wait_until(self._ready, 60, what=f"{command} to start (log: {log})")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"imgrec exited: {self.log.read_text()}")
        return answers(self.url)

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=10) as resp:
            return json.loads(resp.read())

    def status(self) -> dict:
        return self.get("/api/v1/status")


class ServiceProcess(WebPart):
    """`imgrec up` with its own data directory."""

    def __init__(
        self, data_dir: Path, model_dir: Path, *args: str, env: dict[str, str] | None = None, port: int | None = None
    ) -> None:
        self.data_dir = data_dir
        env = {**service_env(data_dir, model_dir), **(env or {})}
        super().__init__(data_dir / "up.log", env, *args, command="up", port=port)
        self.store: ObjectStore = open_store(Settings(data_dir=data_dir, store=env.get("IMGREC_STORE", "")).store_url)

    def worker_pids(self) -> list[int]:
        """Live workers of this service, from their heartbeats in the store."""
        return [
            b.pid for b in presence.read(self.store, "worker")
            if b.state == "running" and alive(b.pid)
        ]
