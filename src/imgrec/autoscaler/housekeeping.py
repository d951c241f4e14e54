"""Chores of a deployment that no single request owns, done by the autoscaler, each at
its own pace:

- answer dead-lettered requests with an error result, so no client waits in vain;
- send again the requests of accepted jobs whose messages were lost (a queue that
  lost its data), so nothing accepted stays queued for ever;
- delete what is older than the retention time;
  (those three are `imgrec.jobs`': a job's life is written in one place)
- remove the reply queue of a web replica that died without cleaning up;
- fold the heartbeats of long-stopped workers into one record.

Every chore is safe to run from several autoscalers at once.
"""

from __future__ import annotations

import logging
import time

from imgrec import jobs, presence
from imgrec.errors import QueueMissing
from imgrec.queues import Queue, open_queue
from imgrec.stores import ObjectStore

log = logging.getLogger("imgrec.autoscaler.housekeeping")
REPLICA_SILENT_FOR = 300.0  # seconds: far past any heartbeat gap and any request timeout


def sweep_reply_queues(
    store: ObjectStore, queue_url: str, silent_for: float = REPLICA_SILENT_FOR, clock: presence.StoreClock | None = None
) -> list[str]:
    """Delete the reply queues of web replicas silent for `silent_for` seconds (by the
    store's clock, with `clock`); their names."""
    removed = []
    for beat in presence.silent_replicas(store, silent_for, clock):
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

    def __init__(
        self, queue: Queue, results: jobs.Results, *, every: float, lost_after: float, retention: float, member_id: str,
        others: dict[str, Queue] | None = None,
    ) -> None:
        self.queue, self.results, self.store = queue, results, results.store
        self.others = others or {}  # the request queues of the other models served, by model
        # Every age here is by the store's clock: other hosts' clocks, and this one's, may differ.
        self.clock = presence.StoreClock(self.store, member_id)
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
            for queue in (self.queue, *self.others.values()):
                jobs.answer_dead_letters(queue, self.results)
        if self._due("often", self.every):
            sweep_reply_queues(self.store, self.results.queue_url, clock=self.clock)
            presence.compact(self.store, clock=self.clock)
            jobs.resend_lost(self.store, self.queue, self.lost_after, self.clock.now(), others=self.others)
        if self.retention > 0 and self._due("retention", self.retention_every):
            deleted = jobs.sweep_expired(self.store, self.retention, self.clock.now())
            log.info("retention sweep: %d objects older than %g s by the store's clock deleted",
                     sum(deleted.values()), self.retention)
