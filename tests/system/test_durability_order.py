"""Group commit kept the order the Guarantees name, seen in the system calls themselves.

The web tier and a worker run under `strace -f -y` (every thread, each descriptor shown
with its path). For every job a 202 accepted, single and multi-file: its input's bytes
were flushed, renamed into place and its folders flushed, and its request was written
to the queue's log and that log flushed, all before the first byte of the answer left
the web tier. For every job a worker answered: from the moment it read the input until
its result's folder was flushed, the worker wrote nothing to the queue (an ack is a
write), and it wrote to the queue after (the ack).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

from imgrec.lab.harness import IMGREC, free_port, service_env, wait_until
from imgrec.messages import REQUEST_QUEUE
from imgrec.queues import open_queue
from imgrec.settings import Settings
from imgrec.supervisor import answers
from servers import _missing

STRACE = shutil.which("strace")

CALLS = "trace=openat,write,writev,pwrite64,sendto,sendmsg,fsync,fdatasync,rename,renameat,renameat2"
# pid, then the call and its first argument (a descriptor shown as 12</its/path>), or a
# resumed call's name
_LINE = re.compile(r"^(\d+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\((.*))")
_FD = re.compile(r"^(\d+)<([^>]*)>")


def _traced(log: Path, env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [STRACE, "-f", "-y", "-s", "65536", "-e", CALLS, "-o", str(log), IMGREC, *args],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


class Trace:
    """One strace log: each call with the index where it started and where it returned."""

    def __init__(self, path: Path) -> None:
        self.calls: list[dict] = []  # name, arg (the raw text), fd path, pid, start, end
        open_by_pid: dict[tuple[str, str], dict] = {}
        for i, line in enumerate(path.read_text(errors="replace").splitlines()):
            m = _LINE.match(line)
            if not m:
                continue
            pid, resumed, name, rest = m.groups()
            if resumed:
                call = open_by_pid.pop((pid, resumed), None)
                if call is not None:
                    call["end"] = i
                continue
            fd = _FD.match(rest)
            call = {"name": name, "arg": rest, "path": fd.group(2) if fd else "", "pid": pid, "start": i, "end": i}
            if rest.rstrip().endswith("<unfinished ...>"):
                open_by_pid[(pid, name)] = call
            self.calls.append(call)

    def done(self, names: tuple[str, ...], path_pred) -> list[dict]:
        return [c for c in self.calls if c["name"] in names and path_pred(c["path"])]


SYNCS = ("fsync", "fdatasync")
SOCKET_WRITES = ("write", "writev", "sendto", "sendmsg")


def _post_jobs(url: str, files: list[tuple[str, bytes]]) -> list[str]:
    boundary = "b0undary"
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode() + data + b"\r\n"
        for name, data in files
    ) + f"--{boundary}--\r\n".encode()
    req = urllib.request.Request(
        url + "/api/v1/jobs", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.status == 202
        return [j["job_id"] for j in json.loads(resp.read())["jobs"]]


def _check_accepted_before_answered(trace: Trace, job: str) -> None:
    socket_writes = [c for c in trace.calls if c["name"] in SOCKET_WRITES and c["path"].startswith(("TCP", "socket"))]
    body = next(c for c in socket_writes if job in c["arg"])
    header = max((c for c in socket_writes if c["start"] <= body["start"] and "HTTP/1.1 202" in c["arg"]),
                 key=lambda c: c["start"])
    answered = header["start"]

    def before(what: str, calls: list[dict]) -> dict:
        finished = [c for c in calls if c["end"] < answered]
        assert finished, f"job {job}: {what} not done before the answer (line {answered})"
        return finished[-1]

    before("input's bytes flushed", trace.done(SYNCS, lambda p: f"/inputs/{job}/.tmp-" in p))
    renamed = before("input renamed into place", [
        c for c in trace.calls if c["name"].startswith("rename") and f"/inputs/{job}/" in c["arg"].split(",")[-2]
    ])
    folder = before("input's folder flushed", trace.done(SYNCS, lambda p: p.endswith(f"/inputs/{job}")))
    assert folder["start"] > renamed["end"], f"job {job}: its folder was flushed before the rename"
    before("the inputs folder flushed", trace.done(SYNCS, lambda p: p.endswith("/inputs")))
    wal_writes = trace.done(("pwrite64", "write"), lambda p: p.endswith("queue.sqlite3-wal"))
    logged = before("its request written to the queue's log", [c for c in wal_writes if job in c["arg"]])
    synced = before("the queue's log flushed", trace.done(SYNCS, lambda p: p.endswith("queue.sqlite3-wal")))
    assert synced["start"] > logged["end"], f"job {job}: the queue's log was flushed before its request was written"


def _check_acked_after_flushed(trace: Trace, job: str) -> None:
    read = next(c for c in trace.calls if c["name"] == "openat" and f"/inputs/{job}/" in c["arg"] and ".tmp-" not in c["arg"])
    renamed = next(c for c in trace.calls if c["name"].startswith("rename") and f"/outputs/{job}.json" in c["arg"])
    flushed = next(c for c in trace.done(SYNCS, lambda p: p.endswith("/outputs")) if c["start"] > renamed["end"])
    queue_writes = trace.done(("pwrite64", "write"), lambda p: "queue.sqlite3" in p)
    early = [c for c in queue_writes if read["start"] < c["start"] < flushed["end"]]
    assert not early, f"job {job}: the worker wrote to the queue before its result was durable: {early[0]['arg'][:120]}"
    assert any(c["start"] > flushed["end"] for c in queue_writes), f"job {job}: never acked after its result"


def test_answers_follow_the_flushes_the_guarantees_name(tmp_path, model_dir, photo_bytes):
    if STRACE is None:
        _missing("strace", "is not installed (make test-system-packages)")
    env = service_env(tmp_path / "data", model_dir, access_log=0)
    web_log, worker_log = tmp_path / "web.strace", tmp_path / "worker.strace"
    port = free_port()
    web = _traced(web_log, env, "web", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    worker = None
    try:
        wait_until(lambda: answers(url), 90, what="the traced web tier")
        photos = [(f"{i}-{name}", data) for i, (name, data) in enumerate(list(photo_bytes.items()) * 4)]
        single = _post_jobs(url, photos[:1])
        several = _post_jobs(url, photos[1:4])
        jobs = single + several
        assert len(jobs) == 4
        trace = Trace(web_log)
        for job in jobs:
            _check_accepted_before_answered(trace, job)

        worker = _traced(worker_log, env, "worker")
        outputs = tmp_path / "data" / "store" / "outputs"
        wait_until(lambda: all((outputs / f"{j}.json").exists() for j in jobs), 120, what="the worker's results")
        queue = open_queue(Settings(data_dir=tmp_path / "data").queue_url, REQUEST_QUEUE)
        wait_until(lambda: queue.stats().in_flight == 0 and queue.stats().depth == 0, 60, what="every request acked")
        queue.close()
        trace = Trace(worker_log)
        for job in jobs:
            _check_acked_after_flushed(trace, job)
    finally:
        for proc in (worker, web):
            if proc is not None:
                _stop_traced(proc)


def _stop_traced(tracer: subprocess.Popen) -> None:
    """SIGTERM to the traced process itself (strace, signalled, would only detach from
    it); strace ends with it."""
    children = Path(f"/proc/{tracer.pid}/task/{tracer.pid}/children")
    for pid in (children.read_text().split() if children.exists() else []):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGTERM)
    try:
        tracer.wait(60)
    except subprocess.TimeoutExpired:
        for pid in (children.read_text().split() if children.exists() else []):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        tracer.kill()
        tracer.wait(10)
