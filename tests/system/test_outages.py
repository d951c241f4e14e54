"""A backend outage under a backlog never fails a good job, on every pair of adapters.

The store fails (a full disk for the local store, S3's server cut off) or the queue
fails (Redis or SQS cut off) while `imgrec up` works through a backlog, with a
dead-letter threshold so tight that a single counted redelivery would show: when
the backend is back, every job is done with its right label and nothing was
dead-lettered. Cut-offs go through a TCP proxy, so the server keeps its state, as
a real outage of the network or of the server's host would.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import httpx
import pytest

from images import photo_variants
from imgrec.lab.harness import ServiceProcess, wait_until
from servers import SmallDisk, TcpProxy

JOBS, ROUNDS = 10, 3  # 30 jobs; the worker is paused while the outage starts, so it meets a backlog
OUTAGE_SECONDS = 3.0


@pytest.fixture(scope="module")
def variants():
    return photo_variants(JOBS)


@pytest.fixture(scope="module")
def expected(classifier, variants):
    return {name: r.label for name, r in zip(variants, classifier.classify(list(variants.values())), strict=True)}


def _queue(kind: str, request, moto_endpoint: str) -> tuple[dict, TcpProxy | None]:
    tag = uuid.uuid4().hex[:10]
    if kind == "sqlite":
        return {}, None
    if kind == "redis":
        server = request.getfixturevalue("redis_server")
        proxy = TcpProxy(("127.0.0.1", server.port))
        return {"IMGREC_QUEUE": f"redis://127.0.0.1:{proxy.port}/0?prefix=o{tag}"}, proxy
    proxy = TcpProxy(("127.0.0.1", int(moto_endpoint.rsplit(":", 1)[1])))
    return {"IMGREC_QUEUE": f"sqs://o{tag}", "AWS_ENDPOINT_URL_SQS": f"http://127.0.0.1:{proxy.port}"}, proxy


def _store(kind: str, request, moto_endpoint: str):
    """(environment, break_it, heal_it) for the store."""
    if kind == "local":
        disk = SmallDisk(request.getfixturevalue("tmp_path") / "disk", size_mb=16)
        request.addfinalizer(disk.unmount)
        return {"IMGREC_STORE": (disk.path / "store").as_uri()}, disk.fill, disk.free
    proxy = TcpProxy(("127.0.0.1", int(moto_endpoint.rsplit(":", 1)[1])))
    env = {"IMGREC_STORE": f"s3://o{uuid.uuid4().hex[:10]}/run", "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{proxy.port}"}
    return env, proxy.stop, proxy.start


@pytest.fixture
def start(request, tmp_path, model_dir):
    """Starts `imgrec up` with the given environment; stops it whatever the test's end."""

    def start_service(env: dict) -> ServiceProcess:
        svc = ServiceProcess(
            tmp_path / "svc", model_dir, "--max-workers", "1", "--scale-in-delay", "30",
            env={**env, "IMGREC_VISIBILITY_TIMEOUT": "3", "IMGREC_MAX_RECEIVES": "2", "IMGREC_MAX_BATCH": "4"},
        )
        request.addfinalizer(svc.stop)
        return svc

    return start_service


def _run_through_an_outage(svc: ServiceProcess, variants, expected, break_it, heal_it) -> ServiceProcess:
    files = [("file", (n, d, "image/jpeg")) for n, d in variants.items()]

    def post() -> list[dict]:
        r = httpx.post(svc.url + "/api/v1/jobs", files=files, timeout=60)
        assert r.status_code == 202, r.text
        return r.json()["jobs"]

    jobs = post()
    wait_until(lambda: httpx.get(svc.url + jobs[0]["url"]).json()["status"] == "done", 60, 0.02, "the first result")
    # The worker is warm. Pause it while the rest of the backlog is queued and the
    # backend is cut, so the outage meets a backlog however fast this machine is.
    workers = svc.worker_pids()
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        for _ in range(ROUNDS - 1):
            jobs += post()
        break_it()
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
    time.sleep(OUTAGE_SECONDS)
    heal_it()

    def states():
        try:
            answers = [httpx.get(svc.url + j["url"], timeout=10) for j in jobs]
        except httpx.HTTPError:
            return None
        if any(a.status_code != 200 for a in answers):
            return None  # 503 while a backend catches up
        found = [a.json() for a in answers]
        return found if all(s["status"] in ("done", "failed") for s in found) else None

    final = wait_until(states, 120, 0.5, "every job to finish")
    failed = [s for s in final if s["status"] != "done"]
    assert failed == [], failed
    assert [s["result"]["label"] for s in final] == [expected[j["filename"]] for j in jobs]
    assert svc.status()["dead_letter"] == 0
    return svc


@pytest.mark.parametrize("store_kind", ["local", "s3"])
@pytest.mark.parametrize("queue_kind", ["sqlite", "redis", "sqs"])
def test_a_store_outage_fails_no_good_job(request, start, moto_server, variants, expected, queue_kind, store_kind):
    queue_env, _ = _queue(queue_kind, request, moto_server.endpoint)
    store_env, break_it, heal_it = _store(store_kind, request, moto_server.endpoint)
    svc = start({**moto_server.env, **queue_env, **store_env})
    _run_through_an_outage(svc, variants, expected, break_it, heal_it)
    log = svc.log.read_text()
    assert "taking no work until the store answers again" in log and "given up" not in log
    assert svc.stop() == 0


@pytest.mark.parametrize("queue_kind", ["redis", "sqs"])
def test_a_queue_outage_fails_no_good_job(request, start, moto_server, variants, expected, queue_kind):
    queue_env, proxy = _queue(queue_kind, request, moto_server.endpoint)
    svc = start({**moto_server.env, **queue_env})
    _run_through_an_outage(svc, variants, expected, proxy.stop, proxy.start)
    assert svc.stop() == 0


def _stalling(kind: str, request, moto_endpoint: str) -> tuple[dict, TcpProxy]:
    """The environment for a backend behind a proxy that can freeze it: it stalls, it does not fail."""
    if kind in ("redis", "sqs"):
        return _queue(kind, request, moto_endpoint)
    proxy = TcpProxy(("127.0.0.1", int(moto_endpoint.rsplit(":", 1)[1])))
    env = {"IMGREC_STORE": f"s3://o{uuid.uuid4().hex[:10]}/run", "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{proxy.port}"}
    return env, proxy


@pytest.mark.parametrize("kind", ["s3", "redis", "sqs"])
def test_a_backend_that_stalls_is_an_outage_not_a_hang(request, start, moto_server, variants, expected, kind):
    """The backend freezes (connections open, no byte answered) under a backlog: uploads get
    a prompt 503 and /readyz answers within a second, every call being bounded by
    IMGREC_BACKEND_TIMEOUT (2 s here); thawed, every job is done and none failed."""
    env, proxy = _stalling(kind, request, moto_server.endpoint)
    svc = start({**moto_server.env, **env, "IMGREC_BACKEND_TIMEOUT": "2"})
    files = [("file", (n, d, "image/jpeg")) for n, d in variants.items()]
    jobs = httpx.post(svc.url + "/api/v1/jobs", files=files, timeout=60).json()["jobs"]
    proxy.freeze()
    try:
        for _ in range(2):
            started = time.monotonic()
            upload = httpx.post(svc.url + "/api/v1/jobs", files=files[:2], timeout=30)
            took = time.monotonic() - started
            assert upload.status_code == 503 and took < 10, (upload.status_code, took)
            started = time.monotonic()
            ready = httpx.get(svc.url + "/readyz", timeout=30)
            took = time.monotonic() - started
            assert ready.status_code == 503 and took < 1.5, (ready.text, took)
    finally:
        proxy.thaw()
    wait_until(lambda: httpx.get(svc.url + "/readyz", timeout=10).status_code == 200, 60, 0.5, "ready again")

    def states():
        answers = [httpx.get(svc.url + j["url"], timeout=10) for j in jobs]
        found = [a.json() for a in answers if a.status_code == 200]
        return found if len(found) == len(jobs) and all(s["status"] in ("done", "failed") for s in found) else None

    final = wait_until(states, 120, 0.5, "every job to finish")
    assert [s["result"]["label"] for s in final] == [expected[j["filename"]] for j in jobs]
    assert svc.status()["dead_letter"] == 0
    assert svc.stop() == 0
