"""deploy/grafana/imgrec.json, checked offline: a dashboard Grafana can import, whose every
query names only metrics that a real web tier's /metrics serves (scraped here from the
app itself, over memory adapters, with a live worker's heartbeat in its store)."""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from deployfiles import DEPLOY
from imgrec.messages import Heartbeat, dumps
from imgrec.settings import Settings
from imgrec.stores import open_store
from imgrec.web.app import create_app

DASHBOARD = DEPLOY / "grafana" / "imgrec.json"
SERIES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> set[str]:
    """Every series name a web tier's /metrics serves (a family without samples yet included)."""
    name = uuid.uuid4().hex
    settings = Settings(data_dir=tmp_path_factory.mktemp("grafana"), store=f"memory://{name}", queue=f"memory://{name}",
                        allow_volatile_queue=True)
    worker = Heartbeat("w1", last_seen=time.time(), model="efficientnet-lite0@786f90d3af74", model_variant="lite0",
                       stage_histograms={"decode": {"0.005": 1, "sum": 0.004}, "inference": {"0.025": 1, "sum": 0.02}})
    open_store(settings.store_url).put(worker.key, dumps(worker.to_dict()))
    with TestClient(create_app(settings)) as client:
        client.get("/healthz")
        text = client.get("/metrics").text
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {s.name for s in family.samples}
        names |= {family.name + suffix for suffix in SERIES.get(family.type, ("",))}
    return names


def _panels(panels: list[dict]):
    for p in panels:
        yield p
        yield from _panels(p.get("panels", []))


def _queries(dashboard: dict) -> list[str]:
    exprs = [t["expr"] for p in _panels(dashboard["panels"]) for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if v.get("definition")]
    return exprs


def _metrics_in(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: the names before a selector's braces,
    and every imgrec_, process_ or python_ name (label values and ranges left out)."""
    bare = re.sub(r'"[^"]*"', '""', expr)
    bare = re.sub(r"\[[^\]]*\]", "", bare)
    named = set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", bare))
    return named | set(re.findall(r"\b((?:imgrec|process|python)_[a-zA-Z0-9_]+)\b", bare))


def test_the_dashboard_is_one_grafana_can_import(dashboard):
    assert dashboard["title"] and dashboard["uid"] and isinstance(dashboard["schemaVersion"], int)
    panels = list(_panels(dashboard["panels"]))
    assert len({p["id"] for p in panels}) == len(panels), "panel ids are unique"
    for p in panels:
        x, w = p["gridPos"]["x"], p["gridPos"]["w"]
        assert 0 <= x and x + w <= 24, p["title"]
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "job"}


def test_every_query_names_only_metrics_that_exist(dashboard, served):
    queries = _queries(dashboard)
    assert len(queries) >= 20
    read = set().union(*map(_metrics_in, queries))
    assert {"imgrec_worker_decode_seconds_bucket", "imgrec_worker_inference_seconds_bucket", "imgrec_model_info",
            "imgrec_images_completed_total", "process_cpu_seconds_total"} <= read
    assert sorted(read - served) == []
