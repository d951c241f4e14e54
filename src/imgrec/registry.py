"""Live workers, seen through heartbeats in the store (`workers/<id>.json`).

Any process can count the workers without talking to them: the web tier for
`/api/v1/status`, the autoscaler on another host.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from imgrec.store import ObjectNotFound, ObjectStore

PREFIX = "workers/"
HEARTBEAT_SECONDS = 2.0
STALE_AFTER = 3 * HEARTBEAT_SECONDS


@dataclass
class WorkerView:
    id: str
    state: str  # "running" or "stopped"
    last_seen: float
    completed: int
    batch_sizes: dict[str, int]
    stage_seconds: dict[str, float]

    @property
    def alive(self) -> bool:
        return self.state == "running" and time.time() - self.last_seen < STALE_AFTER


def heartbeat_key(worker_id: str) -> str:
    return f"{PREFIX}{worker_id}.json"


def read_workers(store: ObjectStore) -> list[WorkerView]:
    views = []
    for key in store.list(PREFIX):
        try:
            data = json.loads(store.get(key))
        except (ObjectNotFound, ValueError):
            continue  # removed or being replaced right now
        views.append(
            WorkerView(
                data["id"], data["state"], data["last_seen"], data.get("completed", 0),
                data.get("batch_sizes", {}), data.get("stage_seconds", {}),
            )
        )
    return views
