"""The web tier in-process (FastAPI's TestClient) on memory adapters, answered by a
worker loop on a thread with the real model: every route and error path, fast."""

from __future__ import annotations

import threading
import uuid

import pytest
from fastapi.testclient import TestClient

from fakes import FakeClock, FlakyStore
from imgrec.jobs import Results
from imgrec.queues import request_queue
from imgrec.settings import Settings
from imgrec.stores import open_store
from imgrec.web import app as web_app
from imgrec.worker.batch import BatchProcessor
from imgrec.worker.loop import WorkerLoop


class Web:
    """A TestClient on a fresh app, its store (switchable off), and a worker thread."""

    def __init__(self, settings: Settings, classifier, monkeypatch, worker: bool = True) -> None:
        self.settings = settings
        self.store = FlakyStore(open_store(settings.store_url))
        monkeypatch.setattr(web_app, "open_store", lambda url, timeout=None: self.store)
        self.clock = FakeClock()  # what the app looks at every so often, it looks at again when this moves
        self.client = TestClient(web_app.create_app(settings, self.clock), raise_server_exceptions=False)
        self.client.__enter__()
        self.loop = None
        if worker:
            queue = self.requests = request_queue(settings)
            processor = BatchProcessor(classifier, self.store, "test-worker", settings.image_timeout)
            self.loop = WorkerLoop(queue, processor, Results(self.store, settings.queue_url), max_batch=8, max_wait_ms=2)
            self.thread = threading.Thread(target=self.loop.run, args=(300,), daemon=True)
            self.thread.start()

    def join(self, timeout: float = 30) -> None:
        """Wait until the worker has answered everything sent so far (the queue is empty)."""
        self.requests.join(timeout)

    def close(self) -> None:
        if self.loop:
            self.loop.stop()  # it stops while the app shuts down
        self.client.__exit__(None, None, None)
        if self.loop:
            self.thread.join(10)


@pytest.fixture
def make_web(classifier, monkeypatch, tmp_path):
    made = []

    def make(worker: bool = True, **settings) -> Web:
        name = uuid.uuid4().hex
        base = {
            "data_dir": tmp_path, "store": f"memory://{name}", "queue": f"memory://{name}", "allow_volatile_queue": True,
        }
        web = Web(Settings(**{**base, **settings}), classifier, monkeypatch, worker)
        made.append(web)
        return web

    yield make
    for web in made:
        web.close()


@pytest.fixture
def web(make_web) -> Web:
    return make_web()
