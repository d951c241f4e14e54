"""Group commit (`jobs.Committer`): uploads staged while a commit runs are committed
together, each answered only after its objects are durable and its requests sent; a
failure fails every upload of its group and leaves nothing a worker or housekeeping
would act on."""

from __future__ import annotations

import io
import threading

import pytest

from imgrec import jobs
from imgrec.errors import BackendUnavailable
from imgrec.messages import Request, input_key, new_id, pending_key
from imgrec.queues import open_queue
from imgrec.stores import open_store


class SlowStore:
    """A memory store whose commits wait for the test to let them go, and may fail."""

    def __init__(self, name: str) -> None:
        self.inner = open_store(f"memory://{name}")
        self.commits: list[list[str]] = []
        self.entered = threading.Event()
        self.go = threading.Event()
        self.fail = False

    def __getattr__(self, attr):
        return getattr(self.inner, attr)

    def commit(self, staged):
        self.commits.append([s.key for s in staged])
        self.entered.set()
        assert self.go.wait(10)
        if self.fail:
            raise BackendUnavailable("disk full")
        self.inner.commit(staged)


class CountingQueue:
    def __init__(self, name: str) -> None:
        self.inner = open_queue(f"memory://{name}", "requests", create=True)
        self.sends: list[int] = []
        self.fail = False

    def __getattr__(self, attr):
        return getattr(self.inner, attr)

    def send_many(self, bodies):
        if self.fail:
            raise BackendUnavailable("queue down")
        self.sends.append(len(bodies))
        return self.inner.send_many(bodies)


def _request() -> Request:
    job = new_id()
    return Request(job, input_key(job, "a.jpg"), "a.jpg", sent_at=1.0)


def _stage(store, keep_pending=False):
    request = _request()
    return request, jobs.stage(store, request, io.BytesIO(b"image " + request.job_id.encode()), keep_pending)


def test_uploads_staged_during_a_commit_go_together_in_the_next():
    store, queue = SlowStore(new_id()), CountingQueue(new_id())
    committer = jobs.Committer(store, queue)
    first, first_staged = _stage(store)
    done_first = committer.commit(first_staged, [first])
    assert store.entered.wait(10)  # the first group's commit is running
    later = [_stage(store) for _ in range(5)]
    done_later = [committer.commit(staged, [r]) for r, staged in later]
    assert not any(f.done() for f in [done_first, *done_later])  # nobody answered before the commit
    store.go.set()
    for f in [done_first, *done_later]:
        f.result(10)
    assert queue.sends == [1, 5]  # two sends: the five waited and went as one
    assert [len(c) for c in store.commits] == [1, 5]
    assert all(store.exists(r.input_key) for r, _ in [(first, None), *later])
    assert queue.stats().depth == 6
    committer.close()


def test_a_failed_commit_fails_its_uploads_and_sends_nothing():
    store, queue = SlowStore(new_id()), CountingQueue(new_id())
    store.fail = True
    store.go.set()
    committer = jobs.Committer(store, queue)
    request, staged = _stage(store, keep_pending=True)
    with pytest.raises(BackendUnavailable):
        committer.commit(staged, [request]).result(10)
    assert queue.sends == [] and queue.stats().depth == 0
    assert not store.exists(request.input_key) and not store.exists(pending_key(request.job_id))
    # and the committer goes on with the next group
    store.fail = False
    request, staged = _stage(store)
    committer.commit(staged, [request]).result(10)
    assert store.exists(request.input_key) and queue.stats().depth == 1
    committer.close()


def test_a_failed_send_removes_the_pending_records_so_nothing_is_resent():
    store, queue = SlowStore(new_id()), CountingQueue(new_id())
    store.go.set()
    queue.fail = True
    committer = jobs.Committer(store, queue)
    request, staged = _stage(store, keep_pending=True)
    assert {s.key for s in staged} == {request.input_key, pending_key(request.job_id)}
    with pytest.raises(BackendUnavailable):
        committer.commit(staged, [request]).result(10)
    assert not store.exists(pending_key(request.job_id))  # housekeeping will not send it after all
    committer.close()


def test_close_commits_what_was_queued_then_refuses_more():
    store, queue = SlowStore(new_id()), CountingQueue(new_id())
    committer = jobs.Committer(store, queue)
    request, staged = _stage(store)
    done = committer.commit(staged, [request])
    assert store.entered.wait(10)
    closer = threading.Thread(target=committer.close)
    closer.start()
    store.go.set()
    closer.join(10)
    done.result(1)
    with pytest.raises(BackendUnavailable):
        committer.commit([], [])


def test_a_pending_record_is_staged_only_where_the_queue_is_not_durable():
    store = open_store(f"memory://{new_id()}")
    request, staged = _stage(store, keep_pending=False)
    assert [s.key for s in staged] == [request.input_key]
    request, staged = _stage(store, keep_pending=True)
    assert [s.key for s in staged] == [request.input_key, pending_key(request.job_id)]


def test_an_upload_that_stopped_waiting_is_not_committed_and_the_committer_goes_on():
    """A request cancelled while its group waited (the client gone, a shutdown): its group
    is dropped, and the committer, which every upload needs, keeps committing."""
    store, queue = SlowStore(new_id()), CountingQueue(new_id())
    committer = jobs.Committer(store, queue)
    first, first_staged = _stage(store)
    done_first = committer.commit(first_staged, [first])
    assert store.entered.wait(10)  # the first group's commit is running
    gone, gone_staged = _stage(store)
    done_gone = committer.commit(gone_staged, [gone])
    assert done_gone.cancel()
    store.go.set()
    done_first.result(10)
    later, later_staged = _stage(store)
    committer.commit(later_staged, [later]).result(10)  # the committer is still there
    assert not store.exists(gone.input_key) and store.exists(later.input_key)
    assert queue.sends == [1, 1]
    committer.close()
