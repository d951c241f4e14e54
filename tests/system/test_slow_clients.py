"""Slow clients, on real sockets: trickled uploads and trickled headers hold no slot of
the service, are cut at their deadline, and one address cannot take every connection."""

from __future__ import annotations

import socket
import statistics
import threading
import time

import httpx
import pytest

from images import chelsea, encode
from imgrec.lab.cpu import tree_cpu
from imgrec.lab.harness import IMGREC, ServiceProcess, WebPart, service_env

CAT = ("cat.png", encode(chelsea().resize((400, 260)), "PNG"), "image/png")
HEAD = (
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n"
    b'--b\r\nContent-Disposition: form-data; name="myfile"; filename="slow.png"\r\n\r\n'
)


@pytest.fixture(scope="module")
def service(tmp_path_factory, model_dir):
    svc = ServiceProcess(
        tmp_path_factory.mktemp("slow"), model_dir, "--min-workers", "1", "--max-workers", "1",
        env={"IMGREC_MIN_UPLOAD_RATE": "2000", "IMGREC_HEADER_TIMEOUT": "3", "IMGREC_MAX_UPLOADS_PER_CLIENT": "150",
             "IMGREC_KEEP_ALIVE": "6"},
    )
    yield svc
    assert svc.stop() == 0, svc.log.read_text()


class Trickler:
    """Connections that send `first` at once, then one more byte every `every` seconds,
    until the server answers or closes; what each got back is kept."""

    def __init__(self, port: int, count: int, first: bytes, every: float = 1.0, source: str = "127.0.0.1") -> None:
        self.socks, self.replies, self.closed_after = [], [b""] * count, [None] * count
        self.started = time.monotonic()
        for _ in range(count):
            s = socket.socket()
            s.bind((source, 0))
            s.connect(("127.0.0.1", port))
            s.sendall(first)
            s.setblocking(False)
            self.socks.append(s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.wait(every) and any(c is None for c in self.closed_after):
            for i, s in enumerate(self.socks):
                if self.closed_after[i] is not None:
                    continue
                try:
                    while chunk := s.recv(4096):
                        self.replies[i] += chunk
                    self.closed_after[i] = time.monotonic() - self.started  # orderly close
                except BlockingIOError:
                    try:
                        s.send(b"x")
                    except OSError:
                        self.closed_after[i] = time.monotonic() - self.started
                except OSError:
                    self.closed_after[i] = time.monotonic() - self.started

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for s in self.socks:
            s.close()


def _upload_seconds(url: str) -> float:
    started = time.monotonic()
    r = httpx.post(url + "/", files={"myfile": CAT}, timeout=30)
    assert r.status_code == 200 and r.text == "cat:tiger cat", r.text
    return time.monotonic() - started


def test_a_hundred_trickled_uploads_do_not_delay_a_normal_one(service):
    before = statistics.median(_upload_seconds(service.url) for _ in range(5))
    slow = Trickler(service.port, 100, HEAD + b"\x89PNG")
    try:
        time.sleep(1.0)  # they are all in, sending a byte a second
        during = [_upload_seconds(service.url) for _ in range(5)]
        assert max(during) < before + 1.0, (before, during)
        # Below 2,000 bytes/s after the first 5 s, each is cut with 408 (well before 20 s).
        deadline = time.monotonic() + 20
        while any(c is None for c in slow.closed_after) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        slow.stop()
    assert all(c is not None and c < 15 for c in slow.closed_after), slow.closed_after
    assert all(r.startswith(b"HTTP/1.1 408") and b"too slowly" in r for r in slow.replies), slow.replies[:3]
    assert _upload_seconds(service.url) < before + 1.0


def test_trickled_headers_are_cut_at_their_deadline(service):
    slow = Trickler(service.port, 20, b"POST / HTTP/1.1\r\nHost: x\r\n")
    silent = [socket.create_connection(("127.0.0.1", service.port)) for _ in range(20)]  # send nothing at all
    try:
        deadline = time.monotonic() + 10
        while any(c is None for c in slow.closed_after) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert all(c is not None and c < 6 for c in slow.closed_after), slow.closed_after
        assert all(r.startswith(b"HTTP/1.1 408") for r in slow.replies)
        for s in silent:
            s.settimeout(5)
            assert s.recv(100).startswith(b"HTTP/1.1 408"), "a silent connection is closed too"
    finally:
        slow.stop()
        for s in silent:
            s.close()


def _web_rss_kb(service) -> int:
    (web,) = [pid for pid, (role, _) in tree_cpu(service.proc.pid).items() if role == "web"]
    status = open(f"/proc/{web}/status").read()
    return int(status.split("VmRSS:")[1].split()[0])


def test_headers_past_the_size_limit_get_431_and_cost_no_memory(service):
    """httptools bounds nothing: 300 MB of headers once grew the web tier by 300 MB."""
    before = _web_rss_kb(service)
    with socket.create_connection(("127.0.0.1", service.port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        line = b"X-Filler: " + b"v" * 8000 + b"\r\n"
        sent = 0
        try:
            while sent < 300_000_000:
                s.sendall(line * 100)
                sent += len(line) * 100
        except OSError:  # closed after the lingering answer: fine, the answer is what counts
            pass
        s.settimeout(10)
        reply = s.recv(300)
    assert reply.startswith(b"HTTP/1.1 431"), reply
    assert b"over 65,536 bytes" in reply
    assert _web_rss_kb(service) - before < 50_000, "the refused headers were not held"
    # Large but legal headers still pass, on an upload too.
    r = httpx.post(service.url + "/", files={"myfile": CAT}, headers={"X-Big": "v" * 30_000}, timeout=30)
    assert r.status_code == 200 and r.text == "cat:tiger cat", r.text


def test_one_address_cannot_take_every_connection(service):
    slow = Trickler(service.port, 150, HEAD)  # this address's whole allowance
    try:
        time.sleep(0.5)
        r = httpx.post(service.url + "/", files={"myfile": CAT}, timeout=30)
        assert r.status_code == 429 and "too many uploads at once" in r.text and r.headers["retry-after"]
        other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
        r = other.post(service.url + "/", files={"myfile": CAT}, timeout=30)
        assert r.status_code == 200 and r.text == "cat:tiger cat", "another client is served meanwhile"
    finally:
        slow.stop()


STATUS = b"GET /api/v1/limits HTTP/1.1\r\nHost: x\r\n\r\n"


def _answer(s: socket.socket) -> bytes:
    """One whole answer (this endpoint's: a JSON body with a content-length)."""
    got = b""
    while b"\r\n\r\n" not in got or len(got.partition(b"\r\n\r\n")[2]) < _length(got):
        chunk = s.recv(65536)
        assert chunk, f"closed mid-answer: {got!r}"
        got += chunk
    return got


def _length(got: bytes) -> int:
    for line in got.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def test_an_idle_kept_connection_lasts_the_keep_alive_then_closes_quietly(service):
    # A client reuses a pooled connection until its own idle expiry (httpx: 5 s). Should
    # the server close first, a request sent at that moment meets a closed connection and
    # fails: so the server keeps idle connections longer (IMGREC_KEEP_ALIVE, 6 s here),
    # and the header deadline (3 s here) starts only at a request's first byte.
    with socket.create_connection(("127.0.0.1", service.port)) as s:
        s.settimeout(10)
        s.sendall(STATUS)
        assert _answer(s).startswith(b"HTTP/1.1 200")
        time.sleep(4.5)  # past the header deadline, within the keep-alive
        s.sendall(STATUS)
        assert _answer(s).startswith(b"HTTP/1.1 200"), "the idle connection was still open"
        idle = time.monotonic()
        assert s.recv(100) == b"", "closed when idle past the keep-alive, with no answer written"
        assert 5 < time.monotonic() - idle < 9


def test_a_request_trickled_on_a_kept_connection_is_cut_at_the_header_deadline(service):
    with socket.create_connection(("127.0.0.1", service.port)) as s:
        s.settimeout(10)
        s.sendall(STATUS)
        assert _answer(s).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        s.sendall(b"GET /api/v1/limits HTTP/1.1\r\n")  # and nothing more
        assert s.recv(100).startswith(b"HTTP/1.1 408")
        assert time.monotonic() - started < 4.5


def test_idle_connections_past_the_soft_open_files_limit_do_not_lock_out_a_new_client(tmp_path, model_dir):
    # Started under a soft limit of 256 open files (the usual soft limit is 1024; the hard
    # one is much higher): the web tier takes the hard limit, so 600 clients idle on
    # their kept connections (for IMGREC_KEEP_ALIVE seconds) leave room for another.
    web = WebPart(tmp_path / "web.log", service_env(tmp_path / "data", model_dir), program=_limited(tmp_path, "-S -n 256"))
    idle = []
    try:
        _idle_clients(web.port, 600, idle)
        assert httpx.get(web.url + "/api/v1/limits", timeout=10).status_code == 200
    finally:
        for s in idle:
            s.close()
        web.stop()


def test_idle_connections_past_the_hard_open_files_limit_are_closed_oldest_first(tmp_path, model_dir):
    # Under a hard limit of 300 open files, 600 clients each make a request and then keep
    # their connection idle: without shedding, the 300th or so found its connection reset
    # and the replica's own heartbeat failed ("Too many open files"). The idle longest
    # are closed to make room, so every client is answered and a new one still is.
    svc = WebPart(tmp_path / "up.log", service_env(tmp_path / "data", model_dir), "--max-workers", "1", command="up",
                  program=_limited(tmp_path, "-n 300"))
    idle = []
    try:
        _idle_clients(svc.port, 600, idle)
        r = httpx.post(svc.url + "/", files={"myfile": CAT}, timeout=60)
        assert r.status_code == 200 and r.text == "cat:tiger cat", r.text
        closed = sum(1 for s in idle[:100] if _closed_by_server(s))
        assert closed == 100, "the oldest idle connections were the ones closed"
        log = svc.log.read_text()
        assert "Too many open files" not in log and "closed the" in log
    finally:
        for s in idle:
            s.close()
        assert svc.stop() == 0



def test_connections_trickling_headers_past_the_open_files_limit_are_closed_oldest_first(tmp_path, model_dir):
    """Each is cut at the header deadline anyway, but 600 opened within it would use up a
    limit of 300 open files first."""
    svc = WebPart(tmp_path / "up.log", service_env(tmp_path / "data", model_dir), "--max-workers", "1", command="up",
                  program=_limited(tmp_path, "-n 300"))
    trickling = []
    try:
        for _ in range(600):
            s = socket.create_connection(("127.0.0.1", svc.port), timeout=10)
            trickling.append(s)
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        r = httpx.post(svc.url + "/", files={"myfile": CAT}, timeout=60)
        assert r.status_code == 200 and r.text == "cat:tiger cat", r.text
        assert all(_closed_by_server(s) for s in trickling[:100]), "the oldest were the ones closed"
        assert "Too many open files" not in svc.log.read_text()
    finally:
        for s in trickling:
            s.close()
        assert svc.stop() == 0

def _closed_by_server(s: socket.socket) -> bool:
    s.settimeout(2)
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, TimeoutError):
        return False


def _limited(tmp_path, ulimit: str) -> str:
    """`imgrec` started under `ulimit <ulimit>` (open files)."""
    wrapper = tmp_path / "limited-imgrec"
    wrapper.write_text(f'#!/bin/sh\nulimit {ulimit}\nexec "{IMGREC}" "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def _idle_clients(port: int, count: int, into: list[socket.socket]) -> None:
    """`count` connections, each answered once and then left idle (kept alive)."""
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        into.append(s)
        s.sendall(STATUS)
        assert _answer(s).startswith(b"HTTP/1.1 200")
