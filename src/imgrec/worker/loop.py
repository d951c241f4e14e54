"""The worker's loop: receive, hand the batch on, stop when asked or idle, ride out outages.

receive -> process (see `batch`) -> write outputs -> reply -> ack (`imgrec.jobs`).
A first delivery is classified with its batch-mates; a suspect (see `batch.suspect`)
is classified alone in a child process, so that one poisonous image ends neither
the worker nor the rest of its batch again.

A message this worker gives back for a reason of its own (it is stopping, or the
store or queue failed under it) is sent again as a new message and the old one
acked: a queue counts every delivery, and such deliveries must not count toward
dead-lettering. Only crashes and hangs of the classifier do (see `batch`).
While the store fails the worker receives nothing: a circuit breaker probes the
store with backoff and lets work in again once a probe succeeds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from imgrec.background import Loop
from imgrec.errors import BackendError, BadInput
from imgrec.jobs import Done, Results
from imgrec.messages import Request, canary_key
from imgrec.queues import Message, Queue
from imgrec.stores import ObjectStore
from imgrec.worker.batch import BatchProcessor, Outcome, suspect

log = logging.getLogger("imgrec.worker")
MAX_BACKOFF = 8.0  # between attempts to reach an unreachable queue
MAX_PROBE_GAP = 2.0  # between looks at a failing store: a probe is one tiny write


def _backoff(previous: float, most: float = MAX_BACKOFF) -> float:
    return min(most, max(0.25, previous * 2))


@contextlib.contextmanager
def kept_invisible(queue: Queue, messages: list[Message]):
    """While a batch runs longer than half the visibility timeout, extend it, so that no
    other worker takes the same messages meanwhile."""

    def keep() -> None:
        for m in messages:
            try:
                queue.extend(m, queue.visibility_timeout)
            except BackendError as exc:  # it may come back to another worker: harmless
                log.warning("could not extend message %s (%s)", m.id, exc)

    keeper = Loop("keep invisible", keep, every=queue.visibility_timeout / 2, log=log).start()
    try:
        yield
    finally:
        keeper.stop()


class StoreBreaker:
    """Open while the store fails: no work is taken until a probe (write and read back a
    canary object) succeeds; probes back off from 0.25 s to MAX_PROBE_GAP."""

    def __init__(self, store: ObjectStore, canary: str) -> None:
        self.store, self.canary = store, canary
        self.open = False
        self.trips = 0

    def trip(self, reason: BackendError) -> None:
        if not self.open:
            self.trips += 1
            log.warning("the store or queue failed (%s); taking no work until the store answers again", reason)
        self.open = True

    def wait_until_closed(self, stop: threading.Event) -> None:
        delay = 0.0
        while self.open and not stop.is_set():
            delay = _backoff(delay, MAX_PROBE_GAP)
            stop.wait(delay)
            try:
                self.store.put(self.canary, b"ok", "text/plain")
                self.open = self.store.get(self.canary) != b"ok"
            except BackendError as exc:
                log.info("store still unavailable (%s); next look in %.2fs", exc, _backoff(delay, MAX_PROBE_GAP))
            if not self.open:
                log.info("the store answers again; taking work")


class WorkerLoop:
    def __init__(
        self, queue: Queue, processor: BatchProcessor, results: Results, *, max_batch: int, max_wait_ms: float,
        breaker: StoreBreaker | None = None, live_file: str = "", between: Callable[[], None] | None = None,
    ) -> None:
        self.queue, self.processor, self.results = queue, processor, results
        self.between = between  # called at each round, between two batches (a new model is taken up there)
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000
        self.breaker = breaker or StoreBreaker(processor.store, canary_key(f"worker-{processor.worker_id}"))
        self._stop = threading.Event()
        self.progress_at = time.time()  # the last time the loop went round (for liveness)
        self.live_file = Path(live_file) if live_file else None  # touched at each round (a liveness probe's)
        self._touch_failed = False

    def stop(self, *_: object) -> None:
        """Take no new messages; the batch in hand is finished first."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, idle_timeout: float, burst: bool = False) -> None:
        """Receive and handle until stopped, or idle for `idle_timeout` seconds; with
        `burst`, until the queue has nothing waiting or in flight (rq's and arq's burst
        mode: tests wait for the work to be done, not for time to pass)."""
        last_work = time.monotonic()
        backoff = 0.0
        while not self._stop.is_set():
            self.progress_at = time.time()
            if self.live_file is not None:
                self._touch(self.live_file)
            if self.between is not None:
                self.between()
            self.breaker.wait_until_closed(self._stop)
            idle_left = idle_timeout - (time.monotonic() - last_work)
            if idle_left <= 0:
                log.info("idle for %.0fs, exiting", idle_timeout)
                return
            try:
                messages = self.receive_batch(min(idle_left, 0.5))
                backoff = 0.0
            except BackendError as exc:
                # The queue is unreachable: wait longer each time, and keep going.
                backoff = _backoff(backoff)
                log.warning("queue unavailable (%s); retrying in %.2fs", exc, backoff)
                self._stop.wait(backoff)
                continue
            if not messages:
                if burst and self._drained():
                    return
                continue
            fresh = [m for m in messages if not suspect(m)]
            if fresh:
                self.handle(fresh, functools.partial(self.processor.process, fresh))
            for m in (m for m in messages if suspect(m)):
                self.handle([m], functools.partial(self.processor.process_alone, m))
            last_work = time.monotonic()

    def _touch(self, path: Path) -> None:
        try:
            path.touch()
            self._touch_failed = False
        except OSError as exc:  # a probe will take this worker for hung: say why, once while it lasts
            if not self._touch_failed:
                log.warning("cannot touch the live file %s (%s)", path, exc)
            self._touch_failed = True

    def _drained(self) -> bool:
        stats = self.queue.stats()
        return stats.depth == 0 and stats.in_flight == 0

    def receive_batch(self, wait: float) -> list[Message]:
        """Everything waiting, up to max_batch. When more than one was waiting (the service
        is busy) wait up to max_wait_ms for the batch to fill; a lone request goes at once."""
        messages = self.queue.receive(self.max_batch, wait=wait)
        room = self.max_batch - len(messages)
        if len(messages) > 1 and room > 0 and self.max_wait > 0:
            messages += self.queue.receive(room, wait=self.max_wait)
        return messages

    def handle(self, messages: list[Message], work: Callable[[], Outcome]) -> None:
        """Do `work` on messages this worker holds, then publish what it gave. A stopping
        worker, or one whose store or queue fails meanwhile, gives them back instead."""
        if self._stop.is_set() or self.breaker.open:
            self.give_back(messages)
            return
        try:
            with kept_invisible(self.queue, messages):
                outcome = work()
                self.finish(outcome.done)
            self.queue.ack_many(outcome.dropped)
            self.requeue(outcome.retry)
        except BackendError as exc:
            self.breaker.trip(exc)
            self.give_back(messages)

    def finish(self, done: list[Done]) -> None:
        written, replied = self.results.finish(self.queue, done)
        stats = self.processor.stats
        stats.stage_seconds.update({"result_write": written, "reply_and_ack": replied})
        stats.completed += len(done)

    def give_back(self, messages: list[Message]) -> None:
        """Hand messages on without counting this delivery against them."""
        retries = []
        for m in messages:
            try:
                request = Request.from_dict(m.body)
            except BadInput:
                continue  # malformed: it comes back once more and is dropped then
            retries.append((m, dataclasses.replace(request, requeued=request.requeued + 1)))
        self.requeue(retries)

    def requeue(self, retries: list[tuple[Message, Request]]) -> None:
        """Send each request again as a new message, then ack the one taken. If the queue
        fails, release it instead, or, failing that, let its visibility timeout pass."""
        if not retries:
            return
        try:
            self.queue.send_many([r.to_dict() for _, r in retries])
            self.queue.ack_many([m for m, _ in retries])
        except BackendError as exc:
            log.warning("could not send %d messages again (%s); releasing them", len(retries), exc)
            for m, _ in retries:
                try:
                    self.queue.release(m)
                except BackendError:
                    pass  # it comes back after its visibility timeout
