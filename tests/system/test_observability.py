"""What an operator's tools read from `imgrec up`: /metrics with the workers' own times
(published in their heartbeats, summed by the web tier) and the model they run; and the
log, with IMGREC_LOG_FORMAT=json one JSON object a line from every process, each part
saying once that it started and once that it stopped, each request its access line."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from images import chelsea, encode, photo_variants
from imgrec.lab.harness import ServiceProcess, wait_until

CAT = ("cat.png", encode(chelsea().resize((400, 260)), "PNG"), "image/png")


@pytest.fixture(scope="module")
def service(tmp_path_factory, model_dir):
    svc = ServiceProcess(tmp_path_factory.mktemp("observed"), model_dir, "--max-workers", "1",
                         env={"IMGREC_LOG_FORMAT": "json"})
    yield svc
    svc.stop()


def _metrics(url: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(httpx.get(url + "/metrics").text)}


def _value(family, sample: str, **labels: str) -> float:
    return next(s.value for s in family.samples if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_show_each_image_s_decode_and_inference_time_and_the_model(service):
    files = [("file", (name, data, "image/jpeg")) for name, data in photo_variants(5).items()]
    r = httpx.post(service.url + "/api/v1/classify", files=files, timeout=120)
    assert r.status_code == 200 and all(x.get("label") for x in r.json()["results"])

    def counted() -> dict | None:  # the worker's next heartbeat brings its counts
        m = _metrics(service.url)
        return m if _value(m["imgrec_worker_inference_seconds"], "imgrec_worker_inference_seconds_count") >= 5 else None

    m = wait_until(counted, 30, 0.2, "the worker's times in /metrics")
    for stage in ("decode", "inference"):
        family = m[f"imgrec_worker_{stage}_seconds"]
        assert _value(family, f"{family.name}_count") == 5 and _value(family, f"{family.name}_sum") > 0
        assert _value(family, f"{family.name}_bucket", le="+Inf") == 5
    (model,) = m["imgrec_model_info"].samples
    manifest = json.loads((Path(service.env["IMGREC_MODEL_DIR"]) / "manifest.json").read_text())
    assert model.labels == {"name": manifest["name"], "version": manifest["sha256"][:12], "variant": manifest["variant"]}
    assert _value(m["imgrec_images_completed"], "imgrec_images_completed_total") >= 5


def test_every_part_logs_its_life_and_every_request_one_json_line(service):
    r = httpx.post(service.url + "/api/v1/classify", files={"file": CAT}, headers={"X-Request-Id": "from-the-caller-1"},
                   timeout=120)
    assert r.status_code == 200 and r.headers["x-request-id"] == "from-the-caller-1"
    (result,) = r.json()["results"]
    assert service.stop() == 0
    lines = [json.loads(line) for line in service.log.read_text().splitlines()]  # each line is JSON, or this fails
    parts = ("up", "web", "autoscaler", "worker")
    starts = Counter(line["part"] for line in lines if line.get("event") == "start")
    stops = Counter(line["part"] for line in lines if line.get("event") == "stop")
    assert set(starts) == set(parts) and starts == stops and starts["up"] == starts["web"] == starts["autoscaler"] == 1
    (access,) = [line for line in lines if line["logger"] == "imgrec.access" and line["request_id"] == "from-the-caller-1"]
    assert (access["method"], access["route"], access["status"]) == ("POST", "/api/v1/classify", 200)
    assert access["job_ids"] == [result["job_id"]] and access["duration_ms"] > 0
    workers_did = sum(line["images"] for line in lines if line.get("event") == "stop" and line["part"] == "worker")
    assert workers_did >= 6
