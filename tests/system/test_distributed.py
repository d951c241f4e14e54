"""Across machines: Redis Streams + S3-compatible storage, several web replicas and workers.

Each part runs as its own process, as it would on its own host, and they meet
only through Redis and the bucket (moto's S3 here, since AWS is out of reach).
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from pathlib import Path

import httpx
import pytest

from images import photo_variants
from imgrec.lab.harness import IMGREC, Part, ServiceProcess, WebPart, wait_until
from imgrec.messages import INPUTS, OUTPUTS, REPLY_QUEUE_PREFIX
from imgrec.stores import open_store


@pytest.fixture(scope="module")
def backends(redis_server, moto_server, model_dir, tmp_path_factory):
    tag = uuid.uuid4().hex[:10]
    env = {
        **os.environ,
        **moto_server.env,
        "IMGREC_QUEUE": f"{redis_server.url}?prefix=e2e{tag}",
        "IMGREC_STORE": f"s3://imgrec-{tag}/run1",
        "IMGREC_MODEL_DIR": str(model_dir),
        "IMGREC_DATA_DIR": str(tmp_path_factory.mktemp("distributed")),
    }
    return env


def _replies(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics").text
    return {m[0]: float(m[1]) for m in re.findall(r'imgrec_replies_total\{source="(\w+)"\} (\S+)', text)}


def test_two_replicas_two_workers_every_request_answered_by_its_replica(backends, classifier, tmp_path):
    import subprocess

    subprocess.run([IMGREC, "init"], env=backends, check=True, capture_output=True)
    webs = [WebPart(tmp_path / f"web{i}.log", backends) for i in range(2)]
    workers = [Part(tmp_path / f"worker{i}.log", backends, "worker", "--idle-timeout", "300") for i in range(2)]
    urls = [w.url for w in webs]
    try:
        variants = photo_variants(40)
        expected = {n: r.label for n, r in zip(variants, classifier.classify(list(variants.values())), strict=False)}
        names = list(variants)

        async def send_all():
            async with httpx.AsyncClient(timeout=120) as client:
                return await asyncio.gather(*(
                    client.post(urls[i % 2] + "/", files={"myfile": (n, variants[n], "image/jpeg")})
                    for i, n in enumerate(names)
                ))

        answers = asyncio.run(send_all())
        assert [a.status_code for a in answers] == [200] * len(names)
        assert [a.text for a in answers] == [f"{n.rsplit('.', 1)[0]}:{expected[n]}" for n in names]
        # Each replica got exactly its own replies through its own queue; none was
        # stolen by the other and none had to be recovered from the store.
        for url in urls:
            assert _replies(url) == {"queue": len(names) / 2}
        # Inputs and outputs are in the bucket.
        bucket = open_store(backends["IMGREC_STORE"])
        assert len(list(bucket.keys(INPUTS))) == len(names)
        assert len(list(bucket.keys(OUTPUTS))) == len(names)
        # The async API works from any replica: submit to one, read from the other.
        r = httpx.post(urls[0] + "/api/v1/jobs", files={"file": (names[0], variants[names[0]], "image/jpeg")})
        job = r.json()["jobs"][0]["job_id"]
        done = wait_until(
            lambda: (s := httpx.get(f"{urls[1]}/api/v1/jobs/{job}").json())["status"] == "done" and s, 60
        )
        assert done["result"]["label"] == expected[names[0]]
        assert httpx.get(urls[1] + "/api/v1/status").json()["workers"] == 2
    finally:
        for part in webs + workers:
            part.stop()
    # A stopped replica removes its reply queue.
    import redis

    client = redis.Redis.from_url(backends["IMGREC_QUEUE"].split("?")[0])
    prefix = backends["IMGREC_QUEUE"].split("prefix=")[1]
    assert not [k for k in client.keys(f"{prefix}:{REPLY_QUEUE_PREFIX}*")]


def test_up_on_redis_and_s3(backends, tmp_path):
    env = {**backends, "IMGREC_STORE": backends["IMGREC_STORE"].replace("run1", "run2")}
    svc = ServiceProcess(tmp_path / "up", Path(env["IMGREC_MODEL_DIR"]),
                         "--max-workers", "1", "--scale-in-delay", "5", env=env)
    try:
        from images import chelsea, encode

        r = httpx.post(svc.url + "/", files={"myfile": ("cat.png", encode(chelsea(), "PNG"), "image/png")}, timeout=60)
        assert r.status_code == 200 and r.text == "cat:tiger cat"
        (key,) = svc.store.keys(OUTPUTS)
        assert list(svc.store.keys(INPUTS))[0].endswith("/cat.png")
    finally:
        assert svc.stop() == 0
