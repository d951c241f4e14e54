"""The web tier's bounds, in-process: the backlog limit counted per file and atomically,
label values of /metrics from fixed sets, readiness that means uploads work, a 504
that says where the results will be, and CSV cells that cannot become formulas."""

from __future__ import annotations

import csv
import io
import re
import time
from concurrent.futures import ThreadPoolExecutor

from images import chelsea, encode

CAT = ("cat.png", encode(chelsea().resize((400, 260)), "PNG"), "image/png")
TINY = encode(chelsea().resize((40, 30)), "PNG")


def test_the_backlog_limit_holds_for_concurrent_many_file_requests(make_web):
    web = make_web(worker=False, max_backlog=100)
    files = [("file", (f"{i}.png", TINY, "image/png")) for i in range(100)]
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: web.client.post("/api/v1/jobs", files=files), range(12)))
    accepted = [a for a in answers if a.status_code == 202]
    refused = [a for a in answers if a.status_code == 429]
    assert len(accepted) == 1 and len(refused) == 11, [a.status_code for a in answers]
    assert all(a.headers["retry-after"] == "2" for a in refused)
    web.clock.advance(0.3)
    assert web.client.get("/api/v1/status").json()["queue_depth"] == 100
    assert web.client.post("/api/v1/jobs", files=[("file", ("one.png", TINY, "image/png"))]).status_code == 429


def test_a_request_that_would_pass_the_limit_is_refused_whole(make_web):
    web = make_web(worker=False, max_backlog=10)
    files = [("file", (f"{i}.png", TINY, "image/png")) for i in range(6)]
    assert web.client.post("/api/v1/jobs", files=files).status_code == 202
    r = web.client.post("/api/v1/jobs", files=files)
    assert r.status_code == 429 and "busy" in r.json()["detail"]
    assert web.client.post("/api/v1/jobs", files=files[:4]).status_code == 202  # exactly fits


def test_the_limits_say_the_backlogs_room(make_web):
    web = make_web(worker=False, max_backlog=10)
    assert {k: web.client.get("/api/v1/limits").json()[k] for k in ("max_backlog", "backlog_waiting", "backlog_room")} \
        == {"max_backlog": 10, "backlog_waiting": 0, "backlog_room": 10}
    files = [("file", (f"{i}.png", TINY, "image/png")) for i in range(6)]
    assert web.client.post("/api/v1/jobs", files=files).status_code == 202
    limits = web.client.get("/api/v1/limits").json()
    assert (limits["backlog_waiting"], limits["backlog_room"]) == (6, 4)
    assert web.client.post("/api/v1/jobs", files=files[: limits["backlog_room"]]).status_code == 202

    web.clock.advance(0.3)
    assert web.client.get("/api/v1/limits").json()["backlog_room"] == 0


def test_the_limits_answer_while_the_queue_is_out(make_web, monkeypatch):
    from imgrec.errors import BackendUnavailable

    web = make_web(worker=False, max_backlog=10)

    def out():
        raise BackendUnavailable("queue: connection refused (simulated)")

    monkeypatch.setattr(web.client.app.state.parts.requests, "stats", out)
    web.clock.advance(0.3)
    r = web.client.get("/api/v1/limits")
    assert r.status_code == 200 and r.json()["max_files_per_request"] == 100 and r.json()["backlog_room"] == 10


def test_metrics_labels_come_from_fixed_sets(web):
    from prometheus_client.parser import text_string_to_metric_families

    for i in range(300):
        web.client.request(f"INVENTED{i}", f"/no/such/path/{i}")
        web.client.get(f"/api/v1/jobs/{i:032x}")
    families = text_string_to_metric_families(web.client.get("/metrics").text)
    (requests,) = [f for f in families if f.name == "imgrec_http_requests"]
    labels = {tuple(sorted(s.labels.items())) for s in requests.samples if s.name.endswith("_total")}
    assert len(labels) <= 6, labels
    assert {dict(x)["status"] for x in labels} <= {"2xx", "3xx", "4xx", "5xx"}
    assert {dict(x)["method"] for x in labels} <= {"GET", "POST", "other"}
    assert {dict(x)["route"] for x in labels} <= {"/api/v1/jobs/{job_id}", "unmatched", "/metrics"}


def test_ready_means_uploads_work_and_says_no_address(web):
    assert web.client.get("/readyz").status_code == 200
    web.store.full = True  # reads work, writes fail: a full disk
    web.clock.advance(1.0)  # readiness is looked at once a second
    r = web.client.get("/readyz")
    assert r.status_code == 503 and r.json() == {"detail": "not ready: the store cannot be written"}
    assert web.client.post("/", files={"myfile": CAT}).status_code == 503
    web.store.full = False
    assert web.client.get("/readyz").status_code == 503, "the look of a second ago stands"
    web.clock.advance(1.0)
    assert web.client.get("/readyz").status_code == 200


def test_a_504_says_where_the_results_will_be(make_web):
    web = make_web(worker=False, request_timeout=0.3)
    r = web.client.post("/", files={"myfile": CAT})
    job = re.search(r"job ([0-9a-f]{32})", r.text).group(1)
    assert r.status_code == 504 and f"/api/v1/jobs/{job}" in r.text
    assert web.client.get(f"/api/v1/jobs/{job}").json()["status"] == "queued"
    r = web.client.post("/api/v1/classify", files=[("file", CAT), ("file", CAT)])
    body = r.json()
    assert r.status_code == 504 and "{job_id}" not in r.text and body["batch_url"] == f"/api/v1/batches/{body['batch_id']}"
    assert [j["url"] for j in body["jobs"]] == [f"/api/v1/jobs/{j['job_id']}" for j in body["jobs"]] and len(body["jobs"]) == 2


def _multipart(parts: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A body written by hand: clients escape a tab in a file name, an attacker need not."""
    body = b"".join(
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="' + name.encode() + b'"\r\n'
        b"Content-Type: image/png\r\n\r\n" + data + b"\r\n"
        for name, data in parts
    )
    return body + b"--b--\r\n", "multipart/form-data; boundary=b"


def test_csv_cells_cannot_become_formulas(web):
    names = ["=HYPERLINK(1).png", "+1.png", "-2.png", "@SUM(A1).png", "\tx.png", "plain.png"]
    body, ctype = _multipart([(n, TINY) for n in names] + [("=cmd.txt", b"not an image")])
    r = web.client.post("/api/v1/jobs", content=body, headers={"content-type": ctype})
    batch_url = r.json()["batch_url"]
    web.join()
    assert web.client.get(batch_url).json()["status"] == "done"
    rows = list(csv.DictReader(io.StringIO(web.client.get(batch_url + "?format=csv").text)))
    assert [r["filename"] for r in rows] == ["'" + n for n in names[:-1]] + ["plain.png", "'=cmd.txt"]
    assert rows[-1]["error"].startswith("'=cmd.txt: not an image")
    from imgrec.messages import csv_safe

    assert csv_safe("\r=1") == "'\r=1" and csv_safe(282) == 282 and csv_safe("cat") == "cat"


def test_an_expired_job_is_410_an_unknown_one_404(web):
    from imgrec.messages import new_id

    old = new_id(time.time() - 8 * 86400)
    r = web.client.get(f"/api/v1/jobs/{old}")
    assert r.status_code == 410 and "expired" in r.json()["detail"] and "7 days" in r.json()["detail"]
    assert web.client.get(f"/api/v1/batches/{old}").status_code == 410
    assert web.client.get(f"/api/v1/jobs/{new_id()}").status_code == 404
    assert web.client.get("/api/v1/jobs/" + "0" * 32).status_code == 404  # an id of the earlier, random kind


def test_a_part_header_past_the_parsers_limit_says_so(web):
    """python-multipart refuses a part header line over 4 KB; Starlette's message alone
    ("Invalid multipart data") would not tell the sender which."""
    body, ctype = _multipart([("x" * 8000 + ".png", TINY)])
    for route in ("/", "/api/v1/jobs", "/api/v1/classify"):
        r = web.client.post(route, content=body, headers={"content-type": ctype})
        assert r.status_code == 400, (route, r.text)
        assert "header line is over 4 KB; is its file name that long?" in r.text, (route, r.text)
    fine, _ = _multipart([("x" * 200 + ".png", TINY)])
    assert web.client.post("/api/v1/classify", content=fine, headers={"content-type": ctype}).status_code == 200
