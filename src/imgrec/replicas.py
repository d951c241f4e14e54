"""Web replicas seen through heartbeats in the store (`replicas/<reply queue>.json`),
so that the reply queue of a replica that died without cleaning up is removed."""

from __future__ import annotations

import json
import logging
import time

from imgrec import jobs
from imgrec.queue import QueueMissing, open_queue
from imgrec.store import ObjectNotFound, ObjectStore

log = logging.getLogger("imgrec")
PREFIX = "replicas/"
HEARTBEAT_SECONDS = 10.0
STALE_AFTER = 300.0  # far past any heartbeat gap and any request timeout


def beat(store: ObjectStore, reply_queue: str) -> None:
    store.put(f"{PREFIX}{reply_queue}.json", jobs.dumps({"queue": reply_queue, "last_seen": time.time()}))


def forget(store: ObjectStore, reply_queue: str) -> None:
    store.delete(f"{PREFIX}{reply_queue}.json")


def sweep(store: ObjectStore, queue_url: str, stale_after: float = STALE_AFTER) -> list[str]:
    """Delete the reply queues of replicas silent for `stale_after` seconds; their names."""
    removed = []
    for key in store.list(PREFIX):
        try:
            seen = json.loads(store.get(key))
        except (ObjectNotFound, ValueError):
            continue
        if time.time() - seen.get("last_seen", 0) < stale_after:
            continue
        try:
            queue = open_queue(queue_url, seen["queue"])
        except QueueMissing:
            pass  # already gone
        else:
            try:
                queue.delete()
            finally:
                queue.close()
        store.delete(key)
        removed.append(seen["queue"])
        log.info("removed reply queue %s of a web replica silent since %.0f", seen["queue"], seen.get("last_seen", 0))
    return removed
