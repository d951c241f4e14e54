"""What `imgrec up` logs, as an operator's log pipeline reads it: with
IMGREC_LOG_FORMAT=json every line of every process is one JSON object, each part says
once that it started and once that it stopped, and each request has its access line."""

from __future__ import annotations

import json
from collections import Counter

import httpx

from images import chelsea, encode
from imgrec.lab.harness import ServiceProcess

CAT = ("cat.png", encode(chelsea().resize((400, 260)), "PNG"), "image/png")


def test_every_part_logs_its_life_and_every_request_one_json_line(tmp_path, model_dir):
    svc = ServiceProcess(tmp_path / "svc", model_dir, "--max-workers", "1", env={"IMGREC_LOG_FORMAT": "json"})
    try:
        r = httpx.post(svc.url + "/api/v1/classify", files={"file": CAT}, headers={"X-Request-Id": "from-the-caller-1"},
                       timeout=120)
        assert r.status_code == 200 and r.headers["x-request-id"] == "from-the-caller-1"
        (result,) = r.json()["results"]
    finally:
        assert svc.stop() == 0
    lines = [json.loads(line) for line in svc.log.read_text().splitlines()]  # each line is JSON, or this fails
    parts = ("up", "web", "autoscaler", "worker")
    for event in ("start", "stop"):
        assert Counter(line["part"] for line in lines if line.get("event") == event) == dict.fromkeys(parts, 1), event
    (access,) = [line for line in lines if line["logger"] == "imgrec.access" and line["request_id"] == "from-the-caller-1"]
    assert (access["method"], access["route"], access["status"]) == ("POST", "/api/v1/classify", 200)
    assert access["job_ids"] == [result["job_id"]] and access["duration_ms"] > 0
    worker_stop = next(line for line in lines if line.get("event") == "stop" and line["part"] == "worker")
    assert worker_stop["images"] == 1
