"""Chores of a deployment that no single request owns, done by the autoscaler:

- answer dead-lettered requests with an error result, so no client waits in vain;
- remove the reply queue of a web replica that died without cleaning up;
- fold the heartbeats of long-stopped workers into one record.

Every function is safe to run from several autoscalers at once.
"""

from __future__ import annotations

import logging

from imgrec import presence
from imgrec.errors import BadInput, QueueMissing
from imgrec.messages import Output, Request, read_output
from imgrec.queue import Queue
from imgrec.queues import open_queue
from imgrec.store import ObjectStore
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
                publisher.reply([(request, output)])
                log.warning("job %s was dead-lettered after %d deliveries", request.job_id, queue.max_receives)
            queue.ack(m)
            taken += 1
    return taken


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
