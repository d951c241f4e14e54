"""Turning received messages into outputs: no queue loop, no stopping, no replies here.

    messages -> requests -> (answered from the store | fetched) -> decoded -> inferred -> outputs

A result is written once per job id, so a request whose output already exists
is answered from the store, not classified again. Decoding and inference run
under the watchdog's time limit; `process_alone` runs one message in a forked
child instead, for a message whose earlier delivery may have ended a worker.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from imgrec import jobs
from imgrec.engine.pipeline import ImageError, Pipeline
from imgrec.errors import BadInput, NotFound
from imgrec.jobs import Done
from imgrec.messages import Output, Request, seconds_bucket
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
    # Per image, by stage: images per bucket of seconds (messages.seconds_bucket) and "sum".
    stage_histograms: dict[str, dict[str, float]] = field(default_factory=dict)

    def observe(self, stage: str, seconds: float, images: int = 1) -> None:
        """`images` images that took `seconds` each in `stage`."""
        histogram = self.stage_histograms.setdefault(stage, {})
        bucket = seconds_bucket(seconds)
        histogram[bucket] = histogram.get(bucket, 0) + images
        histogram["sum"] = histogram.get("sum", 0.0) + seconds * images

    def as_beat(self) -> dict:
        return {
            "completed": self.completed,
            "batch_sizes": {str(k): v for k, v in self.batch_sizes.items()},
            "stage_seconds": dict(self.stage_seconds),
            # Copied in one step each (the heartbeat's thread reads while the loop's writes).
            "stage_histograms": {stage: dict(h) for stage, h in list(self.stage_histograms.items())},
        }


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


class _Limits:
    """The watchdog's time limit on each step of a batch's classification (a hung decoder
    ends the worker; see `watchdog`), and the time each step took, in all and per image
    (into `stats`' histograms)."""

    def __init__(self, watchdog: Watchdog, seconds: float, job_ids: list[str], stats: WorkerStats) -> None:
        self.watchdog, self.seconds, self.job_ids, self.stats = watchdog, seconds, job_ids, stats
        self.decoding_seconds = self.inferring_seconds = 0.0

    @contextlib.contextmanager
    def decoding(self, index: int) -> Iterator[None]:
        started = time.perf_counter()
        with self.watchdog.limit(self.seconds, f"decoding job {self.job_ids[index]}"):
            yield
        took = time.perf_counter() - started
        self.decoding_seconds += took
        self.stats.observe("decode", took)

    @contextlib.contextmanager
    def inferring(self, count: int) -> Iterator[None]:
        started = time.perf_counter()
        with self.watchdog.limit(self.seconds * max(1, count), f"inference on a batch of {count}"):
            yield
        took = time.perf_counter() - started
        self.inferring_seconds += took
        if count:  # images inferred together: each took its share of the call
            self.stats.observe("inference", took / count, count)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


class BatchProcessor:
    def __init__(
        self, classifier: Pipeline, store: ObjectStore, worker_id: str, image_timeout: float,
        stats: WorkerStats | None = None, watchdog: Watchdog | None = None, max_attempts: int = 5,
    ) -> None:
        self.clf, self.store, self.worker_id, self.image_timeout = classifier, store, worker_id, image_timeout
        self.max_attempts = max_attempts
        self.stats = stats or WorkerStats()
        self.watchdog = watchdog or Watchdog()

    def process(self, messages: list[Message]) -> Outcome:
        """Classify a batch together, in this process."""
        received = time.time()
        outcome, taken = self._prepare(messages, received)
        if taken:
            outcome.done += self._classify_together(taken, received)
        return outcome

    def process_alone(self, message: Message) -> Outcome:
        """Classify one message in a child process. If it crashes or hangs the classifier,
        only the child ends; the crash is counted with the deliveries that ended without an
        answer (a worker died holding it), and after `max_attempts` the image is given up
        with an error result, else it is tried again (`retry`)."""
        received = time.time()
        outcome, taken = self._prepare([message], received)
        for job in taken:
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
        outcome, taken = Outcome(), []
        for m in messages:
            try:
                request = Request.from_dict(m.body)
            except BadInput as exc:
                log.error("dropping malformed message %s (%s): %r", m.id, exc, m.body)
                outcome.dropped.append(m)
                continue
            existing = jobs.read_output(self.store, request.job_id)
            if existing is not None:  # redelivered after its result was written
                outcome.done.append(Done(m, request, existing, stored=True))
                continue
            if not request.waited_for:  # an async job: its status says "running" from now
                jobs.start(self.store, request, self.worker_id, received)
            taken.append(_Job(m, request, self._fetch(request.input_key)))
        return outcome, taken

    def _fetch(self, key: str) -> bytes | None:
        try:
            return self.store.get(key)
        except (NotFound, BadInput):  # gone (or a key that was never valid)
            return None

    def _classify_together(self, taken: list[_Job], received: float) -> list[Done]:
        fetched = time.time()
        guard = _Limits(self.watchdog, self.image_timeout, [job.request.job_id for job in taken], self.stats)
        results = self.clf.classify([job.data if job.data else ImageError(INPUT_GONE) for job in taken], guard)
        n = len(taken)
        self.stats.batch_sizes[n] += 1
        self.stats.stage_seconds.update({
            "queue_wait": sum(received - (j.request.sent_at or received) for j in taken),
            "fetch": fetched - received, "decode": guard.decoding_seconds, "inference": guard.inferring_seconds,
        })
        per_image = {
            "fetch": _ms((fetched - received) / n), "decode": _ms(guard.decoding_seconds / n),
            "inference": _ms(guard.inferring_seconds / n), "batch_size": n,
        }
        return [
            self._done(job, result.to_dict(), {**self._waited(job, received), **per_image})
            for job, result in zip(taken, results, strict=True)
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
