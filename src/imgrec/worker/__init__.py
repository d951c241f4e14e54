"""The workers: take requests from the queue, classify them in batches, persist and reply.

`loop` receives and stops, `batch` turns messages into outputs, `publisher`
writes, replies and acks, `isolation` and `watchdog` contain an image that
crashes or hangs the classifier. `run_worker` wires them into one process.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time

from imgrec.engine import Classifier
from imgrec.engine.preprocess import ImageLimits
from imgrec.messages import new_id
from imgrec.presence import Presence
from imgrec.queues import request_queue
from imgrec.settings import Settings
from imgrec.stores import open_store
from imgrec.worker.batch import BatchProcessor, WorkerStats
from imgrec.worker.loop import WorkerLoop
from imgrec.worker.publisher import Publisher

log = logging.getLogger("imgrec.worker")


def run_worker(settings: Settings, worker_id: str | None = None) -> None:
    """Entry point of `imgrec worker`: one process, one model session, until stopped
    (SIGTERM, SIGINT) or idle for `settings.worker_idle_timeout` seconds."""
    import setproctitle

    born = time.time()
    setproctitle.setproctitle("imgrec worker")
    worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{new_id()[:6]}"
    store = open_store(settings.store_url)
    queue = request_queue(settings)
    clf = Classifier(
        settings.model_path, threads=settings.intra_op_threads, limits=ImageLimits.from_settings(settings)
    )
    stats = WorkerStats()
    processor = BatchProcessor(clf, store, worker_id, settings.image_timeout, stats, max_attempts=settings.max_receives)
    publisher = Publisher(settings.queue_url, store, stats)
    loop = WorkerLoop(queue, processor, publisher, max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms)
    signal.signal(signal.SIGTERM, loop.stop)
    signal.signal(signal.SIGINT, loop.stop)
    beat = lambda: {**stats.as_beat(), "progress_at": loop.progress_at}  # noqa: E731
    presence = Presence(store, "worker", worker_id, beat, started=born).start()
    log.info("worker %s ready (model %s)", worker_id, clf.model_id)
    try:
        loop.run(settings.worker_idle_timeout)
    finally:
        presence.stop("stopped")
        publisher.close()
        queue.close()
