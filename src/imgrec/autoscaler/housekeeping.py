"""Chores of a deployment that no single request owns, done by the autoscaler:

- answer dead-lettered requests with an error result, so no client waits in vain;
- send again the requests of accepted jobs whose messages were lost (a queue that
  lost its data), so nothing accepted stays queued for ever;
- delete what is older than the retention time;
- remove the reply queue of a web replica that died without cleaning up;
- fold the heartbeats of long-stopped workers into one record.

Every function is safe to run from several autoscalers at once (at worst a request
is sent twice, which workers answer once: results are written once per job).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from imgrec import presence
from imgrec.errors import BadInput, NotFound, QueueMissing
from imgrec.messages import PENDING, SWEPT, Output, Pending, Request, dumps, output_key, pending_key, read_output
from imgrec.queues import Queue, open_queue
from imgrec.stores import ObjectStore
from imgrec.worker.publisher import Publisher

log = logging.getLogger("imgrec.autoscaler.housekeeping")
REPLICA_SILENT_FOR = 300.0  # seconds: far past any heartbeat gap and any request timeout


def answer_dead_letters(queue: Queue, publisher: Publisher, limit: int = 50) -> int:
    """Give every dead-lettered request an error result (or its result, if one was written
    after all), reply to whoever waits, and remove it; returns how many were taken."""
    taken = 0
    while taken < limit and (messages := queue.receive_dead(10)):
        for m in messages:
            try:
                request = Request.from_dict(m.body)
            except BadInput:
                log.error("dropping a malformed dead letter: %r", m.body)
            else:
                output = read_output(publisher.store, request.job_id)
                if output is None:
                    output = Output(
                        request.job_id, request.filename, request.input_key, attempt=m.receive_count,
                        error=f"the image could not be processed: it was delivered {queue.max_receives} times "
                        "and each time the worker holding it ended (it may crash or hang the classifier)",
                    )
                    publisher.write([output])
                publisher.store.delete(pending_key(request.job_id))
                publisher.reply([(request, output)])
                log.warning("job %s was dead-lettered after %d deliveries", request.job_id, queue.max_receives)
            queue.ack(m)
            taken += 1
    return taken


def resend_lost(store: ObjectStore, queue: Queue, older_than: float) -> int:
    """Send again the requests of jobs accepted more than `older_than` seconds ago whose
    messages the queue no longer has; returns how many.

    A queue cannot be asked for a job's message, so this counts: jobs pending in the
    store beyond what the queue holds (waiting, in flight, dead) were lost; the oldest of
    those pending long enough are sent again. A guess that picks one still queued makes
    a duplicate, which is answered once."""
    stats = queue.stats()
    now, unfinished, candidates = time.time(), 0, []
    for key in store.list(PENDING):
        try:
            pending = Pending.from_dict(store.get(key))
        except (NotFound, BadInput):
            continue
        if store.exists(output_key(pending.request.job_id)):
            store.delete(key)  # its worker wrote the output but did not get to remove this
            continue
        unfinished += 1
        if now - max(pending.accepted_at, pending.resent_at or 0, pending.started_at or 0) > older_than:
            candidates.append(pending)
    lost = min(len(candidates), unfinished - (stats.depth + stats.in_flight + stats.dead))
    if lost <= 0:
        return 0
    resend = sorted(candidates, key=lambda p: p.accepted_at)[:lost]
    requests = [replace(p.request, requeued=p.request.requeued + 1) for p in resend]
    queue.send_many([r.to_dict() for r in requests])
    for p, r in zip(resend, requests, strict=True):
        store.put(p.key, dumps(replace(p, request=r, resent_at=now).to_dict()), "application/json")
    log.warning("sent again %d accepted jobs whose messages were lost (the queue lost its data?)", lost)
    return lost


def sweep_expired(store: ObjectStore, retention: float) -> dict[str, int]:
    """Delete inputs, results, batches and records older than `retention` seconds (0 keeps
    everything); returns how many were deleted under each prefix."""
    if retention <= 0:
        return {}
    cutoff, deleted = time.time() - retention, {}
    for prefix in SWEPT:
        old = [key for key, modified in store.scan(prefix) if modified < cutoff]
        for start in range(0, len(old), 1000):
            store.delete_many(old[start : start + 1000])
        if old:
            deleted[prefix] = len(old)
    if deleted:
        log.info("retention: deleted %s", ", ".join(f"{n} under {p}" for p, n in deleted.items()))
    return deleted


def sweep_reply_queues(store: ObjectStore, queue_url: str, silent_for: float = REPLICA_SILENT_FOR) -> list[str]:
    """Delete the reply queues of web replicas silent for `silent_for` seconds; their names."""
    removed = []
    for beat in presence.silent_replicas(store, silent_for):
        try:
            queue = open_queue(queue_url, beat.id)
        except QueueMissing:
            pass  # already gone
        else:
            try:
                queue.delete()
            finally:
                queue.close()
        presence.forget(store, beat)
        removed.append(beat.id)
        log.info("removed reply queue %s of a web replica silent since %.0f", beat.id, beat.last_seen)
    return removed


class Housekeeping:
    """The chores above, each at its own pace, from the autoscaler's loop."""

    def __init__(self, queue: Queue, publisher: Publisher, *, every: float, lost_after: float, retention: float) -> None:
        self.queue, self.publisher, self.store = queue, publisher, publisher.store
        self.every, self.lost_after, self.retention = every, lost_after, retention
        # Sweeping for expired objects lists the whole store: an hour apart at most, a
        # twenty-fourth of the retention time for short ones.
        self.retention_every = min(3600.0, max(60.0, retention / 24))
        self._next = {"often": 0.0, "retention": time.monotonic() + 10.0}

    def _due(self, chore: str, every: float) -> bool:
        if time.monotonic() < self._next[chore]:
            return False
        self._next[chore] = time.monotonic() + every
        return True

    def tick(self, dead_letters: int) -> None:
        if dead_letters:
            answer_dead_letters(self.queue, self.publisher)
        if self._due("often", self.every):
            sweep_reply_queues(self.store, self.publisher.queue_url)
            presence.compact(self.store)
            resend_lost(self.store, self.queue, self.lost_after)
        if self.retention > 0 and self._due("retention", self.retention_every):
            sweep_expired(self.store, self.retention)
