"""Never lose a request, never fall over: each failure made real, against real processes."""

from __future__ import annotations

import io
import os
import shutil
import time

import httpx
import numpy as np
from PIL import Image

from images import chelsea, encode, photo_variants
from imgrec.queue import open_queue
from imgrec.store import open_store
from servers import RedisServer
from service import Part, Service, free_port, wait_until


def _env(tmp_path, model_dir, **extra) -> dict[str, str]:
    return {
        **os.environ,
        "IMGREC_DATA_DIR": str(tmp_path),
        "IMGREC_MODEL_DIR": str(model_dir),
        **{f"IMGREC_{k.upper()}": str(v) for k, v in extra.items()},
    }


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _cat() -> tuple[str, bytes, str]:
    return ("cat.png", encode(chelsea().resize((400, 260)), "PNG"), "image/png")


def test_sigterm_worker_finishes_or_releases_and_exits_promptly(tmp_path, model_dir):
    env = _env(tmp_path, model_dir, max_batch=4)
    queue_url = f"sqlite://{tmp_path}/queue.sqlite3"
    store = open_store((tmp_path / "store").as_uri())
    queue = open_queue(queue_url, "requests", create=True)
    images = photo_variants(12)
    for i in range(200):
        job = f"{i:032x}"
        name = list(images)[i % 12]
        store.put(f"inputs/{job}/{name}", images[name])
        queue.send({"job_id": job, "input_key": f"inputs/{job}/{name}", "filename": name})
    worker = Part(tmp_path / "worker.log", env, "worker", "--idle-timeout", "60")
    wait_until(lambda: len(list(store.list("outputs/"))) >= 8, 60, 0.05, "the worker to be busy")
    stopped_at = time.monotonic()
    assert worker.stop() == 0, worker.log.read_text()
    assert time.monotonic() - stopped_at < 10, "a stopped worker exits within a bound"
    stats = queue.stats()
    done = len(list(store.list("outputs/")))
    assert stats.in_flight == 0, "nothing it held waits for a visibility timeout"
    assert done + stats.depth == 200 and 0 < done < 200


def test_web_restart_loses_no_async_job(tmp_path, model_dir):
    env = _env(tmp_path, model_dir)
    port = free_port()
    web = Part(tmp_path / "web1.log", {**env, "IMGREC_PORT": str(port)}, "web")
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _healthy(url), 60, what="web")
    images = photo_variants(20)
    r = httpx.post(url + "/api/v1/jobs", files=[("file", (n, d, "image/jpeg")) for n, d in images.items()], timeout=60)
    assert r.status_code == 202
    submitted = r.json()
    assert web.stop() == 0  # the web tier goes away with every job still queued
    worker = Part(tmp_path / "worker.log", env, "worker", "--idle-timeout", "60")
    web = Part(tmp_path / "web2.log", {**env, "IMGREC_PORT": str(port)}, "web")
    try:
        wait_until(lambda: _healthy(url), 60, what="web again")
        batch = wait_until(
            lambda: (b := httpx.get(url + submitted["batch_url"]).json())["status"] == "done" and b, 60, 0.3, "the batch"
        )
        assert [x["filename"] for x in batch["results"]] == list(images)
        assert all("label" in x for x in batch["results"])
        for job in submitted["jobs"]:
            assert httpx.get(url + job["url"]).json()["status"] == "done"
    finally:
        web.stop()
        worker.stop()


def test_redis_restart_gives_503_then_recovers_without_restarts(tmp_path, model_dir):
    redis = RedisServer(tmp_path / "redis")
    env = _env(tmp_path, model_dir, queue=redis.url)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    web = Part(tmp_path / "web.log", {**env, "IMGREC_PORT": str(port)}, "web")
    worker = Part(tmp_path / "worker.log", env, "worker", "--idle-timeout", "120")
    try:
        wait_until(lambda: _healthy(url), 60, what="web")
        assert httpx.post(url + "/", files={"myfile": _cat()}, timeout=60).text == "cat:tiger cat"
        redis.stop()
        started = time.monotonic()
        r = httpx.post(url + "/", files={"myfile": _cat()}, timeout=30)
        assert r.status_code == 503 and "retry" in r.text and r.headers["retry-after"] == "2"
        assert time.monotonic() - started < 10, "no hang"
        r = httpx.post(url + "/api/v1/classify", files={"file": _cat()}, timeout=30)
        assert r.status_code == 503 and r.json()["detail"]
        assert httpx.get(url + "/readyz", timeout=30).status_code == 503
        redis = RedisServer(tmp_path / "redis", port=redis.port)  # back, empty: it kept nothing

        def answered():
            r = httpx.post(url + "/", files={"myfile": _cat()}, timeout=60)
            return r.status_code == 200 and r.text == "cat:tiger cat"

        wait_until(answered, 60, 1.0, "the service to recover")
        assert worker.proc.poll() is None and web.proc.poll() is None, "recovered without a restart"
    finally:
        web.stop()
        worker.stop()
        redis.stop()


def test_store_not_writable_gives_503_then_recovers(tmp_path, model_dir):
    svc = Service(tmp_path / "svc", model_dir, "--max-workers", "1")
    try:
        inputs = tmp_path / "svc" / "store" / "inputs"
        inputs.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(inputs)
        inputs.write_text("not a directory: nothing can be written under inputs/")
        r = httpx.post(svc.url + "/", files={"myfile": _cat()}, timeout=30)
        assert r.status_code == 503 and r.headers["retry-after"]
        inputs.unlink()
        r = httpx.post(svc.url + "/", files={"myfile": _cat()}, timeout=60)
        assert r.status_code == 200 and r.text == "cat:tiger cat"
    finally:
        assert svc.stop() == 0


def _slow_png() -> bytes:
    """A valid 40-megapixel PNG of 130 KB: decoding it takes about a second here."""
    arr = np.zeros((6300, 6300, 3), np.uint8)
    arr[::7, :, 0] = 255
    arr[:, ::5, 1] = 255
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def test_poison_image_is_dead_lettered_and_answered_others_unaffected(tmp_path, model_dir):
    svc = Service(
        tmp_path / "svc", model_dir, "--max-workers", "1", "--idle-timeout", "30",
        env={"IMGREC_IMAGE_TIMEOUT": "0.3", "IMGREC_MAX_RECEIVES": "3", "IMGREC_VISIBILITY_TIMEOUT": "2"},
    )
    try:
        files = [("file", _cat()), ("file", ("poison.png", _slow_png(), "image/png")), ("file", _cat())]
        r = httpx.post(svc.url + "/api/v1/classify", files=files, timeout=120)
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert [x.get("label") for x in results] == ["tiger cat", None, "tiger cat"]
        assert "could not be processed" in results[1]["error"] and "3 attempts" in results[1]["error"]
        assert svc.status()["dead_letter"] == 0, "answered and removed from the dead-letter queue"
        log = svc.log.read_text()
        assert "over its time limit" in log and "dead-lettered after 3 attempts" in log
        # The service goes on.
        assert httpx.post(svc.url + "/", files={"myfile": _cat()}, timeout=60).text == "cat:tiger cat"
    finally:
        assert svc.stop() == 0


def test_overload_gets_429_and_keeps_what_it_accepted(tmp_path, model_dir):
    svc = Service(tmp_path / "svc", model_dir, "--max-workers", "0", env={"IMGREC_MAX_BACKLOG": "5"})
    try:
        accepted = []
        for _ in range(5):
            r = httpx.post(svc.url + "/api/v1/jobs", files={"file": _cat()}, timeout=30)
            assert r.status_code == 202
            accepted += [j["job_id"] for j in r.json()["jobs"]]
        time.sleep(0.3)  # the web tier looks at the backlog at most every 0.25 s
        for endpoint, field in [("/", "myfile"), ("/api/v1/classify", "file"), ("/api/v1/jobs", "file")]:
            r = httpx.post(svc.url + endpoint, files={field: _cat()}, timeout=30)
            assert r.status_code == 429 and r.headers["retry-after"] == "2", r.text
            assert "busy" in r.text
        assert svc.status()["queue_depth"] == 5
        for job in accepted:
            assert httpx.get(f"{svc.url}/api/v1/jobs/{job}").json()["status"] == "queued"
    finally:
        assert svc.stop() == 0


def test_api_keys(tmp_path, model_dir):
    svc = Service(tmp_path / "svc", model_dir, "--max-workers", "1", env={"IMGREC_API_KEYS": "k1, k2"})
    try:
        r = httpx.post(svc.url + "/", files={"myfile": _cat()}, timeout=30)
        assert r.status_code == 401 and "API key" in r.text
        assert httpx.get(svc.url + "/api/v1/status").status_code == 401
        assert httpx.get(svc.url + "/api/v1/status", headers={"X-API-Key": "wrong"}).status_code == 401
        assert httpx.get(svc.url + "/api/v1/status", headers={"Authorization": "Bearer k2"}).status_code == 200
        r = httpx.post(svc.url + "/", files={"myfile": _cat()}, headers={"X-API-Key": "k1"}, timeout=60)
        assert r.text == "cat:tiger cat"
        assert httpx.get(svc.url + "/healthz").status_code == 200
        assert httpx.get(svc.url + "/").status_code == 200  # the page, which asks for the key
    finally:
        assert svc.stop() == 0


def test_warns_when_exposed_without_keys(tmp_path, model_dir):
    svc = Service(tmp_path / "svc", model_dir, "--host", "0.0.0.0", "--max-workers", "0")
    try:
        assert "without API keys" in svc.log.read_text()
    finally:
        svc.stop()
