"""`imgrec up` as a user starts it, in a subprocess, on a free port and a fresh data dir."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from imgrec.settings import Settings
from imgrec.store import open_store

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
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Service:
    def __init__(self, data_dir: Path, model_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "IMGREC_DATA_DIR": str(data_dir),
            "IMGREC_MODEL_DIR": str(model_dir),
            **(env or {}),
        }
        self.log = data_dir / "up.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log.open("w")
        self.proc = subprocess.Popen(
            [IMGREC, "up", "--port", str(self.port), *args],
            env=self.env, stdout=self._log_file, stderr=subprocess.STDOUT,
        )
        wait_until(self._healthy, 60, what=f"the service to start (log: {self.log})")
        self.store = open_store(Settings(data_dir=data_dir, store=self.env.get("IMGREC_STORE", "")).store_url)

    def _healthy(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()
        try:
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def status(self) -> dict:
        return httpx.get(self.url + "/api/v1/status", timeout=10).json()

    def worker_pids(self) -> list[int]:
        """Live workers of this service, from their heartbeats in the store."""
        pids = []
        for key in self.store.list("workers/"):
            beat = json.loads(self.store.get(key))
            if beat["state"] == "running" and alive(beat["pid"]):
                pids.append(beat["pid"])
        return pids

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
        return self.proc.returncode


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


class Part:
    """One part alone (`imgrec web`, `imgrec worker`, ...), as an operator runs it on a host."""

    def __init__(self, log: Path, env: dict[str, str], *args: str) -> None:
        self.log = log
        self._log_file = log.open("w")
        self.proc = subprocess.Popen([IMGREC, *args], env=env, stdout=self._log_file, stderr=subprocess.STDOUT)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log_file.close()
        return self.proc.returncode
