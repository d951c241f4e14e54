"""The web tier killed (SIGKILL) at random moments while uploads pour in, again and again:
every job it accepted (answered 202) is answered after the restarts, once, with the label
the model gives that image. Group commit answers a group only after its commit: a kill
in the middle of one loses uploads nobody was told were accepted, and nothing else."""

from __future__ import annotations

import io
import os
import random
import signal
import threading

import httpx

from images import photo_variants
from imgrec.lab.harness import Part, WebPart, service_env, wait_until
from imgrec.messages import OUTPUTS
from imgrec.settings import Settings
from imgrec.stores import open_store

KILLS = 24
CLIENTS = 4


class Uploaders:
    """CLIENTS threads uploading 1-3 images at a time to `url` until stopped, keeping the
    jobs answered 202 (a request cut by a kill promised nothing)."""

    def __init__(self, url: str, images: dict[str, bytes]) -> None:
        self.url, self.images = url, images
        self.accepted: dict[str, str] = {}  # job id -> file name
        self.unexpected: list[str] = []
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(CLIENTS)]
        for t in self._threads:
            t.start()

    def _run(self, seed: int) -> None:
        rng, names = random.Random(seed), list(self.images)
        with httpx.Client(timeout=30) as http:
            while not self._stop.is_set():
                picked = rng.sample(names, rng.choice([1, 1, 2, 3]))
                files = [("file", (n, io.BytesIO(self.images[n]), "image/jpeg")) for n in picked]
                try:
                    r = http.post(self.url + "/api/v1/jobs", files=files)
                except httpx.HTTPError:
                    continue
                if r.status_code == 202:
                    with self._lock:
                        self.accepted.update({j["job_id"]: j["filename"] for j in r.json()["jobs"] if j.get("job_id")})
                elif r.status_code not in (429, 503):  # "retry later" is fine; anything else is not
                    self.unexpected.append(f"{r.status_code} {r.text[:200]}")

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)


def test_jobs_accepted_before_any_of_many_web_kills_are_all_answered(tmp_path, model_dir, classifier):
    env = service_env(tmp_path, model_dir, access_log=0, max_batch=8)
    images = photo_variants(12)
    expected = {name: classifier.classify([data])[0].label for name, data in images.items()}
    web = WebPart(tmp_path / "web-0.log", env)
    url = web.url
    uploads = Uploaders(url, images)
    rng = random.Random(25)
    try:
        for kill in range(KILLS):
            before = len(uploads.accepted) + rng.randint(0, 6)
            wait_until(lambda before=before: len(uploads.accepted) > before, 60, 0.005, "uploads to flow")
            os.kill(web.proc.pid, signal.SIGKILL)
            web.proc.wait()
            web = WebPart(tmp_path / f"web-{kill + 1}.log", env, port=web.port)
        uploads.stop()
        assert uploads.unexpected == []
        assert len(uploads.accepted) > KILLS * 2
        worker = Part(tmp_path / "worker.log", env, "worker", "--idle-timeout", "60")
        try:
            def answered() -> bool:
                r = httpx.get(url + "/api/v1/status", timeout=10).json()
                return r["queue_depth"] == 0 and r["in_flight"] == 0

            wait_until(answered, 300, 0.5, "every accepted job to be answered")
            with httpx.Client(timeout=30) as http:
                for job, name in uploads.accepted.items():
                    body = http.get(f"{url}/api/v1/jobs/{job}").json()
                    assert body["status"] == "done", (job, name, body)
                    assert body["result"]["label"] == expected[name], (job, name, body)
            outputs = set(open_store(Settings(data_dir=tmp_path).store_url).keys(OUTPUTS))
            assert {f"{OUTPUTS}{job}.json" for job in uploads.accepted} <= outputs
        finally:
            worker.stop()
    finally:
        uploads.stop()
        web.stop()
