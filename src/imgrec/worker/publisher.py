"""A job's output: written once to the store, then sent to the replica that waits for it."""

from __future__ import annotations

import logging
import time

from imgrec.errors import BackendError, QueueMissing
from imgrec.messages import Output, Reply, Request, dumps, output_key, pending_key
from imgrec.queues import Queue, open_queue
from imgrec.stores import ObjectStore
from imgrec.worker.batch import Done, WorkerStats

log = logging.getLogger("imgrec.worker.publisher")


class Publisher:
    def __init__(self, queue_url: str, store: ObjectStore, stats: WorkerStats | None = None) -> None:
        self.queue_url, self.store = queue_url, store
        self.stats = stats or WorkerStats()
        self._reply_queues: dict[str, Queue] = {}

    def finish(self, requests: Queue, done: list[Done]) -> None:
        """Write the new outputs, reply, then ack: an ack never precedes a durable result.
        The pending records go after the reply, off the waiting client's path (a record
        left by a crash meanwhile is swept: its job's output exists)."""
        t0 = time.perf_counter()
        self.write([d.output for d in done if not d.stored])
        t1 = time.perf_counter()
        self.reply([(d.request, d.output) for d in done])
        self.store.delete_many([pending_key(d.request.job_id) for d in done])
        requests.ack_many([d.message for d in done])
        self.stats.stage_seconds.update({"result_write": t1 - t0, "reply_and_ack": time.perf_counter() - t1})
        self.stats.completed += len(done)

    def write(self, outputs: list[Output]) -> None:
        if outputs:  # a batch's outputs in one call: the local store syncs their folder once
            self.store.put_many([(output_key(o.job_id), dumps(o.to_dict()), "application/json") for o in outputs])

    def reply(self, answered: list[tuple[Request, Output]]) -> None:
        """One message batch per waiting replica; async jobs have none (the store is the answer)."""
        by_replica: dict[str, list[dict]] = {}
        for request, output in answered:
            if request.reply_to:
                by_replica.setdefault(request.reply_to, []).append(Reply(request.job_id, output).to_dict())
        for reply_to, replies in by_replica.items():
            try:
                q = self._reply_queues.get(reply_to)
                if q is None:
                    # Not create=True: a stopped replica's deleted queue stays deleted.
                    q = self._reply_queues[reply_to] = open_queue(self.queue_url, reply_to, ephemeral=True)
                q.send_many(replies)
            except QueueMissing:
                # The replica stopped and deleted its queue: nobody waits for these.
                log.info("%d replies to %s dropped: that web replica is gone", len(replies), reply_to)
                if (gone := self._reply_queues.pop(reply_to, None)) is not None:
                    gone.close()
            except BackendError as exc:
                # The waiting web tier, if there is one, recovers the results from the store.
                log.warning("%d replies to %s not sent (%s)", len(replies), reply_to, exc)

    def close(self) -> None:
        for q in self._reply_queues.values():
            q.close()
