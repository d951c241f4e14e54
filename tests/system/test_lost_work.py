"""A queue that loses its data loses no accepted job; one that would is refused unless the
operator says otherwise; `imgrec gc` deletes what is past its retention."""

from __future__ import annotations

import os
import subprocess
import time

import httpx

from images import photo_variants
from imgrec.lab.harness import IMGREC, Part, WebPart, service_env, wait_until
from imgrec.messages import INPUTS, OUTPUTS, new_id, output_key
from imgrec.stores import open_store
from servers import RedisServer


def test_a_redis_that_keeps_nothing_is_refused_unless_allowed(tmp_path, model_dir):
    redis = RedisServer(tmp_path / "redis", volatile=True)
    try:
        env = service_env(tmp_path, model_dir, queue=redis.url)
        out = subprocess.run([IMGREC, "web"], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and "keeps nothing on disk" in out.stderr
        assert "IMGREC_ALLOW_VOLATILE_QUEUE=1" in out.stderr and "Traceback" not in out.stderr
        web = WebPart(tmp_path / "web.log", {**env, "IMGREC_ALLOW_VOLATILE_QUEUE": "1"})
        assert web.stop() == 0
    finally:
        redis.stop()


def test_jobs_the_queue_lost_are_sent_again(tmp_path, model_dir):
    """Accepted, then Redis restarts empty: housekeeping finds the jobs still pending in
    the store and sends them again, so none stays queued for ever."""
    redis = RedisServer(tmp_path / "redis", volatile=True)
    env = service_env(tmp_path, model_dir, queue=redis.url, allow_volatile_queue=1, visibility_timeout=2)
    web = WebPart(tmp_path / "web.log", env)
    scaler = None
    try:
        files = [("file", (n, d, "image/jpeg")) for n, d in photo_variants(12).items()]
        jobs = httpx.post(web.url + "/api/v1/jobs", files=files, timeout=60).json()["jobs"]
        redis.stop()
        redis = RedisServer(tmp_path / "redis", port=redis.port, volatile=True)  # back, empty
        scaler = Part(tmp_path / "autoscaler.log", env, "autoscaler", "--max-workers", "1")

        def all_done():
            try:
                return all(httpx.get(web.url + j["url"]).json()["status"] == "done" for j in jobs)
            except (httpx.HTTPError, ValueError):
                return False

        wait_until(all_done, 60, 0.5, "the lost jobs to be done")
        assert "sent again 12 accepted jobs" in scaler.log.read_text()
    finally:
        if scaler:
            scaler.stop()
        web.stop()
        redis.stop()


def test_gc_deletes_what_is_past_its_retention(tmp_path):
    store = open_store((tmp_path / "store").as_uri())
    old, new = new_id(time.time() - 3 * 86400), new_id()
    for job in (old, new):
        store.put(f"{INPUTS}{job}/cat.png", b"x")
        store.put(output_key(job), b"{}")
    past = time.time() - 3 * 86400
    for key in (f"{INPUTS}{old}/cat.png", output_key(old)):
        os.utime(tmp_path / "store" / key, (past, past))
    env = {**os.environ, "IMGREC_DATA_DIR": str(tmp_path)}
    out = subprocess.run([IMGREC, "gc", "--retention", "2d"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"deleted 1 objects under {INPUTS}" in out.stdout and f"deleted 1 objects under {OUTPUTS}" in out.stdout
    assert sorted(store.keys()) == sorted([f"{INPUTS}{new}/cat.png", output_key(new)])
    assert not (tmp_path / "store" / INPUTS / old).exists(), "the job's folder went with its last object"
