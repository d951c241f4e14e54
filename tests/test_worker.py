"""The worker in-process, on a real queue, store and model."""

from __future__ import annotations

import json
import threading
import time

from images import chelsea, encode
from imgrec import jobs
from imgrec.engine import Classifier
from imgrec.queue import open_queue
from imgrec.settings import Settings
from imgrec.store import open_store
from imgrec.worker import Worker


class SlowClassifier(Classifier):
    """The real model, with inference made slower than the visibility timeout."""

    delay = 2.5

    def infer(self, pixels):
        time.sleep(self.delay)
        return super().infer(pixels)


def _setup(tmp_path, model_dir, clf_class=Classifier, vt=1.0):
    settings = Settings(data_dir=tmp_path, model_dir=model_dir, visibility_timeout=vt, max_batch=4)
    queue = open_queue(settings.queue_url, jobs.REQUEST_QUEUE, visibility_timeout=vt, create=True)
    store = open_store(settings.store_url)
    worker = Worker(settings, queue, store, clf_class(model_dir, threads=1), "test-worker")
    return settings, queue, store, worker


def _enqueue(queue, store, n=2, reply_to=None):
    ids = []
    for i in range(n):
        job = jobs.new_id()
        key = jobs.input_key(job, f"cat{i}.png")
        store.put(key, encode(chelsea(), "PNG"))
        queue.send({"job_id": job, "input_key": key, "filename": f"cat{i}.png", "reply_to": reply_to, "sent_at": time.time()})
        ids.append(job)
    return ids


def test_long_batch_is_kept_invisible_and_written_once(tmp_path, model_dir):
    settings, queue, store, worker = _setup(tmp_path, model_dir, SlowClassifier)
    ids = _enqueue(queue, store, 2)
    rival = open_queue(settings.queue_url, jobs.REQUEST_QUEUE, visibility_timeout=1.0)
    stolen = []
    messages = queue.receive(4)
    t = threading.Thread(target=lambda: stolen.extend(rival.receive(4, wait=2.4)))
    t.start()
    worker.handle_batch(messages)
    t.join()
    assert stolen == [], "another consumer took messages of a batch still being processed"
    assert queue.stats().depth == queue.stats().in_flight == 0
    for job in ids:
        out = json.loads(store.get(jobs.output_key(job)))
        assert out["label"] == "tiger cat" and out["attempt"] == 1


def test_redelivered_job_is_answered_from_the_store(tmp_path, model_dir):
    settings, queue, store, worker = _setup(tmp_path, model_dir)
    replies = open_queue(settings.queue_url, "replies-test", create=True)
    (job,) = _enqueue(queue, store, 1, reply_to="replies-test")
    (first,) = queue.receive(1)
    worker.handle_batch([first])
    written = store.get(jobs.output_key(job))
    queue.send(first.body)  # as if the ack had been lost and the message came again
    (again,) = queue.receive(1)
    worker.handle_batch([again])
    assert store.get(jobs.output_key(job)) == written, "the output is written once"
    answers = replies.receive(10)
    assert [a.body["job_id"] for a in answers] == [job, job]
    assert answers[0].body["result"] == answers[1].body["result"]


def test_missing_input_and_malformed_messages(tmp_path, model_dir):
    settings, queue, store, worker = _setup(tmp_path, model_dir)
    job = jobs.new_id()
    queue.send({"job_id": job, "input_key": f"inputs/{job}/gone.jpg", "filename": "gone.jpg"})
    queue.send({"hello": "world"})
    worker.handle_batch(queue.receive(4))
    out = json.loads(store.get(jobs.output_key(job)))
    assert "no longer in the store" in out["error"]
    assert queue.stats().depth == queue.stats().in_flight == 0


def test_reply_queues_of_dead_replicas_are_swept(tmp_path):
    """A web replica killed without cleaning up leaves a reply queue; the sweep removes it."""
    from imgrec import replicas

    settings = Settings(data_dir=tmp_path)
    store = open_store(settings.store_url)
    alive, dead = (open_queue(settings.queue_url, n, create=True) for n in ("replies-alive", "replies-dead"))
    for q in (alive, dead):
        q.send({"job_id": "x"})
        replicas.beat(store, q.name)
    # The dead one's last heartbeat was long ago.
    store.put("replicas/replies-dead.json", jobs.dumps({"queue": "replies-dead", "last_seen": time.time() - 3600}))
    assert replicas.sweep(store, settings.queue_url) == ["replies-dead"]
    assert dead.stats().depth == 0 and alive.stats().depth == 1
    assert list(store.list("replicas/")) == ["replicas/replies-alive.json"]


def test_stopped_workers_are_folded_into_one_record(tmp_path):
    from imgrec import registry

    store = open_store(Settings(data_dir=tmp_path).store_url)
    old = time.time() - 3600
    for i, state in enumerate(["stopped", "stopped", "running"]):
        beat = {"id": f"w{i}", "state": state, "last_seen": old if i < 2 else time.time(), "completed": 10 * (i + 1),
                "batch_sizes": {"4": i + 1}, "stage_seconds": {"inference": 1.0}}
        store.put(registry.heartbeat_key(f"w{i}"), jobs.dumps(beat))
    before = sum(w.completed for w in registry.read_workers(store))
    assert registry.compact(store) == 2
    after = registry.read_workers(store)
    assert sorted(w.id for w in after) == ["_retired", "w2"]
    assert sum(w.completed for w in after) == before == 60
    assert sum(w.alive for w in after) == 1
    retired = next(w for w in after if w.id == "_retired")
    assert retired.batch_sizes == {"4": 3} and retired.stage_seconds == {"inference": 2.0}
