"""The worker loop in-process: receiving, publishing, stopping, backing off."""

from __future__ import annotations

import json
import os
import threading
import uuid

from fakes import CRASH, FakeClassifier, FlakyStore, image
from imgrec.jobs import Results, read_output
from imgrec.lab.harness import wait_until
from imgrec.messages import Reply, Request, input_key, new_id, output_key
from imgrec.queues import open_queue
from imgrec.stores import open_store
from imgrec.worker.batch import BatchProcessor, WorkerStats
from imgrec.worker.loop import WorkerLoop


class Rig:
    """A worker loop on memory adapters, with a reply queue a web replica would own."""

    def __init__(self, url: str | None = None, clf=None, vt: float = 30.0, store=None, max_receives: int = 5) -> None:
        self.url = url or f"memory://{uuid.uuid4().hex}"
        self.queue = open_queue(self.url, "requests", create=True, visibility_timeout=vt, max_receives=max_receives)
        self.replies = open_queue(self.url, "replies-a", create=True)
        self.store = store or open_store(f"memory://{uuid.uuid4().hex}")
        self.stats = WorkerStats()
        self.clf = clf or FakeClassifier()
        processor = BatchProcessor(self.clf, self.store, "w1", 5.0, self.stats, max_attempts=3)
        self.loop = WorkerLoop(
            self.queue, processor, Results(self.store, self.url), max_batch=4, max_wait_ms=2
        )

    def send(self, label: str, reply_to: str | None = "replies-a", data: bytes | None = None) -> str:
        job = new_id()
        key = input_key(job, f"{label}.jpg")
        self.store.put(key, data or image(label))
        self.queue.send(Request(job, key, f"{label}.jpg", reply_to=reply_to).to_dict())
        return job

    def run(self, idle: float = 30) -> threading.Thread:
        t = threading.Thread(target=self.loop.run, args=(idle,), daemon=True)
        t.start()
        return t

    def drain(self, timeout: float = 30) -> None:
        """Run the loop until the queue has nothing waiting or in flight (burst mode)."""
        t = threading.Thread(target=self.loop.run, args=(timeout,), kwargs={"burst": True}, daemon=True)
        t.start()
        t.join(timeout + 5)
        assert not t.is_alive(), "the loop did not empty the queue"


def test_results_are_written_replied_and_acked():
    rig = Rig()
    jobs = [rig.send(label) for label in ("cat", "dog", "cup", "owl", "bee")]
    rig.drain()
    assert [read_output(rig.store, j).label for j in jobs] == ["cat", "dog", "cup", "owl", "bee"]
    replies = [Reply.from_dict(m.body) for m in rig.replies.receive(10)]
    assert sorted(r.job_id for r in replies) == sorted(jobs)
    stats = rig.queue.stats()
    assert (stats.depth, stats.in_flight, stats.dead) == (0, 0, 0)
    assert rig.stats.completed == 5 and sum(rig.stats.batch_sizes.values()) == 2  # 4 + 1


def test_async_jobs_get_no_reply():
    rig = Rig()
    job = rig.send("cat", reply_to=None)
    rig.drain()
    assert read_output(rig.store, job).label == "cat" and rig.replies.receive(10) == []


def test_a_deleted_reply_queue_is_not_an_error():
    rig = Rig()
    rig.replies.delete()  # the web replica stopped
    job = rig.send("cat")
    rig.drain()
    assert read_output(rig.store, job).label == "cat", "the result is in the store all the same"
    assert rig.queue.stats().in_flight == 0


def test_a_stopping_worker_gives_back_what_it_holds():
    rig = Rig(clf=FakeClassifier(delay=0.5))
    jobs = [rig.send(f"img{i}") for i in range(12)]
    t = rig.run(idle=30)
    wait_until(lambda: rig.clf.calls, 10, 0.01, "a batch in hand")
    rig.loop.stop()
    t.join(10)
    assert not t.is_alive()
    done = [j for j in jobs if read_output(rig.store, j)]
    stats = rig.queue.stats()
    assert 0 < len(done) < 12 and stats.depth == 12 - len(done) and stats.in_flight == 0
    assert all(m.receive_count == 1 for m in rig.queue.receive(12))


def test_what_a_stopping_worker_gives_back_is_not_counted_as_a_delivery():
    rig = Rig()
    rig.send("cat")
    held = rig.queue.receive(1)
    rig.loop.stop()
    rig.loop.handle(held, lambda: rig.loop.processor.process(held))
    (back,) = rig.queue.receive(1)
    assert back.receive_count == 1 and back.body["requeued"] == 1 and back.body["job_id"] == held[0].body["job_id"]


def test_a_store_outage_releases_the_batch_and_the_worker_goes_on():
    store = FlakyStore(open_store(f"memory://{uuid.uuid4().hex}"))
    rig = Rig(store=store)
    job = rig.send("cat")
    store.down = True
    t = rig.run()
    wait_until(lambda: rig.loop.breaker.open, 10, 0.01, "the store outage noticed")
    assert read_output(store.inner, job) is None and t.is_alive()
    store.down = False
    wait_until(lambda: read_output(store.inner, job), 10, 0.02, "the job done once the store is back")
    rig.loop.stop()
    t.join(10)
    assert read_output(store.inner, job).label == "cat"


def test_a_store_outage_never_fails_a_good_job():
    """The store fails under a backlog: the worker takes no work until it answers again,
    so no delivery is spent on the outage and nothing is dead-lettered or failed."""
    store = FlakyStore(open_store(f"memory://{uuid.uuid4().hex}"))
    rig = Rig(store=store, clf=FakeClassifier(delay=0.05), max_receives=2)
    jobs = [rig.send(f"img{i}") for i in range(40)]
    t = rig.run(idle=30)
    wait_until(lambda: any(read_output(store.inner, j) for j in jobs), 10, 0.01, "the first results")
    store.down = True
    wait_until(lambda: rig.loop.breaker.open, 10, 0.01, "the store outage noticed")
    trips = rig.loop.breaker.trips
    # The outage lasts while the breaker probes the store (backing off to 2 s): no work is taken.
    refused = store.refused
    wait_until(lambda: store.refused >= refused + 4, 20, 0.01, "probes of the failing store")
    assert rig.loop.breaker.open and t.is_alive() and rig.loop.breaker.trips == trips
    store.down = False
    wait_until(lambda: all(read_output(store.inner, j) for j in jobs), 20, 0.05, "every job done")
    rig.loop.stop()
    t.join(10)
    outputs = [read_output(store.inner, j) for j in jobs]
    assert [o.label for o in outputs] == [f"img{i}" for i in range(40)], [o.error for o in outputs if o.error]
    assert rig.queue.stats().dead == 0 and rig.loop.breaker.trips >= 1


def test_a_poison_is_given_up_and_the_rest_answered():
    rig = Rig(vt=0.5)
    good = rig.send("cat")
    bad = rig.send("poison", data=CRASH)  # crashes the child that decodes it, every time
    # What a first delivery that ended its worker looks like: delivered once, never acked.
    (m1, m2) = rig.queue.receive(2)
    rig.drain()  # the next deliveries are suspects: each is classified alone
    assert read_output(rig.store, good).label == "cat" and (m1, m2)
    assert "failed 3 attempts" in read_output(rig.store, bad).error
    stats = rig.queue.stats()
    assert (stats.depth, stats.in_flight, stats.dead) == (0, 0, 0)


def test_a_long_batch_is_kept_invisible(tmp_path):
    """Inference longer than the visibility timeout: no other consumer gets the messages."""
    rig = Rig(url=f"sqlite://{tmp_path}/q.sqlite3", clf=FakeClassifier(delay=2.5), vt=1.0)
    jobs = [rig.send("cat"), rig.send("dog")]
    rival = open_queue(rig.url, "requests", visibility_timeout=1.0)
    stolen = []
    messages = rig.queue.receive(4)
    thief = threading.Thread(target=lambda: stolen.extend(rival.receive(4, wait=2.4)))
    thief.start()
    rig.loop.handle(messages, lambda: rig.loop.processor.process(messages))
    thief.join()
    assert stolen == [], "another consumer took messages of a batch still being processed"
    assert rig.queue.stats().depth == rig.queue.stats().in_flight == 0
    for job in jobs:
        assert json.loads(rig.store.get(output_key(job)))["attempt"] == 1


def test_a_redelivered_job_is_answered_from_the_store_once_written():
    rig = Rig()
    job = rig.send("cat")
    (first,) = rig.queue.receive(1)
    rig.loop.handle([first], lambda: rig.loop.processor.process([first]))
    written = rig.store.get(output_key(job))
    rig.queue.send(first.body)  # as if the ack had been lost and the message came again
    (again,) = rig.queue.receive(1)
    rig.loop.handle([again], lambda: rig.loop.processor.process([again]))
    assert rig.store.get(output_key(job)) == written, "the output is written once"
    answers = [Reply.from_dict(m.body) for m in rig.replies.receive(10)]
    assert [a.job_id for a in answers] == [job, job] and answers[0].output == answers[1].output


def test_the_live_file_is_touched_each_time_the_loop_goes_round(tmp_path):
    """What a liveness probe looks at (`imgrec health worker`, IMGREC_LIVE_FILE): its age
    is how long ago the loop last went round, busy or idle."""
    rig = Rig()
    live = tmp_path / "alive"
    rig.loop.live_file = live
    rig.send("cat")
    rig.drain()
    assert live.is_file()
    old = live.stat().st_mtime - 3600
    os.utime(live, (old, old))
    t = rig.run(idle=30)
    try:
        wait_until(lambda: live.stat().st_mtime > old + 3000, 10, what="the idle loop to touch the file")
    finally:
        rig.loop.stop()
        t.join(10)


def test_a_live_file_that_cannot_be_touched_is_said_once(tmp_path, caplog):
    rig = Rig()
    rig.loop.live_file = tmp_path / "no-such-folder" / "alive"
    for _ in range(3):
        rig.loop._touch(rig.loop.live_file)
    assert [r.message for r in caplog.records].count(
        f"cannot touch the live file {rig.loop.live_file} ([Errno 2] No such file or directory: "
        f"'{rig.loop.live_file}')"
    ) == 1
