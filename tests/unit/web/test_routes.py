"""Every route of the web tier, in-process, with the real model behind it."""

from __future__ import annotations

import csv
import io

import pytest

from images import chelsea, encode, png_bomb
from imgrec.messages import BATCHES, INPUTS, OUTPUTS, PENDING, input_prefix, output_key

CAT = ("cat.png", encode(chelsea().resize((400, 260)), "PNG"), "image/png")


def test_classic_answers_name_label_as_text(web):
    for field in ("myfile", "inputFile"):
        r = web.client.post("/", files={field: ("test_0.png", CAT[1], "image/png")})
        assert r.status_code == 200 and r.text == "test_0:tiger cat"
        assert r.headers["content-type"].startswith("text/plain") and r.headers["x-request-id"]


def test_classify_one_and_many(web):
    r = web.client.post("/api/v1/classify", files={"file": CAT})
    assert r.status_code == 200
    (result,) = r.json()["results"]
    assert result["label"] == "tiger cat" and len(result["top"]) == 5 and "batch_id" not in r.json()
    assert web.store.exists(output_key(result["job_id"]))
    assert list(web.store.keys(input_prefix(result["job_id"]))) == [input_prefix(result["job_id"]) + "cat.png"]
    r = web.client.post("/api/v1/classify", files=[("file", CAT), ("file", ("b.txt", b"text", "text/plain")), ("file", CAT)])
    body = r.json()
    assert r.status_code == 200 and [x.get("label") for x in body["results"]] == ["tiger cat", None, "tiger cat"]
    assert "not an image" in body["results"][1]["error"] and body["results"][1]["job_id"] is None
    csv_text = web.client.get(f"/api/v1/batches/{body['batch_id']}?format=csv").text
    assert [row["label"] for row in csv.DictReader(io.StringIO(csv_text))] == ["tiger cat", "", "tiger cat"]


def test_jobs_batches_and_their_states(web):
    r = web.client.post("/api/v1/jobs", files=[("file", CAT), ("file", ("e.png", b"", "image/png")), ("file", CAT)])
    assert r.status_code == 202
    body = r.json()
    assert [j["status"] for j in body["jobs"]] == ["queued", "rejected", "queued"]
    assert "empty" in body["jobs"][1]["error"]
    web.join()
    batch = web.client.get(body["batch_url"]).json()
    assert batch["status"] == "done"
    assert [x.get("label") for x in batch["results"]] == ["tiger cat", None, "tiger cat"]
    job = web.client.get(body["jobs"][0]["url"]).json()
    assert job["status"] == "done" and job["result"]["label"] == "tiger cat"


def test_a_running_batch_has_no_csv_yet(make_web):
    web = make_web(worker=False)
    r = web.client.post("/api/v1/jobs", files={"file": CAT})
    batch_url = r.json()["batch_url"]
    assert web.client.get(batch_url).json() | {"results": None} == {
        "status": "running", "batch_id": r.json()["batch_id"], "done": 0, "results": None
    }
    assert web.client.get(r.json()["jobs"][0]["url"]).json()["status"] == "queued"
    r = web.client.get(batch_url + "?format=csv")
    assert r.status_code == 409 and r.headers["retry-after"] == "1" and "not finished" in r.json()["detail"]


@pytest.mark.parametrize(
    "path, status, message",
    [
        ("/api/v1/jobs/" + "0" * 32, 404, "no such job"),
        ("/api/v1/jobs/..%2F..%2Fetc", 404, "Not Found"),
        ("/api/v1/jobs/" + "0" * 31 + "g", 404, "32 hexadecimal"),
        ("/api/v1/batches/nope", 404, "32 hexadecimal"),
        ("/api/v1/batches/" + "0" * 32, 404, "no such batch"),
        ("/api/v1/batches/" + "0" * 32 + "?format=xml", 400, "json or csv"),
    ],
)
def test_unknown_ids_and_bad_queries(web, path, status, message):
    r = web.client.get(path)
    assert r.status_code == status and message in r.json()["detail"]


@pytest.mark.parametrize(
    "files, status, message",
    [
        ({"myfile": ("empty.jpg", b"", "image/jpeg")}, 400, "empty"),
        ({"myfile": ("notes.jpg", b"hello, I am text" * 20, "image/jpeg")}, 422, "not an image"),
        ({"myfile": ("bomb.png", png_bomb(), "image/png")}, 422, "over the limit"),
        ({"wrongfield": ("a.jpg", b"x", "image/jpeg")}, 400, "'myfile'"),
        ({"myfile": ("a.ico", encode(chelsea().resize((64, 64)), "ICO"), "image/x-icon")}, 415, "unsupported"),
    ],
    ids=["empty", "text", "bomb", "missing-field", "ico"],
)
@pytest.mark.parametrize("endpoint", ["/", "/api/v1/classify", "/api/v1/jobs"])
def test_bad_uploads_get_a_4xx_that_says_why(web, endpoint, files, status, message):
    if endpoint != "/":
        files = {"file" if k == "myfile" else k: v for k, v in files.items()}
        message = message.replace("'myfile'", "'file'")
    r = web.client.post(endpoint, files=files)
    assert r.status_code == status
    assert message in (r.text if endpoint == "/" else r.json()["detail"])
    assert r.headers["content-type"].startswith("text/plain" if endpoint == "/" else "application/json")
    left = [k for prefix in (INPUTS, OUTPUTS, BATCHES) for k in web.store.keys(prefix)]
    assert left == [], "a refused upload leaves nothing behind"


def test_not_multipart_and_too_large(make_web):
    web = make_web(worker=False, max_upload_bytes=1000)
    r = web.client.post("/api/v1/classify", json={"file": "cat.jpg"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
    r = web.client.post("/", files={"myfile": CAT})
    assert r.status_code == 413 and r.text.startswith("upload too large") and r.headers["connection"] == "close"
    r = web.client.post("/api/v1/jobs", files={"file": CAT})
    assert r.status_code == 413 and "1,000 bytes" in r.json()["detail"]


def test_a_store_outage_is_503_with_retry_after(web):
    web.store.down = True
    for endpoint, field in (("/", "myfile"), ("/api/v1/classify", "file"), ("/api/v1/jobs", "file")):
        r = web.client.post(endpoint, files={field: CAT})
        assert r.status_code == 503 and r.headers["retry-after"] == "2" and "retry" in r.text
    assert web.client.get("/readyz").status_code == 503
    assert web.client.get("/api/v1/jobs/" + "0" * 32).status_code == 503
    web.store.down = False
    web.clock.advance(1.0)  # readiness is looked at once a second
    assert web.client.get("/readyz").status_code == 200
    assert web.client.post("/", files={"myfile": CAT}).text == "cat:tiger cat"


def test_a_failed_upload_leaves_no_pending_record(make_web, monkeypatch):
    """The input and its pending record are written side by side; when the input's write
    or the queue's send fails, the client gets 503 and housekeeping finds no record from
    which to send the request after all."""
    from imgrec.errors import BackendUnavailable

    web = make_web(worker=False)
    put = web.store.inner.put

    def inputs_fail(key, data, content_type="application/octet-stream"):
        if key.startswith(INPUTS):
            raise BackendUnavailable("store: [Errno 5] Input/output error (simulated)")
        put(key, data, content_type)

    monkeypatch.setattr(web.store.inner, "put", inputs_fail)
    monkeypatch.setattr(web.store.inner, "put_file", lambda key, f, ct="": inputs_fail(key, f.read(), ct))
    assert web.client.post("/api/v1/jobs", files={"file": CAT}).status_code == 503
    assert list(web.store.keys(PENDING)) == []
    monkeypatch.setattr(web.store.inner, "put", put)
    monkeypatch.delattr(web.store.inner, "put_file")
    queue = web.client.app.state.parts.requests

    def refused(*_):
        raise BackendUnavailable("queue: connection refused (simulated)")

    monkeypatch.setattr(queue, "send", refused)
    monkeypatch.setattr(queue, "send_many", refused)
    assert web.client.post("/api/v1/jobs", files={"file": CAT}).status_code == 503
    assert list(web.store.keys(PENDING)) == []
    assert list(web.store.keys(INPUTS)), "the input was written (retention sweeps it)"


def test_overload_is_429(make_web):
    web = make_web(worker=False, max_backlog=2)
    for _ in range(2):
        assert web.client.post("/api/v1/jobs", files={"file": CAT}).status_code == 202
    web.clock.advance(0.3)  # the backlog is looked at every quarter second
    for endpoint, field in (("/", "myfile"), ("/api/v1/classify", "file"), ("/api/v1/jobs", "file")):
        r = web.client.post(endpoint, files={field: CAT})
        assert r.status_code == 429 and r.headers["retry-after"] == "2" and "busy" in r.text
    assert web.client.get("/api/v1/status").json()["queue_depth"] == 2, "what was accepted is kept"


def test_no_worker_in_time_is_504(make_web):
    web = make_web(worker=False, request_timeout=0.3)
    r = web.client.post("/", files={"myfile": CAT})
    assert r.status_code == 504 and "timed out" in r.text
    r = web.client.post("/api/v1/classify", files={"file": CAT})
    assert r.status_code == 504 and "timed out" in r.json()["detail"]


def test_api_keys(make_web):
    web = make_web(api_keys="k1, k2")
    r = web.client.post("/", files={"myfile": CAT})
    assert r.status_code == 401 and "API key" in r.text and r.headers["www-authenticate"] == "Bearer"
    assert web.client.get("/api/v1/status").status_code == 401
    assert web.client.get("/api/v1/status", headers={"X-API-Key": "wrong"}).status_code == 401
    assert web.client.get("/api/v1/status", headers={"Authorization": "Bearer k2"}).status_code == 200
    assert web.client.post("/", files={"myfile": CAT}, headers={"X-API-Key": "k1"}).text == "cat:tiger cat"
    assert web.client.get("/healthz").status_code == web.client.get("/").status_code == 200
    assert web.client.head("/healthz").status_code == web.client.head("/").status_code == 200  # monitors


def test_operations(web):
    assert web.client.get("/healthz").json() == {"ok": True}
    web.client.post("/", files={"myfile": CAT})
    status = web.client.get("/api/v1/status").json()
    assert set(status) >= {"queue_depth", "in_flight", "workers", "dead_letter", "completed", "batch_sizes"}
    metrics = web.client.get("/metrics").text
    for name in ("imgrec_http_requests_total", "imgrec_queue_depth", "imgrec_workers", "imgrec_batch_size_bucket",
                 "imgrec_web_stage_seconds", "imgrec_replies_total"):
        assert name in metrics
    page = web.client.get("/")
    assert "text/html" in page.headers["content-type"] and "/static/app.js" in page.text
    assert "/api/v1/jobs" in web.client.get("/static/app.js").text


def test_a_bug_is_a_logged_500_with_a_request_id(web, monkeypatch, caplog):
    from imgrec import jobs

    def broken(*args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(jobs, "status", broken)
    r = web.client.get("/api/v1/jobs/" + "0" * 32)
    request_id = r.headers["x-request-id"]
    assert r.status_code == 500 and request_id in r.json()["detail"]
    assert "unavailable" not in r.text, "a bug does not pass for an outage"
    assert any(request_id in rec.getMessage() and rec.exc_info for rec in caplog.records)


def test_limits_docs_and_favicon(make_web):
    web = make_web(worker=False, api_keys="k1")
    limits = web.client.get("/api/v1/limits").json()  # open: the page asks it before it has a key
    assert limits["max_files_per_request"] == 100 and limits["max_upload_bytes"] == 20 * 2**20
    assert limits["api_key_required"] is True and "JPEG" in limits["formats"]
    schema = web.client.get("/openapi.json").json()
    assert {"APIKeyHeader", "HTTPBearer"} <= set(schema["components"]["securitySchemes"])
    jobs = schema["paths"]["/api/v1/jobs"]["post"]["responses"]
    assert {"202", "400", "413", "415", "422", "429", "503"} <= set(jobs)
    docs = web.client.get("/docs").text
    assert "/docs/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    assert web.client.get("/docs/swagger-ui-bundle.js").status_code == 200
    assert web.client.get("/favicon.ico").headers["content-type"].startswith("image/svg+xml")
    assert web.client.get("/static/app.js").status_code == 200
    assert web.client.get("/static/..%2Fsettings.py").status_code == 404
    assert web.client.get("/static/nothing.js").status_code == 404
    assert web.client.get("/api/v1/status").status_code == 401, "the API itself still needs the key"


def test_when_every_file_is_refused_each_says_why(web):
    files = [("file", ("a.png", b"", "image/png")), ("file", ("b.txt", b"text", "text/plain"))]
    r = web.client.post("/api/v1/jobs", files=files)
    assert r.status_code == 400
    assert [(f["filename"], f["status"]) for f in r.json()["files"]] == [("a.png", 400), ("b.txt", 422)]
    assert "empty" in r.json()["files"][0]["error"] and "not an image" in r.json()["files"][1]["error"]


@pytest.mark.parametrize("path", ["/", "/api/v1/classify", "/api/v1/jobs"])
def test_a_bug_in_an_upload_route_is_a_logged_500_with_a_request_id(make_web, monkeypatch, caplog, path):
    """The upload routes are called straight (web.hot), not by FastAPI: a bug in one is
    still answered as every other route's, in its route's format, and logged."""
    from imgrec.web.intake import Intake

    async def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    web = make_web(worker=False)
    monkeypatch.setattr(Intake, "take", broken)
    field = "myfile" if path == "/" else "file"
    r = web.client.post(path, files={field: CAT})
    request_id = r.headers["x-request-id"]
    assert r.status_code == 500 and request_id in r.text
    assert r.headers["content-type"].startswith("text/plain" if path == "/" else "application/json")
    assert any(request_id in rec.getMessage() and rec.exc_info for rec in caplog.records)
