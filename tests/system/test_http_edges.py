"""HTTP edges on real sockets against the web tier as it runs (httptools, uvicorn): a
transfer coding in any case gets every limit, and hostile files cost the web tier a
bounded price, so that a normal upload beside them is answered."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from images import chelsea, encode, gif_with_comment, jpeg_with_markers
from imgrec.lab.harness import WebPart, service_env

CAT = encode(chelsea().resize((400, 260)), "PNG")


@pytest.fixture(scope="module")
def web(tmp_path_factory, model_dir):
    """`imgrec web` alone: nothing answers the jobs, which is all these tests need."""
    data = tmp_path_factory.mktemp("edges")
    env = service_env(data, model_dir, upload_deadline=4, min_upload_rate=1000)  # the default upload limit: 20 MiB
    part = WebPart(data / "web.log", env)
    yield part
    assert part.stop() == 0, part.log.read_text()


def _multipart_head(boundary: bytes = b"b", name: bytes = b"x.png") -> bytes:
    return (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="' + name
            + b'"\r\nContent-Type: image/png\r\n\r\n')


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _exchange(port: int, head: bytes, chunks, pause: float = 0.0) -> bytes:
    """Send the request line and headers, then `chunks` (stopping when the server answers
    or closes); what came back."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head)
        for c in chunks:
            try:
                s.sendall(c)
            except OSError:
                break
            if pause:
                time.sleep(pause)
        s.settimeout(30)
        reply = b""
        try:
            while part := s.recv(65536):
                reply += part
                if b"\r\n\r\n" in reply and (b"content-length: 0" in reply.lower() or reply.endswith(b"}")):
                    break
        except OSError:
            pass
        return reply


@pytest.mark.parametrize("coding", [b"chunked", b"Chunked", b"CHUNKED", b"cHuNkEd"])
def test_a_chunked_body_past_the_limit_is_413_in_any_spelling(web, coding):
    head = (b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Transfer-Encoding: " + coding + b"\r\n\r\n")
    megabyte = b"\0" * 2**20
    body = [_chunk(_multipart_head())] + [_chunk(megabyte)] * 40 + [b"0\r\n\r\n"]  # 40 MiB
    reply = _exchange(web.port, head, body)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]


@pytest.mark.parametrize("coding", [b"chunked", b"Chunked"])
def test_a_chunked_body_trickled_is_408_in_any_spelling(web, coding):
    head = (b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Transfer-Encoding: " + coding + b"\r\n\r\n")
    started = time.monotonic()
    reply = _exchange(web.port, head, [_chunk(_multipart_head())] + [_chunk(b"x")] * 60, pause=0.25)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert time.monotonic() - started < 14, "cut at its deadline (4 s of waiting, then the rate)"


@pytest.mark.parametrize("ctype", [b"Multipart/Form-Data; boundary=b", b"MULTIPART/FORM-DATA; BOUNDARY=b"])
def test_multipart_in_any_case_is_taken(web, ctype):
    body = _multipart_head() + CAT + b"\r\n--b--\r\n"
    head = (b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: " + ctype + b"\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n")
    reply = _exchange(web.port, head, [body])
    assert reply.startswith(b"HTTP/1.1 202"), reply[:300]


def _rss_mb(pid: int) -> float:
    fields = open(f"/proc/{pid}/status").read()
    return int(fields.split("VmRSS:")[1].split()[0]) / 1024


def test_metadata_floods_cost_the_web_tier_little_and_delay_no_one(web):
    """Four 19 MB hostile files at once (five million empty JPEG markers; a GIF comment in
    one-byte blocks) are refused, the web tier's memory does not follow their metadata,
    and a normal upload sent meanwhile is accepted."""
    hostile = [("markers.jpg", jpeg_with_markers(0xE1, 5_000_000)), ("comment.gif", gif_with_comment(19 << 20, 1))] * 2
    before = _rss_mb(web.proc.pid)
    answers: list[httpx.Response] = []

    def send(name: str, data: bytes) -> None:
        with httpx.Client(timeout=120) as client:
            answers.append(client.post(web.url + "/api/v1/jobs", files={"file": (name, data, "image/jpeg")}))

    assert all(len(d) < 20 * 2**20 for _, d in hostile), "within the upload limit: the header check must refuse them"
    threads = [threading.Thread(target=send, args=h) for h in hostile]
    for t in threads:
        t.start()
    normal = httpx.post(web.url + "/api/v1/jobs", files={"file": ("cat.png", CAT, "image/png")}, timeout=60)
    for t in threads:
        t.join(120)
    assert normal.status_code == 202, normal.text
    assert [a.status_code for a in answers] == [422] * 4, [a.text for a in answers]
    assert all("too much before its pixels" in a.json()["detail"] for a in answers)
    assert _rss_mb(web.proc.pid) - before < 200, "the web tier grew with the hostile files' metadata"
