"""The autoscaler's chores: dead letters answered, dead replicas' reply queues removed."""

from __future__ import annotations

import time
import uuid

from imgrec import presence
from imgrec.autoscaler.housekeeping import answer_dead_letters, sweep_reply_queues
from imgrec.messages import Heartbeat, Output, Reply, Request, dumps, input_key, new_id, output_key, read_output
from imgrec.queues import open_queue
from imgrec.stores import open_store
from imgrec.worker.publisher import Publisher


def _rig():
    url = f"memory://{uuid.uuid4().hex}"
    queue = open_queue(url, "requests", create=True, visibility_timeout=0.01, max_receives=2)
    replies = open_queue(url, "replies-a", create=True)
    store = open_store(f"memory://{uuid.uuid4().hex}")
    return url, queue, replies, store, Publisher(url, store)


def _dead_letter(queue, request: Request) -> None:
    queue.send(request.to_dict())
    for _ in range(2):
        (m,) = queue.receive(1, wait=1)
        queue.release(m)
    assert queue.receive(1, wait=0.05) == [] and queue.stats().dead == 1


def test_a_dead_letter_gets_an_error_result_and_its_client_a_reply():
    _, queue, replies, store, publisher = _rig()
    job = new_id()
    request = Request(job, input_key(job, "y.png"), "y.png", reply_to="replies-a")
    _dead_letter(queue, request)
    assert answer_dead_letters(queue, publisher) == 1
    output = read_output(store, request.job_id)
    assert "delivered 2 times" in output.error and output.filename == "y.png"
    (reply,) = [Reply.from_dict(m.body) for m in replies.receive(10)]
    assert reply.job_id == request.job_id and reply.output == output
    assert queue.stats().dead == 0


def test_a_dead_letter_whose_result_exists_is_answered_with_it():
    _, queue, replies, store, publisher = _rig()
    job = new_id()
    request = Request(job, input_key(job, "y.png"), "y.png", reply_to="replies-a")
    store.put(output_key(request.job_id), dumps(Output(request.job_id, label="cat").to_dict()))
    _dead_letter(queue, request)
    answer_dead_letters(queue, publisher)
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
