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


RETIRED = f"{PREFIX}_retired.json"


def compact(store: ObjectStore, older_than: float = 300.0) -> int:
    """Fold the heartbeats of workers stopped (or silent) for `older_than` seconds into one
    `_retired` record, so the counts survive and the listing stays short. Run by one
    autoscaler; returns how many were folded."""
    now = time.time()
    gone = [w for w in read_workers(store) if w.id != "_retired" and not w.alive and now - w.last_seen > older_than]
    if not gone:
        return 0
    try:
        retired = json.loads(store.get(RETIRED))
    except ObjectNotFound:
        retired = {"id": "_retired", "state": "retired", "last_seen": 0, "completed": 0, "batch_sizes": {}, "stage_seconds": {}}
    for w in gone:
        retired["completed"] += w.completed
        for field, values in (("batch_sizes", w.batch_sizes), ("stage_seconds", w.stage_seconds)):
            for k, v in values.items():
                retired[field][k] = retired[field].get(k, 0) + v
    store.put(RETIRED, json.dumps(retired).encode(), "application/json")
    for w in gone:
        store.delete(heartbeat_key(w.id))
    return len(gone)
