"""A damaged SQLite queue file: the service says so in one line, where, and what to run;
`imgrec queue salvage` keeps the damaged file and saves what it can read; the jobs whose
messages were lost are found by their inputs in the store and sent again, so every
accepted job is still answered."""

from __future__ import annotations

import sqlite3
import subprocess

import httpx
import pytest

from images import photo_variants
from imgrec.lab.harness import IMGREC, ServiceProcess, WebPart, service_env, wait_until

JOBS = 240


def _accept_jobs(tmp_path, model_dir) -> list[dict]:
    """JOBS async jobs accepted by a web tier with no worker: their messages wait in the file."""
    env = service_env(tmp_path, model_dir)
    web = WebPart(tmp_path / "web.log", env)
    try:
        files = [("file", (n, d, "image/jpeg")) for n, d in photo_variants(60).items()]
        jobs = []
        for _ in range(JOBS // 60):
            r = httpx.post(web.url + "/api/v1/jobs", files=files, timeout=60)
            assert r.status_code == 202, r.text
            jobs += r.json()["jobs"]
    finally:
        web.stop()
    with sqlite3.connect(tmp_path / "queue.sqlite3") as db:  # everything in the main file, none in its log
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return jobs


def _damage_the_middle(path) -> None:
    data = bytearray(path.read_bytes())
    page = 4096
    middle = (len(data) // page // 2) * page
    data[middle + 16 : middle + page] = b"\xa5" * (page - 16)
    path.write_bytes(bytes(data))


def _damage_the_header(path) -> None:
    data = bytearray(path.read_bytes())
    data[:100] = b"\x00" * 100
    path.write_bytes(bytes(data))


def _imgrec(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([IMGREC, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("damage", [_damage_the_middle, _damage_the_header])
def test_a_damaged_queue_file_is_one_line_then_salvaged_and_every_job_answered(tmp_path, model_dir, damage):
    jobs = _accept_jobs(tmp_path, model_dir)
    queue_file = tmp_path / "queue.sqlite3"
    damage(queue_file)
    env = service_env(tmp_path, model_dir, visibility_timeout=2)

    up = _imgrec(env, "up", "--port", "0")
    assert up.returncode != 0
    said = [line for line in up.stderr.splitlines() + up.stdout.splitlines() if "damaged" in line]
    assert len(said) == 1 and str(queue_file) in said[0] and "imgrec queue salvage" in said[0], up.stderr + up.stdout
    assert "Traceback" not in up.stderr + up.stdout

    check = _imgrec(env, "queue", "check")
    assert check.returncode == 1 and "damaged" in check.stdout, check.stdout + check.stderr

    salvage = _imgrec(env, "queue", "salvage")
    assert salvage.returncode == 0, salvage.stderr
    assert "saved" in salvage.stdout and list(tmp_path.glob("queue.sqlite3.damaged-*"))
    assert _imgrec(env, "queue", "check").returncode == 0

    svc = ServiceProcess(tmp_path, model_dir, "--max-workers", "2", env={"IMGREC_VISIBILITY_TIMEOUT": "2"})
    try:
        def all_done() -> bool:
            return all(httpx.get(svc.url + j["url"], timeout=10).json()["status"] == "done" for j in jobs)

        wait_until(all_done, 240, 1.0, "every accepted job answered (the lost ones sent again)")
    finally:
        assert svc.stop() == 0
