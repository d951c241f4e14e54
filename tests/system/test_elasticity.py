"""Workers go 0 -> N -> 0 with the load, and a killed worker's messages are answered."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
from pathlib import Path

import httpx
import pytest

from images import photo_variants
from imgrec.lab.harness import ServiceProcess, alive, wait_until

IDLE = 3


@pytest.fixture(scope="module")
def service(tmp_path_factory, model_dir):
    svc = ServiceProcess(
        tmp_path_factory.mktemp("elastic"), model_dir,
        "--min-workers", "0", "--max-workers", "2", "--scale-in-delay", str(IDLE),
        env={"IMGREC_TARGET_PER_WORKER": "4", "IMGREC_VISIBILITY_TIMEOUT": "3", "IMGREC_MAX_BATCH": "4",
             "IMGREC_SCALE_TO_ZERO_DELAY": str(IDLE)},
    )
    yield svc
    assert svc.stop() == 0, svc.log.read_text()


@pytest.fixture(scope="module")
def variants():
    return photo_variants(60)


def _submit(service, variants) -> list[dict]:
    files = [("file", (n, d, "image/jpeg")) for n, d in variants.items()]
    r = httpx.post(service.url + "/api/v1/jobs", files=files, timeout=60)
    assert r.status_code == 202, r.text
    return r.json()["jobs"]


def _all_done(service, submitted) -> bool:
    return all(httpx.get(service.url + j["url"]).json()["status"] == "done" for j in submitted)


def test_zero_to_many_to_zero(service, variants):
    wait_until(lambda: service.status()["workers"] == 0 and not service.worker_pids(), 30, what="idle at 0")
    submitted = _submit(service, variants)
    seen = set()

    def two_workers():
        seen.update(service.worker_pids())
        return len(service.worker_pids()) >= 2

    wait_until(two_workers, 60, what="more than one worker under load")
    for pid in service.worker_pids():  # an operator sees them in ps
        assert Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"imgrec worker")
    wait_until(lambda: _all_done(service, submitted), 120, 0.5, "all jobs done")
    wait_until(lambda: not service.worker_pids() and service.status()["workers"] == 0, IDLE + 30, 0.5, "back to 0")
    # The processes are gone, not only their heartbeats.
    wait_until(lambda: not any(alive(pid) for pid in seen), 10, what="worker processes to exit")


def test_killed_worker_is_replaced_and_its_messages_answered(service, variants, classifier):
    expected = {n: r.label for n, r in zip(variants, classifier.classify(list(variants.values())), strict=False)}
    answers: list[httpx.Response] = []

    async def post_all():
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=60)) as client:
            return await asyncio.gather(
                *(client.post(service.url + "/", files={"myfile": (n, d, "image/jpeg")}) for n, d in variants.items())
            )

    clients = threading.Thread(target=lambda: answers.extend(asyncio.run(post_all())))
    clients.start()
    wait_until(lambda: len(service.worker_pids()) == 2, 60, 0.05, "two workers under load")

    def both_frozen_holding_messages() -> list[int] | None:
        """Freeze both workers (nothing moves while they are stopped); with messages in
        flight, they hold them. Else they were between batches: let them go on, try again."""
        pids = service.worker_pids()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        if len(pids) == 2 and service.status()["in_flight"] > 0:
            return pids
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        return None

    victims = wait_until(both_frozen_holding_messages, 60, 0.1, "workers holding messages")
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    clients.join(180)
    assert not clients.is_alive()
    assert [r.status_code for r in answers] == [200] * len(variants)
    assert [r.text for r in answers] == [f"{n.rsplit('.', 1)[0]}:{expected[n]}" for n in variants]
    assert service.status()["dead_letter"] == 0
    # The victims held messages unacked when they were killed (checked above) and every
    # request was answered: those were delivered again (and answered from the store where
    # a result had been written before they froze).
    log = service.log.read_text()
    for pid in victims:
        assert re.search(rf"worker pid {pid} (died|exited)", log), "the autoscaler noticed and replaced it"


def test_requests_between_the_autoscalers_looks_keep_their_worker(service, variants):
    """A request every 1.5 s, each answered in milliseconds: most fall between two ticks of
    the autoscaler (every 0.25 s), which sees work only while it waits or is processed.
    The queue's time of its newest message shows them all, so the one worker stays up
    (the delay to zero is 3 s here), and goes 3 s after the last."""
    wait_until(lambda: service.status()["workers"] == 0 and not service.worker_pids(), 30, what="idle at 0")
    name, data = next(iter(variants.items()))
    seen: set[int] = set()
    with httpx.Client(timeout=60) as client:
        for _ in range(10):
            r = client.post(service.url + "/", files={"myfile": (name, data, "image/jpeg")})
            assert r.status_code == 200, r.text
            seen.update(service.worker_pids())
            for _ in range(6):  # 1.5 s, looking at the workers all along
                threading.Event().wait(0.25)
                seen.update(service.worker_pids())
    assert len(seen) == 1, f"the worker was stopped between requests and started again: {sorted(seen)}"
    wait_until(lambda: not service.worker_pids(), IDLE + 10, 0.25, "back to 0 after the last request")
