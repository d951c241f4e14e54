"""Long-lived threads survive what nobody expected: each is made to fail with an error of
no known kind, and must log it, keep going, and do its work again."""

from __future__ import annotations

import logging
import threading
import uuid

from imgrec.background import Loop
from imgrec.lab.harness import wait_until
from imgrec.messages import Heartbeat
from imgrec.presence import Presence
from imgrec.queues import open_queue
from imgrec.stores import open_store
from imgrec.web.history import StatusHistory
from imgrec.worker.loop import kept_invisible


class Failing:
    """Raises RuntimeError (no kind any loop expects) for its first `times` calls, then
    calls `then`; `succeeded` is set at the first call that got through."""

    def __init__(self, times: int, then=lambda *a, **k: None) -> None:
        self.left, self.then, self.calls = times, then, 0
        self.succeeded = threading.Event()

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.left > 0:
            self.left -= 1
            raise RuntimeError("a bug nobody expected")
        result = self.then(*args, **kwargs)
        self.succeeded.set()
        return result


def test_a_loop_logs_the_unexpected_and_goes_on(caplog):
    step = Failing(2)
    healthy_while_failing = []
    loop = Loop("probe", step, every=0.01, log=logging.getLogger("probe"))
    loop.step = lambda: (healthy_while_failing.append(loop.healthy), step())[1]
    with caplog.at_level(logging.INFO, "probe"):
        loop.start()
        assert step.succeeded.wait(10), "it stopped after an unexpected error"
        wait_until(lambda: loop.healthy, 5, 0.01, "healthy again")
        loop.stop()
    assert loop.unexpected == 2 and healthy_while_failing[1:3] == [False, False]
    failed = [r for r in caplog.records if "failed unexpectedly" in r.getMessage()]
    assert len(failed) == 2 and all(r.exc_info for r in failed), "each with its traceback"
    assert any("works again" in r.getMessage() for r in caplog.records)


def test_a_heartbeat_survives_an_unexpected_error():
    store = open_store(f"memory://{uuid.uuid4().hex}")
    beats = Presence(store, "worker", "w1", every=0.01)
    beats.start()
    first = Heartbeat.from_dict(store.get(beats.beat.key)).last_seen
    failing = Failing(2, then=store.put)
    beats.store = type("Store", (), {"put": staticmethod(failing)})()
    assert failing.succeeded.wait(10), "the heartbeat thread died"
    after = Heartbeat.from_dict(store.get(beats.beat.key))
    beats.store = store
    beats.stop("stopped")
    assert after.state == "running" and after.last_seen > first


def test_the_status_history_survives_an_unexpected_error():
    status = Failing(2, then=lambda: {"queue_depth": 0, "in_flight": 0, "workers": 0, "completed": 0})
    history = StatusHistory(status, every=0.01)
    history.start()
    wait_until(lambda: history.view()["samples"], 10, 0.01, "a sample after the errors")
    history.stop()
    assert status.calls >= 3


def test_keeping_a_batch_invisible_survives_an_unexpected_error():
    queue = open_queue(f"memory://{uuid.uuid4().hex}", "requests", create=True, visibility_timeout=0.2)
    queue.send({"n": 1})
    held = queue.receive(1)
    extend = Failing(1, then=queue.extend)
    queue.extend = extend
    with kept_invisible(queue, held):
        assert extend.succeeded.wait(10), "no extension after the first one failed"
        assert queue.receive(1) == []  # still invisible: it was extended
    assert extend.calls >= 2
