"""BatchProcessor: messages in, outputs out, with a fake classifier and memory adapters."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

import pytest

from fakes import CRASH, HANG, FakeClassifier, image
from imgrec.jobs import read_output
from imgrec.messages import Output, Pending, Request, dumps, input_key, new_id, output_key, pending_key, seconds_bucket
from imgrec.queues import open_queue
from imgrec.stores import open_store
from imgrec.worker.batch import INPUT_GONE, BatchProcessor, suspect


@pytest.fixture
def store():
    return open_store(f"memory://{uuid.uuid4().hex}")


@pytest.fixture
def queue():
    return open_queue(f"memory://{uuid.uuid4().hex}", "requests", create=True, visibility_timeout=30)


@pytest.fixture
def processor(store):
    return BatchProcessor(FakeClassifier(), store, "w1", image_timeout=2.0)


def enqueue(queue, store, data: bytes | None, reply_to: str | None = "replies-a", **extra) -> Request:
    job = new_id()
    request = Request(job, input_key(job, "x.jpg"), "x.jpg", reply_to=reply_to, sent_at=time.time() - 0.5, **extra)
    if data is not None:
        store.put(request.input_key, data)
    queue.send(request.to_dict())
    return request


def test_a_batch_becomes_outputs_in_order(queue, store, processor):
    requests = [enqueue(queue, store, image(label)) for label in ("cat", "dog", "cup")]
    outcome = processor.process(queue.receive(10))
    assert [d.output.label for d in outcome.done] == ["cat", "dog", "cup"]
    assert [d.request for d in outcome.done] == requests
    first = outcome.done[0].output
    assert first.model == "fake@000000000000" and first.worker == "w1" and first.attempt == 1
    assert first.timings_ms["batch_size"] == 3 and first.timings_ms["queue_wait"] >= 500
    assert processor.clf.calls == [3], "one inference for the whole batch"
    assert processor.stats.batch_sizes == {3: 1}
    assert not outcome.dropped and not outcome.retry
    assert read_output(store, requests[0].job_id) is None, "writing is the job of imgrec.jobs.Results"


def test_a_bad_image_fails_alone(queue, store, processor):
    enqueue(queue, store, image("cat"))
    enqueue(queue, store, b"rubbish")
    enqueue(queue, store, None)  # its input is gone
    outcome = processor.process(queue.receive(10))
    assert [d.output.label for d in outcome.done] == ["cat", None, None]
    assert "not an image" in outcome.done[1].output.error
    assert outcome.done[2].output.error == INPUT_GONE


def test_a_redelivery_is_answered_from_the_store(queue, store, processor):
    request = enqueue(queue, store, image("cat"))
    stored = Output(request.job_id, label="cat", worker="earlier")
    store.put(output_key(request.job_id), dumps(stored.to_dict()))
    (done,) = processor.process(queue.receive(1)).done
    assert done.stored and done.output == stored
    assert processor.clf.calls == [], "not classified again"


def test_malformed_messages_are_dropped(queue, store, processor):
    queue.send({"hello": "world"})
    queue.send({"job_id": "not-an-id", "input_key": "inputs/x"})
    outcome = processor.process(queue.receive(10))
    assert len(outcome.dropped) == 2 and not outcome.done


def test_an_async_job_is_marked_running(queue, store, processor):
    request = enqueue(queue, store, image("cat"), reply_to=None)
    processor.process(queue.receive(1))
    pending = Pending.from_dict(store.get(pending_key(request.job_id)))
    assert pending.worker == "w1" and pending.request == request


def test_alone_in_a_child_process(queue, store, processor):
    good = enqueue(queue, store, image("cat"))
    (m,) = queue.receive(1)
    (done,) = processor.process_alone(m).done
    assert done.request == good and done.output.label == "cat" and "isolated" in done.output.timings_ms


@pytest.mark.parametrize("poison", [CRASH, HANG], ids=["crash", "hang"])
def test_a_poison_ends_only_the_child_and_is_tried_again_with_the_crash_counted(queue, store, poison):
    processor = BatchProcessor(FakeClassifier(), store, "w1", image_timeout=0.5, max_attempts=3)
    request = enqueue(queue, store, poison)
    (m,) = queue.receive(1)
    outcome = processor.process_alone(m)
    assert outcome.retry == [(m, replace(request, crashes=1))] and not outcome.done


def test_a_poison_is_given_up_after_max_attempts_counting_unanswered_deliveries(queue, store):
    processor = BatchProcessor(FakeClassifier(), store, "w1", image_timeout=0.5, max_attempts=3)
    enqueue(queue, store, CRASH, crashes=1)
    (m,) = queue.receive(1)
    queue.release(m)
    (again,) = queue.receive(1)  # delivered twice: a worker ended holding it once
    (done,) = processor.process_alone(again).done
    assert "failed 3 attempts" in done.output.error and "crashed the classifier" in done.output.error


def test_suspects():
    from imgrec.queues import Message

    assert not suspect(Message("1", {"job_id": "x"}, "r", 1))
    assert suspect(Message("1", {"job_id": "x"}, "r", 2))
    assert suspect(Message("1", {"job_id": "x", "crashes": 1}, "r", 1))


def test_each_image_s_decode_and_inference_times_are_counted_in_buckets(queue, store):
    """What the heartbeat carries for /metrics' histograms: per image, decode and inference
    seconds by bucket (an inference call's time shared among its images), and their sums."""
    processor = BatchProcessor(FakeClassifier(delay=0.12), store, "w1", image_timeout=2.0)
    for label in ("cat", "dog", "cup"):
        enqueue(queue, store, image(label))
    enqueue(queue, store, b"rubbish")  # decoded (and refused), never inferred
    processor.process(queue.receive(10))
    decode, inference = (processor.stats.as_beat()["stage_histograms"][s] for s in ("decode", "inference"))
    assert sum(n for k, n in decode.items() if k != "sum") == 4
    assert sum(n for k, n in inference.items() if k != "sum") == 3
    assert inference["sum"] >= 0.12 and inference[seconds_bucket(inference["sum"] / 3)] == 3, "one call's share each"
    assert decode["sum"] == processor.stats.stage_seconds["decode"], "the same seconds as the stage's total"
