"""/metrics as Prometheus reads it: counters end in _total, times are in seconds, this
process's own metrics, the models the workers run, and the workers' decode and inference
times summed from their heartbeats into histograms."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from imgrec.messages import Heartbeat, dumps


@pytest.fixture
def scraped(make_web):
    """/metrics of an app whose store holds two live workers' heartbeats (and a stopped one's)."""
    web = make_web(worker=False)
    now = time.time()
    for beat in [
        Heartbeat("w1", last_seen=now, completed=5, model="efficientnet-lite0@786f90d3af74", model_variant="lite0",
                  stage_histograms={"decode": {"0.005": 3, "0.01": 2, "sum": 0.03},
                                    "inference": {"0.025": 4, "0.05": 1, "sum": 0.11}}),
        Heartbeat("w2", last_seen=now, completed=2, model="efficientnet-lite0@786f90d3af74", model_variant="lite0",
                  stage_histograms={"decode": {"0.005": 1, "+Inf": 1, "sum": 11.0}, "inference": {"0.025": 2, "sum": 0.04}}),
        Heartbeat("w3", state="stopped", last_seen=now, completed=3, model="efficientnet-lite0-int8@0123456789ab",
                  model_variant="lite0-int8"),
    ]:
        web.store.put(beat.key, dumps(beat.to_dict()))
    web.client.get("/healthz")
    return {f.name: f for f in text_string_to_metric_families(web.client.get("/metrics").text)}


def _samples(family, suffix: str = "") -> dict:
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples if s.name == family.name + suffix}


def test_counters_are_counters_and_times_are_seconds(scraped):
    assert scraped["imgrec_images_completed"].type == "counter"
    assert _samples(scraped["imgrec_images_completed"], "_total") == {(): 10.0}
    assert "imgrec_completed" not in scraped, "a count that only grows is not a gauge"
    assert scraped["imgrec_http_request_duration_seconds"].type == "histogram"
    for name in ("imgrec_http_requests", "imgrec_worker_crashes", "imgrec_hung_workers_replaced", "imgrec_restarts",
                 "imgrec_replies"):
        assert scraped[name].type == "counter", name


def test_this_process_s_own_metrics_are_there(scraped):
    for name in ("process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds", "python_info"):
        assert name in scraped, name


def test_the_workers_model_is_an_info_metric(scraped):
    assert _samples(scraped["imgrec_model_info"]) == {
        (("name", "efficientnet-lite0"), ("variant", "lite0"), ("version", "786f90d3af74")): 1.0,
    }, "the live workers' model only"


def test_the_workers_decode_and_inference_times_are_histograms_over_every_worker(scraped):
    decode = scraped["imgrec_worker_decode_seconds"]
    assert decode.type == "histogram"
    buckets = {dict(k)["le"]: v for k, v in _samples(decode, "_bucket").items()}
    assert buckets == {"0.005": 4.0, "0.01": 6.0, "+Inf": 7.0}
    assert _samples(decode, "_count") == {(): 7.0} and _samples(decode, "_sum") == {(): pytest.approx(11.03)}
    inference = scraped["imgrec_worker_inference_seconds"]
    assert {dict(k)["le"]: v for k, v in _samples(inference, "_bucket").items()} == {"0.025": 6.0, "0.05": 7.0, "+Inf": 7.0}
