"""The whole service started with `imgrec up`: real model, real images, real processes."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import socket
import time

import httpx
import pytest

from images import chelsea, encode, photo_variants
from imgrec.lab.harness import ServiceProcess, wait_until
from imgrec.messages import INPUTS, batch_key, input_prefix, output_key


@pytest.fixture(scope="module")
def service(tmp_path_factory, model_dir):
    svc = ServiceProcess(tmp_path_factory.mktemp("svc"), model_dir, "--max-workers", "2", "--scale-in-delay", "5")
    yield svc
    assert svc.stop() == 0, svc.log.read_text()


@pytest.fixture(scope="module")
def variants():
    return photo_variants(100)


@pytest.fixture(scope="module")
def expected(classifier, variants):
    return {name: r.label for name, r in zip(variants, classifier.classify(list(variants.values())), strict=False)}


async def _post_all(url: str, files: dict[str, bytes], field: str) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        return await asyncio.gather(
            *(client.post(url, files={field: (name, data, "image/jpeg")}) for name, data in files.items())
        )


@pytest.mark.parametrize("field", ["myfile", "inputFile"])
def test_classic_100_concurrent_clients(service, variants, expected, field):
    responses = asyncio.run(_post_all(service.url + "/", variants, field))
    assert [r.status_code for r in responses] == [200] * 100, [r.text for r in responses if r.status_code != 200]
    answers = [r.text for r in responses]
    assert answers == [f"{name.rsplit('.', 1)[0]}:{expected[name]}" for name in variants]
    assert all(r.headers["content-type"].startswith("text/plain") for r in responses)


def test_json_api_multi_image_batch(service, variants, expected):
    names = list(variants)[:7]
    files = [("file", (n, variants[n], "image/jpeg")) for n in names]
    r = httpx.post(service.url + "/api/v1/classify", files=files, timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["filename"] for x in body["results"]] == names
    assert [x["label"] for x in body["results"]] == [expected[n] for n in names]
    first = body["results"][0]
    assert set(first) >= {"job_id", "filename", "label", "class_index", "wnid", "score", "top"}
    assert len(first["top"]) == 5 and first["top"][0]["label"] == first["label"]
    # Persisted: each input and output, and the merged results file of the batch.
    for x in body["results"]:
        out = json.loads(service.store.get(output_key(x["job_id"])))
        assert out["label"] == x["label"] and out["model"].startswith("efficientnet-lite0@")
        assert list(service.store.keys(input_prefix(x["job_id"]))) == [input_prefix(x["job_id"]) + x["filename"]]
    merged = json.loads(service.store.get(batch_key(body["batch_id"], "results.json")))
    assert [x["label"] for x in merged["results"]] == [expected[n] for n in names]
    c = httpx.get(f"{service.url}/api/v1/batches/{body['batch_id']}?format=csv")
    rows = list(csv.DictReader(io.StringIO(c.text)))
    assert c.status_code == 200 and [row["filename"] for row in rows] == names
    assert [row["label"] for row in rows] == [expected[n] for n in names]


def test_async_jobs(service, variants, expected):
    names = list(variants)[10:15]
    files = [("file", (n, variants[n], "image/jpeg")) for n in names]
    r = httpx.post(service.url + "/api/v1/jobs", files=files, timeout=30)
    assert r.status_code == 202, r.text
    body = r.json()
    assert [j["status"] for j in body["jobs"]] == ["queued"] * 5

    def all_done():
        states = [httpx.get(service.url + j["url"]).json() for j in body["jobs"]]
        return states if all(s["status"] == "done" for s in states) else None

    states = wait_until(all_done, 60, 0.2, "async jobs")
    assert [s["result"]["label"] for s in states] == [expected[n] for n in names]
    batch = httpx.get(service.url + body["batch_url"]).json()
    assert batch["status"] == "done" and [x["filename"] for x in batch["results"]] == names


def test_operations_endpoints(service):
    assert httpx.get(service.url + "/healthz").json() == {"ok": True}
    assert httpx.get(service.url + "/readyz").status_code == 200
    status = service.status()
    assert set(status) >= {"queue_depth", "in_flight", "workers", "dead_letter", "completed"}
    metrics = httpx.get(service.url + "/metrics").text
    for name in ("imgrec_http_requests_total", "imgrec_queue_depth", "imgrec_workers", "imgrec_batch_size_bucket"):
        assert name in metrics
    page = httpx.get(service.url + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for path in ("/", "/healthz", "/readyz"):  # monitors (and `curl -I`) ask with HEAD
        head = httpx.head(service.url + path)
        assert head.status_code == 200 and head.content == b"", (path, head.status_code)
    assert "/static/app.js" in page.text and "drop" in page.text.lower()


# --- bad input: a clear 4xx, nothing stored or queued, never a 5xx ---------------------


def _store_keys(service) -> set[str]:
    return set(service.store.keys(INPUTS))


def test_truncated_jpeg_gets_an_error_result(service):
    data = encode(chelsea(), "JPEG")
    r = httpx.post(service.url + "/", files={"myfile": ("half.jpg", data[: len(data) // 2], "image/jpeg")}, timeout=60)
    assert r.status_code == 422 and r.text.startswith("half: the image could not be decoded")


def test_a_client_still_sending_its_body_reads_the_413(service):
    """Closing with unread bytes would reset the connection and lose the answer; the
    server half-closes and drops the rest instead: a client that sends 8 MB of a body
    announced at 60 MB before it reads anything still gets the 413, then the end."""
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as s:
        s.sendall(b"POST /api/v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                  b"Content-Length: 62914560\r\n\r\n")
        for _ in range(128):
            s.sendall(b"\0" * 65536)
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413") and b"upload too large" in reply, reply[:200]


def test_oversized_upload_is_refused_without_reading_it_all(service):
    """Announce 60 MB, send 64 KB: the answer is 413 at once, and the service goes on."""
    host, port = "127.0.0.1", service.port
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 62914560\r\n\r\n" + b"\0" * 65536
        )
        started = time.monotonic()
        reply = b""
        while chunk := s.recv(4096):  # the server closes the connection after its answer
            reply += chunk
        reply = reply.decode(errors="replace")
    assert reply.startswith("HTTP/1.1 413"), reply
    assert "upload too large" in reply and time.monotonic() - started < 10
    # Chunked, with no length announced: counted as it arrives.
    def chunks():
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n\r\n'
        for _ in range(40):
            yield b"\0" * (1024 * 1024)

    try:
        r = httpx.post(service.url + "/api/v1/classify", content=chunks(),
                       headers={"content-type": "multipart/form-data; boundary=b"}, timeout=30)
        assert r.status_code == 413
    except httpx.WriteError:
        pass  # the server closed the connection after answering 413: also fine
    ok = httpx.post(service.url + "/", files={"myfile": ("cat.png", encode(chelsea(), "PNG"), "image/png")}, timeout=60)
    assert ok.status_code == 200 and ok.text == "cat:tiger cat"


@pytest.mark.parametrize(
    "filename, stored",
    [
        ("../../../etc/evil.png", "evil.png"),
        ("..\\..\\windows\\evil.png", "evil.png"),
        ("/abs/path/x.png", "x.png"),
        ("nul\x00byte.png", None),
        ("ünïcödé 猫.png", None),
        ("a" * 500 + ".png", None),
        ("..", "upload"),
    ],
)
def test_hostile_file_names_stay_in_the_store(service, filename, stored):
    data = encode(chelsea().resize((300, 200)), "PNG")
    r = httpx.post(service.url + "/api/v1/classify", files={"file": (filename, data, "image/png")}, timeout=60)
    assert r.status_code == 200, r.text
    job = r.json()["results"][0]["job_id"]
    (key,) = service.store.keys(input_prefix(job))
    name = key.rsplit("/", 1)[1]
    assert len(name) <= 100 and "/" not in name and "\0" not in name and not name.startswith(".")
    if stored:
        assert name == stored
    root = service.data_dir.resolve()
    outside = [p for p in root.parent.rglob("*evil*") if root not in p.parents]
    assert not outside


def test_load_check_command(tmp_path):
    """`imgrec bench load` as CI runs it (the full 2,000 is a benchmark): 0 lost, 0 5xx, 0 wrong."""
    import subprocess
    import sys
    from pathlib import Path

    from images import write_folder

    folder = write_folder(tmp_path / "images", photo_variants(50))
    imgrec = str(Path(sys.executable).parent / "imgrec")
    out = subprocess.run(
        [imgrec, "bench", "load", str(folder), "--requests", "300", "--concurrency", "100"],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "300 passed, 0 failed" in out.stdout
    assert '"lost": 0' in out.stdout and '"server_errors": 0' in out.stdout
