"""The autoscaler's chores: dead letters answered, dead replicas' reply queues removed."""

from __future__ import annotations

import contextlib
import time
import uuid
from unittest import mock

from imgrec import presence
from imgrec.autoscaler.housekeeping import sweep_reply_queues
from imgrec.jobs import Results, answer_dead_letters, read_output, resend_lost, sweep_expired
from imgrec.messages import (
    Heartbeat,
    Output,
    Pending,
    Reply,
    Request,
    dumps,
    input_key,
    new_id,
    output_key,
    pending_key,
)
from imgrec.queues import open_queue
from imgrec.stores import memory as store_memory
from imgrec.stores import open_store


def _rig():
    url = f"memory://{uuid.uuid4().hex}"
    queue = open_queue(url, "requests", create=True, visibility_timeout=0.01, max_receives=2)
    replies = open_queue(url, "replies-a", create=True)
    store = open_store(f"memory://{uuid.uuid4().hex}")
    return url, queue, replies, store, Results(store, url)


def _dead_letter(queue, request: Request) -> None:
    queue.send(request.to_dict())
    for _ in range(2):
        (m,) = queue.receive(1, wait=1)
        queue.release(m)
    assert queue.receive(1, wait=0.05) == [] and queue.stats().dead == 1


def test_a_dead_letter_gets_an_error_result_and_its_client_a_reply():
    _, queue, replies, store, results = _rig()
    job = new_id()
    request = Request(job, input_key(job, "y.png"), "y.png", reply_to="replies-a")
    _dead_letter(queue, request)
    assert answer_dead_letters(queue, results) == 1
    output = read_output(store, request.job_id)
    assert "delivered 2 times" in output.error and output.filename == "y.png"
    (reply,) = [Reply.from_dict(m.body) for m in replies.receive(10)]
    assert reply.job_id == request.job_id and reply.output == output
    assert queue.stats().dead == 0


def test_a_dead_letter_whose_result_exists_is_answered_with_it():
    _, queue, replies, store, results = _rig()
    job = new_id()
    request = Request(job, input_key(job, "y.png"), "y.png", reply_to="replies-a")
    store.put(output_key(request.job_id), dumps(Output(request.job_id, label="cat").to_dict()))
    _dead_letter(queue, request)
    answer_dead_letters(queue, results)
    assert read_output(store, request.job_id).label == "cat"
    assert [Reply.from_dict(m.body).output.label for m in replies.receive(10)] == ["cat"]


def test_reply_queues_of_dead_replicas_are_swept():
    """A web replica killed without cleaning up leaves a reply queue; the sweep removes it."""
    url, _, _, store, _ = _rig()
    alive_q, dead_q = (open_queue(url, n, create=True) for n in ("replies-alive", "replies-dead"))
    for q in (alive_q, dead_q):
        q.send({"job_id": "x"})
        presence.Presence(store, "web", q.name).write()
    gone = Heartbeat("replies-dead", "web", last_seen=time.time() - 3600)
    store.put(gone.key, dumps(gone.to_dict()))
    assert sweep_reply_queues(store, url) == ["replies-dead"]
    assert dead_q.stats().depth == 0 and alive_q.stats().depth == 1
    assert [b.id for b in presence.read(store, "web")] == ["replies-alive"]


@contextlib.contextmanager
def _written_ago(seconds: float):
    """What the memory store writes meanwhile, it stamps `seconds` ago (its own clock)."""
    real = time.time
    with mock.patch.object(store_memory.time, "time", lambda: real() - seconds):
        yield


class _Skewed:
    """A `time` module whose clock is `offset` seconds off: another host's."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def time(self) -> float:
        return time.time() + self.offset

    def __getattr__(self, name: str):
        return getattr(time, name)


def _pending(store, queue, n: int, age: float, send: bool) -> list[str]:
    jobs = []
    for _ in range(n):
        job = new_id(time.time() - age)
        request = Request(job, input_key(job, "x.png"), "x.png", sent_at=time.time() - age)
        with _written_ago(age):
            store.put(pending_key(job), dumps(Pending(request, accepted_at=time.time() - age).to_dict()))
        if send:
            queue.send(request.to_dict())
        jobs.append(job)
    return jobs


def test_jobs_whose_messages_were_lost_are_sent_again():
    _, queue, _, store, _ = _rig()
    lost = _pending(store, queue, 3, age=200, send=False)  # accepted, then the queue lost them
    queued = _pending(store, queue, 2, age=120, send=True)  # sent after the loss, still waiting
    young = _pending(store, queue, 4, age=1, send=True)  # just accepted
    assert resend_lost(store, queue, older_than=60) == 3
    sent = [Request.from_dict(m.body) for m in queue.receive(20)]
    assert sorted(r.job_id for r in sent) == sorted(queued + young + lost)
    assert all(r.requeued == 1 for r in sent if r.job_id in lost)
    assert resend_lost(store, queue, older_than=60) == 0, "not again at once: they were resent just now"


def test_a_lost_job_goes_back_to_its_own_models_queue():
    url, queue, _, store, _ = _rig()
    colours = open_queue(url, "requests-colours", create=True)
    (default_job,) = _pending(store, queue, 1, age=300, send=False)
    job = new_id(time.time() - 200)
    request = Request(job, input_key(job, "y.png"), "y.png", sent_at=time.time() - 200, model="colours")
    with _written_ago(200):
        store.put(pending_key(job), dumps(Pending(request, accepted_at=time.time() - 200).to_dict()))
    assert resend_lost(store, queue, older_than=60, others={"colours": colours}) == 2
    assert [Request.from_dict(m.body).job_id for m in queue.receive(20)] == [default_job]
    assert [Request.from_dict(m.body).job_id for m in colours.receive(20)] == [job]
    # one waiting on the other model's queue counts as queued there, not as lost
    (waiting,) = _pending(store, colours, 1, age=200, send=True)
    assert resend_lost(store, queue, older_than=60, others={"colours": colours}) == 0


def test_a_finished_jobs_pending_record_is_cleared():
    _, queue, _, store, _ = _rig()
    (job,) = _pending(store, queue, 1, age=120, send=False)
    store.put(output_key(job), dumps(Output(job, label="cat").to_dict()))
    assert resend_lost(store, queue, older_than=60) == 0
    assert not store.exists(pending_key(job))


def test_retention_deletes_what_is_old(monkeypatch):
    _, _, _, store, _ = _rig()
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now - 10 * 86400)
    old = [f"inputs/{new_id()}/a.png", f"outputs/{new_id()}.json", f"batches/{new_id()}/manifest.json"]
    for key in old:
        store.put(key, b"x")
    monkeypatch.setattr(time, "time", lambda: now)
    fresh = [f"inputs/{new_id()}/b.png", "workers/w1.json"]
    for key in fresh:
        store.put(key, b"x")
    deleted = sweep_expired(store, retention=7 * 86400)
    assert deleted == {"inputs/": 1, "outputs/": 1, "batches/": 1}
    assert sorted(store.keys()) == sorted(fresh)
    assert sweep_expired(store, retention=0) == {}, "0 keeps everything"


# --- hosts whose clocks differ: every decision by the store's clock ---------------------


def test_a_live_replica_is_not_swept_by_an_autoscaler_whose_clock_is_ahead(monkeypatch):
    """The autoscaler's clock 5 minutes ahead, the replica's 10 behind: the replica beats
    (the store stamps it now), so its reply queue stays."""
    url, _, _, store, _ = _rig()
    open_queue(url, "replies-live", create=True)
    monkeypatch.setattr(presence, "time", _Skewed(-600))  # the replica's host
    presence.Presence(store, "web", "replies-live").write()
    monkeypatch.setattr(presence, "time", _Skewed(+300))  # the autoscaler's host
    clock = presence.StoreClock(store, "autoscaler-1")
    assert sweep_reply_queues(store, url, clock=clock) == []
    open_queue(url, "replies-live").close()  # still there (QueueMissing otherwise)
    assert [b.id for b in presence.read(store, "web")] == ["replies-live"]
    with _written_ago(400):  # the same replica, silent for 400 s by the store's clock
        presence.Presence(store, "web", "replies-live").write()
    assert sweep_reply_queues(store, url, clock=clock) == ["replies-live"]


def test_retention_by_the_stores_clock_keeps_what_is_young(monkeypatch):
    """Ahead by more than the retention, the autoscaler's sweep deleted every result: by the
    store's clock, only what the store got long enough ago goes."""
    _, _, _, store, _ = _rig()
    young, old = f"outputs/{new_id()}.json", f"outputs/{new_id()}.json"
    store.put(young, b"{}")
    with _written_ago(3600):
        store.put(old, b"{}")
    monkeypatch.setattr(presence, "time", _Skewed(+32 * 60))
    clock = presence.StoreClock(store, "autoscaler-1")
    assert sweep_expired(store, 30 * 60, clock.now()) == {"outputs/": 1}
    assert store.exists(young) and not store.exists(old)


def test_a_live_worker_whose_clock_is_behind_is_not_folded(monkeypatch):
    _, _, _, store, _ = _rig()
    monkeypatch.setattr(presence, "time", _Skewed(-900))  # the worker's host: 15 minutes behind
    presence.Presence(store, "worker", "w-behind", lambda: {"completed": 7}).write()
    monkeypatch.setattr(presence, "time", _Skewed(0))
    assert presence.compact(store, clock=presence.StoreClock(store, "autoscaler-1")) == 0
    assert [b.id for b in presence.read(store, "worker")] == ["w-behind"]


def test_lost_jobs_are_judged_by_when_the_store_got_their_records(monkeypatch):
    """Records the store got just now are not sent again, however old the web tier's clock
    says they are; one the store got long ago, whose message is gone, is."""
    _, queue, _, store, _ = _rig()
    job = new_id(time.time() - 3600)  # made by a web tier whose clock is an hour behind
    request = Request(job, input_key(job, "x.png"), "x.png", sent_at=time.time() - 3600)
    store.put(pending_key(job), dumps(Pending(request, accepted_at=time.time() - 3600).to_dict()))
    clock = presence.StoreClock(store, "autoscaler-1")
    assert resend_lost(store, queue, older_than=60, store_now=clock.now()) == 0
    (lost,) = _pending(store, queue, 1, age=200, send=False)
    assert resend_lost(store, queue, older_than=60, store_now=clock.now()) == 1
    assert [Request.from_dict(m.body).job_id for m in queue.receive(5)] == [lost]
