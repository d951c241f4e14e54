"""Turning received messages into outputs: no queue loop, no stopping, no replies here.

    messages -> requests -> (answered from the store | fetched) -> decoded -> inferred -> outputs

A result is written once per job id, so a request whose output already exists
is answered from the store, not classified again. Decoding and inference run
under the watchdog's time limit; `process_alone` runs one message in a forked
child instead, for a message whose earlier delivery may have ended a worker.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np

from imgrec.engine.classifier import Classifier, ImageError
from imgrec.errors import BadInput, NotFound
from imgrec.messages import Output, Pending, Request, dumps, read_output
from imgrec.queues import Message
from imgrec.stores import ObjectStore
from imgrec.worker.isolation import classify_isolated
from imgrec.worker.watchdog import Watchdog

log = logging.getLogger("imgrec.worker")
INPUT_GONE = "the uploaded input is no longer in the store"


def gave_up(attempts: int) -> str:
    return (
        f"the image could not be processed: it failed {attempts} attempts "
        "(it crashed the classifier or took longer than the time limit)"
    )


@dataclass
class WorkerStats:
    """What a worker publishes in its heartbeat."""

    completed: int = 0
    batch_sizes: Counter[int] = field(default_factory=Counter)
    stage_seconds: Counter[str] = field(default_factory=Counter)  # summed over images

    def as_beat(self) -> dict:
        return {
            "completed": self.completed,
            "batch_sizes": {str(k): v for k, v in self.batch_sizes.items()},
            "stage_seconds": dict(self.stage_seconds),
        }


@dataclass(frozen=True)
class Done:
    message: Message
    request: Request
    output: Output
    stored: bool = False  # the output was already in the store (a redelivery)


@dataclass
class Outcome:
    done: list[Done] = field(default_factory=list)
    dropped: list[Message] = field(default_factory=list)  # malformed: acked, never retried
    # Crashed or hung the classifier, not yet given up on: to be sent again with the
    # crash counted (the message taken is acked).
    retry: list[tuple[Message, Request]] = field(default_factory=list)


def suspect(message: Message) -> bool:
    """Whether a message may be the one that ended a worker: an earlier delivery went
    unanswered, or it crashed the classifier before. Such a message is classified alone."""
    crashes = message.body.get("crashes") if isinstance(message.body, dict) else 0
    return message.receive_count > 1 or bool(crashes)


@dataclass(frozen=True)
class _Job:
    message: Message
    request: Request
    data: bytes | None  # None: the input is no longer in the store


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


class BatchProcessor:
    def __init__(
        self, classifier: Classifier, store: ObjectStore, worker_id: str, image_timeout: float,
        stats: WorkerStats | None = None, watchdog: Watchdog | None = None, max_attempts: int = 5,
    ) -> None:
        self.clf, self.store, self.worker_id, self.image_timeout = classifier, store, worker_id, image_timeout
        self.max_attempts = max_attempts
        self.stats = stats or WorkerStats()
        self.watchdog = watchdog or Watchdog()

    def process(self, messages: list[Message]) -> Outcome:
        """Classify a batch together, in this process."""
        received = time.time()
        outcome, jobs = self._prepare(messages, received)
        if jobs:
            outcome.done += self._classify_together(jobs, received)
        return outcome

    def process_alone(self, message: Message) -> Outcome:
        """Classify one message in a child process. If it crashes or hangs the classifier,
        only the child ends; the crash is counted with the deliveries that ended without an
        answer (a worker died holding it), and after `max_attempts` the image is given up
        with an error result, else it is tried again (`retry`)."""
        received = time.time()
        outcome, jobs = self._prepare([message], received)
        for job in jobs:
            result = classify_isolated(self.clf, job.data, self.image_timeout) if job.data else {"error": INPUT_GONE}
            timings = {**self._waited(job, received), "isolated": _ms(time.time() - received)}
            if result is not None:
                outcome.done.append(self._done(job, result, timings))
                continue
            failures = job.request.crashes + message.receive_count
            log.warning("job %s crashed or hung the classifier (%d of %d attempts)",
                        job.request.job_id, failures, self.max_attempts)
            if failures < self.max_attempts:
                outcome.retry.append((message, replace(job.request, crashes=failures)))
            else:
                log.warning("job %s given up after %d attempts", job.request.job_id, failures)
                outcome.done.append(self._done(job, {"error": gave_up(failures)}, timings))
        return outcome

    def _prepare(self, messages: list[Message], received: float) -> tuple[Outcome, list[_Job]]:
        """Parse, answer redeliveries from the store, fetch inputs."""
        outcome, jobs = Outcome(), []
        for m in messages:
            try:
                request = Request.from_dict(m.body)
            except BadInput as exc:
                log.error("dropping malformed message %s (%s): %r", m.id, exc, m.body)
                outcome.dropped.append(m)
                continue
            existing = read_output(self.store, request.job_id)
            if existing is not None:  # redelivered after its result was written
                outcome.done.append(Done(m, request, existing, stored=True))
                continue
            if not request.waited_for:  # an async job: its status says "running" from now
                pending = Pending(request, request.sent_at or received, self.worker_id, received)
                self.store.put(pending.key, dumps(pending.to_dict()), "application/json")
            jobs.append(_Job(m, request, self._fetch(request.input_key)))
        return outcome, jobs

    def _fetch(self, key: str) -> bytes | None:
        try:
            return self.store.get(key)
        except (NotFound, BadInput):  # gone (or a key that was never valid)
            return None

    def _classify_together(self, jobs: list[_Job], received: float) -> list[Done]:
        fetched = time.time()
        decoded = []
        for job in jobs:
            with self.watchdog.limit(self.image_timeout, f"decoding job {job.request.job_id}"):
                decoded.append(self.clf.decode(job.data) if job.data else ImageError(INPUT_GONE))
        decoded_at = time.time()
        good = [d for d in decoded if isinstance(d, np.ndarray)]
        with self.watchdog.limit(self.image_timeout * max(1, len(good)), f"inference on a batch of {len(good)}"):
            predictions = iter(self.clf.infer(good))
        inferred = time.time()
        n = len(jobs)
        self.stats.batch_sizes[n] += 1
        self.stats.stage_seconds.update({
            "queue_wait": sum(received - (j.request.sent_at or received) for j in jobs),
            "fetch": fetched - received, "decode": decoded_at - fetched, "inference": inferred - decoded_at,
        })
        per_image = {
            "fetch": _ms((fetched - received) / n), "decode": _ms((decoded_at - fetched) / n),
            "inference": _ms((inferred - decoded_at) / n), "batch_size": n,
        }
        return [
            self._done(job, (d if isinstance(d, ImageError) else next(predictions)).to_dict(),
                       {**self._waited(job, received), **per_image})
            for job, d in zip(jobs, decoded, strict=False)
        ]

    @staticmethod
    def _waited(job: _Job, received: float) -> dict[str, float]:
        return {"queue_wait": _ms(received - (job.request.sent_at or received))}

    def _done(self, job: _Job, result: dict, timings: dict) -> Done:
        r = job.request
        output = Output(
            r.job_id, r.filename, r.input_key, **result, model=self.clf.model_id, worker=self.worker_id,
            attempt=job.message.receive_count + r.crashes + r.requeued, timings_ms=timings,
        )
        return Done(job.message, r, output)
