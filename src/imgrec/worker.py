"""The app tier: take requests from the queue, classify them in batches, persist and reply.

receive -> fetch inputs -> classify the whole batch -> write outputs -> reply -> ack.
A result is written once per job id: a redelivered message whose output already
exists is answered from the store, not classified again. A redelivered message
(its worker may have died or hung on it) is retried alone in a child process, so
that one poisonous image ends neither the worker nor the rest of its batch again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections import Counter

import numpy as np

from imgrec import connect, jobs, registry
from imgrec.engine import Classifier, ImageError
from imgrec.isolation import classify_isolated
from imgrec.outputs import Publisher, answer_dead_letters
from imgrec.queue import Message, Queue
from imgrec.settings import Settings
from imgrec.store import ObjectNotFound, ObjectStore
from imgrec.watchdog import Watchdog

log = logging.getLogger("imgrec.worker")
DEAD_LETTER_CHECK = 5.0  # seconds between looks at the dead-letter queue
MAX_BACKOFF = 8.0


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


class Worker:
    def __init__(
        self, settings: Settings, queue: Queue, store: ObjectStore, classifier: Classifier, worker_id: str
    ) -> None:
        self.settings, self.queue, self.store, self.clf = settings, queue, store, classifier
        self.id = worker_id
        self.publisher = Publisher(settings.queue_url, store)
        self.watchdog = Watchdog()
        self.completed = 0
        self.batch_sizes: Counter[int] = Counter()
        self.stage_seconds: Counter[str] = Counter()  # summed over images, for the heartbeat
        self._stop = threading.Event()
        self._started = time.time()

    def stop(self, *_: object) -> None:
        """Take no new messages; the batch in hand is finished first."""
        self._stop.set()

    def run(self, idle_timeout: float) -> None:
        beat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        beat.start()
        last_work = time.monotonic()
        next_dead_check = 0.0
        backoff = 0.0
        try:
            while not self._stop.is_set():
                idle_left = idle_timeout - (time.monotonic() - last_work)
                if idle_left <= 0:
                    log.info("worker %s idle for %.0fs, exiting", self.id, idle_timeout)
                    break
                try:
                    if time.monotonic() >= next_dead_check:
                        next_dead_check = time.monotonic() + DEAD_LETTER_CHECK
                        answer_dead_letters(self.queue, self.publisher)
                    messages = self._receive_batch(min(idle_left, 0.5))
                    backoff = 0.0
                except Exception as exc:
                    # The queue is unreachable: wait longer each time, and keep going.
                    backoff = min(MAX_BACKOFF, max(0.25, backoff * 2))
                    log.warning("queue unavailable (%s); retrying in %.2fs", exc, backoff)
                    self._stop.wait(backoff)
                    continue
                if not messages:
                    continue
                if self._stop.is_set():
                    self._release(messages)
                    break
                fresh = [m for m in messages if m.receive_count == 1]
                if fresh:
                    self._handle_safely(fresh)
                for suspect in (m for m in messages if m.receive_count > 1):
                    if self._stop.is_set():
                        self._release([suspect])
                    else:
                        self._handle_safely([suspect], alone=True)
                last_work = time.monotonic()
        finally:
            self._stop.set()
            beat.join(timeout=5)
            self._write_heartbeat("stopped")
            self.publisher.close()

    def _receive_batch(self, wait: float) -> list[Message]:
        """Everything waiting, up to max_batch. When more than one was waiting (the service
        is busy) wait up to max_wait_ms for the batch to fill; a lone request goes at once."""
        messages = self.queue.receive(self.settings.max_batch, wait=wait)
        room = self.settings.max_batch - len(messages)
        if len(messages) > 1 and room > 0 and self.settings.max_wait_ms > 0:
            messages += self.queue.receive(room, wait=self.settings.max_wait_ms / 1000)
        return messages

    def _release(self, messages: list[Message]) -> None:
        """Make messages visible again at once, so that nothing waits for a timeout."""
        for m in messages:
            try:
                self.queue.release(m)
            except Exception:
                log.exception("could not release message %s; it comes back after its timeout", m.id)

    def _handle_safely(self, messages: list[Message], alone: bool = False) -> None:
        try:
            self.handle_batch(messages, alone)
        except Exception:
            # The store or a queue failed: let others (or us, a little later) retry these.
            log.exception("batch of %d failed; releasing it for a retry", len(messages))
            self._stop.wait(1.0)
            self._release(messages)

    @contextlib.contextmanager
    def _kept_invisible(self, messages: list[Message]):
        """While a batch runs longer than half the visibility timeout, extend it, so that
        no other worker takes the same messages meanwhile."""
        every = self.queue.visibility_timeout / 2
        done = threading.Event()

        def keep() -> None:
            while not done.wait(every):
                for m in messages:
                    self.queue.extend(m, self.queue.visibility_timeout)

        keeper = threading.Thread(target=keep, name="keep-invisible", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            done.set()
            keeper.join()

    def handle_batch(self, messages: list[Message], alone: bool = False) -> None:
        """Classify a batch in this process, or (`alone`) each message in a child process
        of its own: a redelivered message may be the one that ended a worker."""
        with self._kept_invisible(messages):
            self._process(messages, alone)

    def _process(self, messages: list[Message], alone: bool) -> None:
        received = time.time()
        todo: list[tuple[Message, dict, bytes | None]] = []
        for m in messages:
            body = m.body
            if not isinstance(body, dict) or not jobs.is_id(str(body.get("job_id", ""))):
                log.error("dropping malformed message %s: %r", m.id, body)
                self.queue.ack(m)
                continue
            existing = self.publisher.existing(body["job_id"])
            if existing is not None:  # redelivered after its result was written
                self.publisher.reply(body, existing)
                self.queue.ack(m)
                continue
            data = self._fetch(body.get("input_key"))
            if body.get("mode") == "async":
                self.store.put(jobs.running_key(body["job_id"]), jobs.dumps({"worker": self.id, "at": received}))
            todo.append((m, body, data))
        if not todo:
            return
        if alone:
            for m, body, data in todo:
                self._process_alone(m, body, data, received)
            return
        fetched = time.time()
        limit = self.settings.image_timeout
        decoded = []
        for _, body, data in todo:
            with self.watchdog.limit(limit, f"decoding job {body['job_id']}"):
                decoded.append(self.clf.decode(data or b""))
        decoded_at = time.time()
        good = [x for x in decoded if isinstance(x, np.ndarray)]
        with self.watchdog.limit(limit * max(1, len(good)), f"inference on a batch of {len(good)}"):
            predictions = iter(self.clf.infer(good))
        inferred = time.time()
        n = len(todo)
        self.batch_sizes[n] += 1
        finished = []
        for (m, body, data), d in zip(todo, decoded):
            if data is None:
                result: dict = {"error": "the uploaded input is no longer in the store"}
            elif isinstance(d, ImageError):
                result = d.to_dict()
            else:
                result = next(predictions).to_dict()
            timings = {
                "queue_wait": _ms(received - body.get("sent_at", received)),
                "fetch": _ms((fetched - received) / n),
                "decode": _ms((decoded_at - fetched) / n),
                "inference": _ms((inferred - decoded_at) / n),
                "batch_size": n,
            }
            finished.append((m, body, self._output(m, body, result, timings)))
        self._finish(finished)
        self.stage_seconds.update({
            "queue_wait": sum(received - b.get("sent_at", received) for _, b, _ in todo),
            "fetch": fetched - received, "decode": decoded_at - fetched, "inference": inferred - decoded_at,
        })

    def _process_alone(self, m: Message, body: dict, data: bytes | None, received: float) -> None:
        result = classify_isolated(self.clf, data, self.settings.image_timeout) if data else None
        if data is None:
            result = {"error": "the uploaded input is no longer in the store"}
        elif result is None:
            # It crashed or hung again: give it back for another attempt; after
            # max_receives attempts the queue moves it to the dead-letter queue.
            log.warning("job %s crashed or hung the classifier (attempt %d)", body["job_id"], m.receive_count)
            self._release([m])
            return
        timings = {"queue_wait": _ms(received - body.get("sent_at", received)), "isolated": _ms(time.time() - received)}
        self._finish([(m, body, self._output(m, body, result, timings))])

    def _finish(self, finished: list[tuple[Message, dict, dict]]) -> None:
        """Write the outputs, reply, then ack: an ack never precedes a durable result."""
        results = [(body, output) for _, body, output in finished]
        t0 = time.perf_counter()
        self.publisher.write_many(results)
        t1 = time.perf_counter()
        self.publisher.reply_many(results)
        self.queue.ack_many([m for m, _, _ in finished])
        self.stage_seconds.update({"result_write": t1 - t0, "reply_and_ack": time.perf_counter() - t1})
        self.completed += len(finished)

    def _output(self, m: Message, body: dict, result: dict, timings: dict) -> dict:
        return {
            "job_id": body["job_id"],
            "filename": body.get("filename"),
            "input_key": body.get("input_key"),
            **result,
            "model": self.clf.model_id,
            "worker": self.id,
            "attempt": m.receive_count,
            "completed_at": time.time(),
            "timings_ms": timings,
        }

    def _fetch(self, key: str | None) -> bytes | None:
        try:
            return self.store.get(key) if key else None
        except (ObjectNotFound, ValueError):
            return None

    def _heartbeat_loop(self) -> None:
        self._write_heartbeat("running")
        while not self._stop.wait(registry.HEARTBEAT_SECONDS):
            self._write_heartbeat("running")

    def _write_heartbeat(self, state: str) -> None:
        beat = {
            "id": self.id,
            "state": state,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": self._started,
            "last_seen": time.time(),
            "completed": self.completed,
            "batch_sizes": {str(k): v for k, v in self.batch_sizes.items()},
            "stage_seconds": dict(self.stage_seconds),
        }
        try:
            self.store.put(registry.heartbeat_key(self.id), jobs.dumps(beat), "application/json")
        except Exception as exc:
            log.warning("heartbeat not written (%s)", exc)


def run_worker(settings: Settings, idle_timeout: float, worker_id: str | None = None) -> None:
    """Entry point of `imgrec worker`: one process, one model session."""
    import setproctitle

    setproctitle.setproctitle("imgrec worker")
    worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{jobs.new_id()[:6]}"
    store = connect.store(settings)
    queue = connect.request_queue(settings)
    clf = Classifier(settings.model_path, threads=settings.intra_op_threads, max_pixels=settings.max_pixels)
    worker = Worker(settings, queue, store, clf, worker_id)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    log.info("worker %s ready (model %s)", worker_id, clf.model_id)
    worker.run(idle_timeout)
    queue.close()
