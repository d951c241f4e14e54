"""The worker's loop: receive, hand the batch on, stop when asked or idle, back off.

receive -> process (see `batch`) -> write outputs -> reply -> ack (see `publisher`).
A first delivery is classified with its batch-mates; a redelivered message (its
worker may have died or hung on it) is classified alone in a child process, so
that one poisonous image ends neither the worker nor the rest of its batch again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from imgrec.errors import BackendError
from imgrec.queue import Message, Queue
from imgrec.worker.batch import BatchProcessor, Outcome
from imgrec.worker.publisher import Publisher

log = logging.getLogger("imgrec.worker")
MAX_BACKOFF = 8.0


@contextlib.contextmanager
def kept_invisible(queue: Queue, messages: list[Message]):
    """While a batch runs longer than half the visibility timeout, extend it, so that no
    other worker takes the same messages meanwhile."""
    every = queue.visibility_timeout / 2
    done = threading.Event()

    def keep() -> None:
        while not done.wait(every):
            for m in messages:
                try:
                    queue.extend(m, queue.visibility_timeout)
                except BackendError as exc:  # it may come back to another worker: harmless
                    log.warning("could not extend message %s (%s)", m.id, exc)

    keeper = threading.Thread(target=keep, name="keep-invisible", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        done.set()
        keeper.join()


class WorkerLoop:
    def __init__(
        self, queue: Queue, processor: BatchProcessor, publisher: Publisher, *, max_batch: int, max_wait_ms: float
    ) -> None:
        self.queue, self.processor, self.publisher = queue, processor, publisher
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000
        self._stop = threading.Event()

    def stop(self, *_: object) -> None:
        """Take no new messages; the batch in hand is finished first."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, idle_timeout: float) -> None:
        last_work = time.monotonic()
        backoff = 0.0
        while not self._stop.is_set():
            idle_left = idle_timeout - (time.monotonic() - last_work)
            if idle_left <= 0:
                log.info("idle for %.0fs, exiting", idle_timeout)
                return
            try:
                messages = self.receive_batch(min(idle_left, 0.5))
                backoff = 0.0
            except BackendError as exc:
                # The queue is unreachable: wait longer each time, and keep going.
                backoff = min(MAX_BACKOFF, max(0.25, backoff * 2))
                log.warning("queue unavailable (%s); retrying in %.2fs", exc, backoff)
                self._stop.wait(backoff)
                continue
            if not messages:
                continue
            fresh = [m for m in messages if m.receive_count == 1]
            suspects = [m for m in messages if m.receive_count > 1]
            if fresh:
                self.handle(fresh, lambda fresh=fresh: self.processor.process(fresh))
            for m in suspects:
                self.handle([m], lambda m=m: self.processor.process_alone(m))
            last_work = time.monotonic()

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
        worker gives its messages back instead; a backend failure gives them back too."""
        if self._stop.is_set():
            self.release(messages)
            return
        try:
            with kept_invisible(self.queue, messages):
                outcome = work()
                self.publisher.finish(self.queue, outcome.done)
            self.queue.ack_many(outcome.dropped)
            self.release(outcome.retry)
        except BackendError:
            # The store or a queue failed: let others (or us, a little later) retry these.
            log.exception("batch of %d failed; releasing it for a retry", len(messages))
            self._stop.wait(1.0)
            self.release(messages)

    def release(self, messages: list[Message]) -> None:
        """Make messages visible again at once, so that nothing waits for a timeout."""
        for m in messages:
            try:
                self.queue.release(m)
            except BackendError:
                log.warning("could not release message %s; it comes back after its timeout", m.id)
