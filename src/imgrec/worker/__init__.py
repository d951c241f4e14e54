"""The workers: take requests from the queue, classify them in batches, persist and reply.

`loop` receives and stops, `batch` turns messages into outputs (which
`imgrec.jobs` writes, replies and acks), `isolation` and `watchdog` contain an
image that crashes or hangs the classifier, `rollout` takes up a new version of the
model between batches. `run_worker` wires them into one process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from pathlib import Path

from imgrec import jobs, logs
from imgrec.engine import registry
from imgrec.engine.classifier import Classifier
from imgrec.engine.model import folder_lock
from imgrec.errors import BackendError, ConfigError
from imgrec.messages import new_id
from imgrec.presence import Presence
from imgrec.queues import request_queue
from imgrec.settings import Settings
from imgrec.stopping import on_stop_signal, stop_with_parent
from imgrec.stores import open_store
from imgrec.worker.batch import BatchProcessor, WorkerStats
from imgrec.worker.loop import WorkerLoop
from imgrec.worker.rollout import ModelWatch, warm_up

log = logging.getLogger("imgrec.worker")


def run_worker(settings: Settings, worker_id: str | None = None) -> None:
    """Entry point of `imgrec worker`: one process, one model session, until stopped
    (SIGTERM, SIGINT) or idle for `settings.worker_idle_timeout` seconds.

    Without a model here it pulls the one pushed to the store, or waits for one (its
    heartbeat says why, in state "waiting"), rather than crash again and again."""
    import setproctitle

    born = time.time()  # its worker-seconds count from here, the model's loading included
    setproctitle.setproctitle("imgrec worker")
    worker = _Worker(settings, worker_id or f"{socket.gethostname()}-{os.getpid()}-{new_id()[:6]}", born)
    on_stop_signal(worker.stop)
    stop_with_parent()
    with logs.lifetime(log, "worker", id=worker.id, model_dir=settings.model_path) as said:
        try:
            if worker.wait_for_model():
                worker.serve()
        finally:
            worker.close()
            said.update(images=worker.stats.completed, batches=sum(worker.stats.batch_sizes.values()))


class _Worker:
    """One worker process's parts: what it says in its heartbeat, its loop once it runs."""

    def __init__(self, settings: Settings, worker_id: str, born: float) -> None:
        self.settings, self.id = settings, worker_id
        if settings.model not in settings.served_models:  # its queue would be one no web replica feeds
            raise ConfigError(
                f"IMGREC_MODEL={settings.model} is not one of IMGREC_MODELS ({settings.models}): name the model this "
                "worker serves with IMGREC_MODEL"
            )
        self.store = open_store(settings.store_url, settings.backend_timeout)
        self.queue = request_queue(settings)  # a queue set up wrong is said at once, not after the wait
        for left in (settings.ready_file, settings.live_file):  # left by a worker that died (a container restarted)
            if left:
                Path(left).unlink(missing_ok=True)
        self.stopping = threading.Event()
        self.loop: WorkerLoop | None = None
        self.stats, self.said = WorkerStats(), {"problem": "", "problem_kind": "", "model": "", "model_variant": ""}
        self.presence = Presence(self.store, "worker", worker_id, self._beat, started=born)
        self.results: jobs.Results | None = None

    def _beat(self) -> dict:
        return {**self.stats.as_beat(), **self.said, "progress_at": self.loop.progress_at if self.loop else time.time()}

    def stop(self) -> None:
        self.stopping.set()
        if self.loop is not None:
            self.loop.stop()

    def wait_for_model(self) -> bool:
        """The model here, pulled from the store, or waited for (each beat saying "waiting"
        and why); False if stopped first."""
        if registry.has_model(self.settings.model_path):
            return True
        self.presence.start("waiting")

        def waiting(problem: str) -> None:
            self.said["problem"] = problem
            self.said["problem_kind"] = "a worker waits for its model" if problem else ""
            self.presence.write(self.presence.state)

        found = registry.wait_for(self.settings.model_path, self.store, self.stopping, waiting, self.settings.model)
        return found is not None

    def serve(self) -> None:
        s = self.settings
        with folder_lock(s.model_path):
            clf = Classifier.from_settings(s)
        self.said.update(model=clf.model_id, model_variant=clf.manifest.variant)
        processor = BatchProcessor(clf, self.store, self.id, s.image_timeout, self.stats, max_attempts=s.max_receives)
        self.results = jobs.Results(self.store, s.queue_url, s.backend_timeout)
        watch = None
        if s.model_check_interval > 0:
            load = lambda: Classifier.from_settings(s)  # noqa: E731 - the same settings, the new file
            watch = ModelWatch(self.store, s.model, s.model_path, clf, load, s.model_check_interval)
        self.loop = WorkerLoop(
            self.queue, processor, self.results, max_batch=s.max_batch, max_wait_ms=s.max_wait_ms, live_file=s.live_file,
            between=(lambda: self._take_new_model(watch, processor)) if watch else None,
        )
        if self.stopping.is_set():
            self.loop.stop()
        ready = _warm_up(clf, s.ready_file)
        if self.presence.state == "waiting":
            self.presence.state = "running"
            self.presence.write("running")
        else:
            self.presence.start()
        log.info("worker %s ready (model %s)", self.id, clf.model_id)
        if watch is not None:
            watch.start()
        try:
            self.loop.run(s.worker_idle_timeout)
        finally:
            if watch is not None:
                watch.stop()
            if ready is not None:
                with contextlib.suppress(OSError):
                    ready.unlink()

    def _take_new_model(self, watch: ModelWatch, processor: BatchProcessor) -> None:
        """Between two batches: serve the new version the watch prepared, if there is one."""
        new = watch.take()
        if new is None:
            return
        old, processor.clf = processor.clf, new
        self.said.update(model=new.model_id, model_variant=new.manifest.variant)
        with contextlib.suppress(BackendError):  # the status shows the switch at once, or at the next beat
            self.presence.write(self.presence.state)
        if old.decode_pool is not None:
            old.decode_pool.shutdown(wait=False)
        log.info("worker %s now runs %s (was %s)", self.id, new.model_id, old.model_id)

    def close(self) -> None:
        self.presence.stop("stopped")
        if self.results is not None:
            self.results.close()
        self.queue.close()


def _warm_up(clf: Classifier, ready_file: str) -> Path | None:
    """One inference before the first job (the first run of a session is the slowest), then
    the ready file, if one is asked for: what a readiness probe looks at (Kubernetes)."""
    warm_up(clf)
    if not ready_file:
        return None
    path = Path(ready_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{clf.model_id}\n")
    return path
