"""The workers: take requests from the queue, classify them in batches, persist and reply.

`loop` receives and stops, `batch` turns messages into outputs (which
`imgrec.jobs` writes, replies and acks), `isolation` and `watchdog` contain an
image that crashes or hangs the classifier. `run_worker` wires them into one process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from pathlib import Path

from imgrec import jobs
from imgrec.engine import registry
from imgrec.engine.classifier import Classifier
from imgrec.messages import new_id
from imgrec.presence import Presence
from imgrec.queues import request_queue
from imgrec.settings import Settings
from imgrec.stopping import on_stop_signal, stop_with_parent
from imgrec.stores import open_store
from imgrec.worker.batch import BatchProcessor, WorkerStats
from imgrec.worker.loop import WorkerLoop

log = logging.getLogger("imgrec.worker")


def run_worker(settings: Settings, worker_id: str | None = None) -> None:
    """Entry point of `imgrec worker`: one process, one model session, until stopped
    (SIGTERM, SIGINT) or idle for `settings.worker_idle_timeout` seconds.

    Without a model here it pulls the one pushed to the store, or waits for one (its
    heartbeat says why, in state "waiting"), rather than crash again and again."""
    import setproctitle

    born = time.time()  # its worker-seconds count from here, the model's loading included
    setproctitle.setproctitle("imgrec worker")
    worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{new_id()[:6]}"
    store = open_store(settings.store_url)
    queue = request_queue(settings)  # a queue set up wrong is said at once, not after the wait
    if settings.ready_file:  # one left by a worker that died (a container restarted in its pod)
        Path(settings.ready_file).unlink(missing_ok=True)
    stopping = threading.Event()
    loop: WorkerLoop | None = None

    def stop() -> None:
        stopping.set()
        if loop is not None:
            loop.stop()

    on_stop_signal(stop)
    stop_with_parent()
    stats, said = WorkerStats(), {"problem": "", "model": ""}
    presence = Presence(store, "worker", worker_id, lambda: {
        **stats.as_beat(), **said, "progress_at": loop.progress_at if loop else time.time()}, started=born)
    beating = not registry.has_model(settings.model_path)
    if beating:  # until the model is here, each beat says "waiting" (and why, if it must wait)
        presence.start("waiting")

    def wait(problem: str) -> None:
        said["problem"] = problem
        presence.write(presence.state)

    if registry.wait_for(settings.model_path, store, stopping, wait, settings.model) is None:
        presence.stop("stopped")
        queue.close()
        return
    clf = Classifier.from_settings(settings)
    said["model"] = clf.model_id
    processor = BatchProcessor(clf, store, worker_id, settings.image_timeout, stats, max_attempts=settings.max_receives)
    results = jobs.Results(store, settings.queue_url)
    loop = WorkerLoop(queue, processor, results, max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms)
    if stopping.is_set():
        loop.stop()
    ready = _warm_up(clf, settings.ready_file)
    if beating:
        presence.state = "running"
        presence.write("running")
    else:
        presence.start()
    log.info("worker %s ready (model %s)", worker_id, clf.model_id)
    try:
        loop.run(settings.worker_idle_timeout)
    finally:
        if ready is not None:
            with contextlib.suppress(OSError):
                ready.unlink()
        presence.stop("stopped")
        results.close()
        queue.close()


def _warm_up(clf: Classifier, ready_file: str) -> Path | None:
    """One inference before the first job (the first run of a session is the slowest), then
    the ready file, if one is asked for: what a readiness probe looks at (Kubernetes)."""
    import numpy as np

    size = clf.manifest.input_size
    clf.infer([np.zeros((size, size, 3), np.uint8)])
    if not ready_file:
        return None
    path = Path(ready_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{clf.model_id}\n")
    return path
