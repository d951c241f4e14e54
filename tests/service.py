"""The service and its parts as a user starts them, with what the tests look at."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from imgrec.bench.service import IMGREC, Part, ServiceProcess, free_port, wait_until  # noqa: F401
from imgrec.settings import Settings
from imgrec.store import open_store


class Service(ServiceProcess):
    def __init__(self, data_dir: Path, model_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        super().__init__(data_dir, model_dir, *args, env=env)
        self.store = open_store(Settings(data_dir=data_dir, store=self.env.get("IMGREC_STORE", "")).store_url)

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


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead too
