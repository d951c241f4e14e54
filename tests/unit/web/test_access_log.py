"""One access line per request, from the middleware that already times it: method, route
template, status, duration, request id (the caller's own, when it is a safe one), and
the jobs the request concerns."""

from __future__ import annotations

import logging

import pytest

from images import chelsea, encode

CAT = ("cat.png", encode(chelsea().resize((400, 260)), "PNG"), "image/png")


@pytest.fixture
def lines(caplog):
    caplog.set_level(logging.INFO, logger="imgrec.access")
    return lambda: [r for r in caplog.records if r.name == "imgrec.access"]


def test_an_upload_s_line_names_its_route_status_duration_request_id_and_jobs(web, lines):
    r = web.client.post("/api/v1/jobs", files=[("file", CAT), ("file", CAT)], headers={"X-Request-Id": "trace-42.a:b_c"})
    assert r.status_code == 202 and r.headers["x-request-id"] == "trace-42.a:b_c", "the caller's id, returned"
    (line,) = lines()
    body = r.json()
    assert (line.method, line.route, line.status, line.request_id) == ("POST", "/api/v1/jobs", 202, "trace-42.a:b_c")
    assert line.job_ids == [j["job_id"] for j in body["jobs"]] and line.batch_id == body["batch_id"]
    assert line.duration_ms > 0 and line.client == "testclient"
    assert line.getMessage().startswith("POST /api/v1/jobs 202 ") and "request trace-42.a:b_c" in line.getMessage()


def test_a_job_s_line_names_the_job_in_its_path_and_an_unknown_path_its_own_route(web, lines):
    job_id = web.client.post("/api/v1/jobs", files={"file": CAT}).json()["jobs"][0]["job_id"]
    web.client.get(f"/api/v1/jobs/{job_id}")
    web.client.get("/no/such/thing")
    _, job, unknown = lines()
    assert (job.route, job.status, job.job_ids) == ("/api/v1/jobs/{job_id}", 200, [job_id])
    assert (unknown.route, unknown.status) == ("unmatched", 404) and not hasattr(unknown, "job_ids")


@pytest.mark.parametrize("given", ["", "a b", "x" * 65, "id\nforged line", "<script>", "é"])
def test_an_unsafe_or_overlong_request_id_is_replaced(web, lines, given):
    r = web.client.get("/healthz", headers={"X-Request-Id": given.encode("utf-8")})
    chosen = r.headers["x-request-id"]
    assert chosen != given and len(chosen) == 16 and int(chosen, 16) >= 0
    (line,) = lines()
    assert line.request_id == chosen


def test_the_access_log_can_be_turned_off(make_web, lines):
    web = make_web(worker=False, access_log=False)
    assert web.client.get("/healthz").status_code == 200
    assert lines() == []


def test_a_bug_s_500_is_logged_with_the_caller_s_request_id(web, monkeypatch, caplog):
    from imgrec import jobs

    def broken(*args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(jobs, "status", broken)
    r = web.client.get("/api/v1/jobs/" + "0" * 32, headers={"X-Request-Id": "mine-1"})
    assert r.status_code == 500 and "mine-1" in r.json()["detail"] and r.headers["x-request-id"] == "mine-1"
    (failed,) = [rec for rec in caplog.records if rec.exc_info]
    assert failed.request_id == "mine-1"

