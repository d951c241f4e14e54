"""A job's output: written once to the store, then sent to the replica that waits for it."""

from __future__ import annotations

import json
import logging

from imgrec import jobs
from imgrec.queue import Queue, open_queue
from imgrec.store import ObjectNotFound, ObjectStore

log = logging.getLogger("imgrec.worker")


def read_output(store: ObjectStore, job_id: str) -> dict | None:
    """A job's result, or None while it has none."""
    try:
        return json.loads(store.get(jobs.output_key(job_id)))
    except ObjectNotFound:
        return None


class Publisher:
    def __init__(self, queue_url: str, store: ObjectStore) -> None:
        self.queue_url, self.store = queue_url, store
        self._reply_queues: dict[str, Queue] = {}

    def existing(self, job_id: str) -> dict | None:
        return read_output(self.store, job_id)

    def publish(self, body: dict, output: dict) -> None:
        self.publish_many([(body, output)])

    def publish_many(self, results: list[tuple[dict, dict]]) -> None:
        """Write every output, then send the replies, one message batch per replica."""
        self.write_many(results)
        self.reply_many(results)

    def write_many(self, results: list[tuple[dict, dict]]) -> None:
        for body, output in results:
            self.store.put(jobs.output_key(body["job_id"]), jobs.dumps(output), "application/json")

    def reply(self, body: dict, output: dict) -> None:
        self.reply_many([(body, output)])

    def reply_many(self, results: list[tuple[dict, dict]]) -> None:
        by_replica: dict[str, list[dict]] = {}
        for body, output in results:
            if body.get("reply_to"):  # none for async jobs: the result in the store is the answer
                by_replica.setdefault(body["reply_to"], []).append({"job_id": body["job_id"], "result": output})
        for reply_to, replies in by_replica.items():
            try:
                q = self._reply_queues.get(reply_to)
                if q is None:
                    # Not create=True: a stopped replica's deleted queue stays deleted.
                    q = self._reply_queues[reply_to] = open_queue(self.queue_url, reply_to)
                q.send_many(replies)
            except Exception as exc:
                # The waiting web tier, if there is one, recovers the results from the store.
                log.warning("%d replies to %s not sent (%s)", len(replies), reply_to, exc)

    def close(self) -> None:
        for q in self._reply_queues.values():
            q.close()


def answer_dead_letters(queue: Queue, publisher: Publisher, limit: int = 50) -> int:
    """Give every dead-lettered request a clear error result, so no client waits in vain."""
    answered = 0
    while answered < limit and (messages := queue.receive_dead(10)):
        for m in messages:
            body = m.body if isinstance(m.body, dict) else {}
            if jobs.is_id(str(body.get("job_id", ""))):
                output = publisher.existing(body["job_id"])
                if output is None:
                    output = {
                        "job_id": body["job_id"],
                        "filename": body.get("filename"),
                        "input_key": body.get("input_key"),
                        "error": f"the image could not be processed: it failed {queue.max_receives} attempts "
                        "(it crashed the classifier or took longer than the time limit)",
                        "attempt": m.receive_count,
                    }
                    publisher.publish(body, output)
                else:
                    publisher.reply(body, output)
                log.warning("job %s was dead-lettered after %d attempts", body["job_id"], queue.max_receives)
            queue.ack(m)
            answered += 1
    return answered
