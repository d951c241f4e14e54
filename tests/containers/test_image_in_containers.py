"""The image as it runs: `init`, two `web`, an `autoscaler` (running one worker in its own
container, as compose runs it) and a `worker` container (as Kubernetes runs one), over a
Redis and an S3 server (moto) on this machine, every container on the host's network
bound to loopback. A few hundred real photographs go through both web replicas, some
waited for (`POST /`), some as async jobs read back from the other replica; a worker
container and a web container are killed (SIGKILL) mid-run and Docker restarts them;
every image must be answered with the label the classifier gives here. Then each
role's health check, a hung worker's (SIGSTOP) included."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from dockerhost import Container, run_once, timed
from images import photo_variants
from imgrec.lab.harness import free_port, wait_until
from imgrec.settings import Settings

pytestmark = pytest.mark.timeout(2400)  # the first run makes the base image and builds everything

N_WAITED, N_ASYNC, PER_ASYNC = 200, 100, 5  # images: POST / one each; /api/v1/jobs five a request
CLIENTS = 12
KILL_WORKER_AT, KILL_WEB_AT = 0.2, 0.4  # shares of the images answered
VISIBILITY = 10  # seconds: a killed worker's messages come back this soon (default 30)
REQUEST_TIMEOUT = 600  # seconds a waited request may wait (default 120): the machine is shared, at times overloaded


class Load:
    """Clients that send each upload to one replica and, when it fails (refused, reset,
    503), to the other, as a load balancer would; and that count what they saw."""

    def __init__(self, urls: list[str], total: int) -> None:
        self.urls, self.total = urls, total
        self.lock = threading.Lock()
        self.labels: dict[str, str] = {}  # image -> label answered
        self.jobs: dict[str, str] = {}  # async job id -> image
        self.answered_by = [0, 0]  # images answered (or accepted, for async) by each replica
        self.failovers = 0
        self.answered = threading.Condition(self.lock)

    def post(self, client: httpx.Client, first: int, path: str, files: list) -> tuple[int, httpx.Response]:
        for attempt in range(40):
            replica = (first + attempt) % 2
            try:
                r = client.post(self.urls[replica] + path, files=files)
            except httpx.TransportError:
                r = None
            if r is not None and r.status_code not in (429, 502, 503):
                return replica, r
            with self.lock:
                self.failovers += 1
            time.sleep(0.25 if r is None else min(2.0, float(r.headers.get("retry-after", 1))))
        raise AssertionError(f"{path}: no replica took it in 40 attempts")

    def waited(self, i: int, name: str, data: bytes) -> None:
        with httpx.Client(timeout=REQUEST_TIMEOUT + 10) as client:
            replica, r = self.post(client, i % 2, "/", [("myfile", (name, data, "image/jpeg"))])
        assert r.status_code == 200, (name, r.status_code, r.text)
        stem, label = r.text.split(":", 1)
        assert stem == name.rsplit(".", 1)[0]
        self._answer(replica, {name: label})

    def submitted(self, i: int, batch: dict[str, bytes]) -> None:
        with httpx.Client(timeout=REQUEST_TIMEOUT + 10) as client:
            replica, r = self.post(client, i % 2, "/api/v1/jobs", [("file", (n, d, "image/jpeg")) for n, d in batch.items()])
        assert r.status_code == 202, (r.status_code, r.text)
        with self.lock:
            self.jobs.update({j["job_id"]: j["filename"] for j in r.json()["jobs"]})
            self.answered_by[replica] += len(batch)

    def collect(self, i: int, job: str) -> None:
        """An async job's result, from whichever replica answers (the other first)."""

        def done() -> dict | None:
            for replica in ((i + 1) % 2, i % 2):
                try:
                    state = httpx.get(f"{self.urls[replica]}/api/v1/jobs/{job}", timeout=10).json()
                except (httpx.TransportError, ValueError):
                    continue
                return state if state["status"] in ("done", "failed") else None
            return None

        state = wait_until(done, REQUEST_TIMEOUT, interval=0.2, what=f"job {job}")
        assert state["status"] == "done", state
        self._answer(None, {self.jobs[job]: state["result"]["label"]})

    def _answer(self, replica: int | None, labels: dict[str, str]) -> None:
        with self.answered:
            self.labels.update(labels)
            if replica is not None:
                self.answered_by[replica] += len(labels)
            self.answered.notify_all()

    def wait_for(self, share: float, timeout: float = REQUEST_TIMEOUT) -> int:
        with self.answered:
            assert self.answered.wait_for(lambda: len(self.labels) >= share * self.total, timeout)
            return len(self.labels)


@pytest.fixture
def deployment(image, redis_server, moto_server, tmp_path):
    """The backends' settings, and the containers started (removed at the end, their
    logs kept in tmp_path)."""
    tag = uuid.uuid4().hex[:8]
    env = {
        "IMGREC_STORE": f"s3://imgrec-ct-{tag}/run",
        "IMGREC_QUEUE": f"{redis_server.url}?prefix=ct{tag}",
        **moto_server.env,
        "AWS_REGION": "us-east-1",
        "IMGREC_HOST": "127.0.0.1",  # the host's network: listen on loopback only
        "IMGREC_VISIBILITY_TIMEOUT": str(VISIBILITY),
        "IMGREC_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT),
    }
    started: list[Container] = []

    def start(role: str, *args: str, **more: str) -> Container:
        started.append(Container(f"imgrec-ct-{tag}-{role}", {**env, **more}, *args))
        return started[-1]

    yield env, start
    for c in started:
        (tmp_path / f"{c.name}.log").write_text(c.logs())
        c.remove()
    print(f"the containers' logs: {tmp_path}")


def test_every_role_in_its_own_container_through_kills(deployment, classifier):
    env, start = deployment
    with timed("init, then 2 web, an autoscaler and a worker up and healthy"):
        init = run_once(env, "init")
        assert init.returncode == 0, init.stdout + init.stderr
        ports = wait_until(lambda: (ps := [free_port(), free_port()])[0] != ps[1] and ps, 10, what="two free ports")
        webs = [start(f"web{i}", "web", IMGREC_PORT=str(port)) for i, port in enumerate(ports)]
        autoscaler = start("autoscaler", "autoscaler", "--max-workers", "1")
        worker = start("worker", "worker")
        for c in [*webs, autoscaler, worker]:
            c.wait_healthy(300)  # each by its own role's check (the image's one HEALTHCHECK)

    variants = photo_variants(N_WAITED + N_ASYNC)
    names = list(variants)
    expected = {n: r.label for n, r in zip(names, classifier.classify(list(variants.values())), strict=True)}
    load = Load([f"http://127.0.0.1:{p}" for p in ports], len(names))
    waited, batches = names[:N_WAITED], [names[i : i + PER_ASYNC] for i in range(N_WAITED, len(names), PER_ASYNC)]
    kills: dict[str, tuple[int, int]] = {}  # container -> (its pid, images answered when it was killed)

    def killer() -> None:
        for share, victim in ((KILL_WORKER_AT, worker), (KILL_WEB_AT, webs[0])):
            answered = load.wait_for(share)
            kills[victim.name] = (victim.signal(signal.SIGKILL), answered)

    with ThreadPoolExecutor(CLIENTS) as pool, timed(f"{len(names)} images, a worker and a web container killed") as step:
        started = time.monotonic()
        kill = pool.submit(killer)
        sent = [pool.submit(load.waited, i, n, variants[n]) for i, n in enumerate(waited)]
        sent += [pool.submit(load.submitted, i, {n: variants[n] for n in b}) for i, b in enumerate(batches)]
        for f in sent:
            f.result()
        for f in [pool.submit(load.collect, i, job) for i, job in enumerate(list(load.jobs))]:
            f.result()
        kill.result()
        seconds = time.monotonic() - started
        wrong = {n: (load.labels.get(n), expected[n]) for n in names if load.labels.get(n) != expected[n]}
        step.note = (f"{len(load.labels)} answered, {len(wrong)} wrong or missing; by replica {load.answered_by}, "
                     f"{load.failovers} failovers; killed when {sorted(a for _, a in kills.values())} were answered")
    print(f"{len(names)} images in {seconds:.1f} s: {step.note}; killed (pid, answered then): {kills}")
    assert wrong == {}
    assert min(load.answered_by) > 0, "both replicas took uploads"
    assert all(0 < answered < len(names) for _, answered in kills.values()), "killed mid-run"
    # Docker restarted each, as it would any process that died; both are healthy again.
    with timed("the killed containers restarted by Docker, every container healthy"):
        for c in (worker, webs[0]):
            c.wait_healthy(180, also=lambda c=c: c.restarts >= 1)
        for c in (autoscaler, webs[1]):
            c.wait_healthy(180)


def test_a_hung_worker_container_is_unhealthy_and_well_again_once_its_loop_turns(deployment):
    env, start = deployment
    assert run_once(env, "init").returncode == 0
    worker = start("worker", "worker")
    worker.wait_healthy(300)
    said = worker.exec("imgrec", "health")
    assert said.returncode == 0 and "the worker's loop went round" in said.stdout
    with timed("a hung worker (SIGSTOP) seen unhealthy by Docker, then healthy again"):
        worker.signal(signal.SIGSTOP)  # hung: its loop turns no more
        try:
            hung_since = int(time.time() - Settings(visibility_timeout=VISIBILITY).hung_after - 1)  # as if long ago
            assert worker.exec("touch", "-d", f"@{hung_since}", "/tmp/imgrec-alive").returncode == 0
            said = worker.exec("imgrec", "health")
            assert said.returncode == 1 and "hung past" in said.stderr, said
            wait_until(lambda: worker.health == "unhealthy", 60, interval=0.5, what="Docker to see the worker unhealthy")
        finally:
            worker.signal(signal.SIGCONT)
        worker.wait_healthy(180)
    # What a Kubernetes liveness probe runs (deploy/kubernetes/base/worker.yaml), here too.
    assert worker.exec("imgrec", "health", "worker").returncode == 0
