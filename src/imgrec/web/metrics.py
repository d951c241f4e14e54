"""Every Prometheus metric of the web tier, defined here and nowhere else.

Request counts and latency come from middleware; the system's (queue, workers, batch
sizes, the workers' decode and inference times, the model) are read from the status
snapshot when scraped; this process's own (CPU, memory, open files) from
prometheus_client's process and platform collectors. Names follow Prometheus': a
counter ends in `_total`, a time is in seconds and says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily

from imgrec.messages import is_id

access = logging.getLogger("imgrec.access")
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
# Label values come from fixed sets only, so no request can grow /metrics.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
SYSTEM_GAUGES = [
    ("queue_depth", "requests waiting in the queue"),
    ("in_flight", "requests being processed"),
    ("dead_letter", "requests in the dead-letter queue"),
    ("workers", "live worker processes"),
]
SYSTEM_COUNTERS = [  # (status key, metric name less imgrec_ and _total, what it counts)
    ("completed", "images_completed", "images whose result workers wrote (a result or an error)"),
    ("worker_crashes", "worker_crashes", "workers that died (any exit but a clean one)"),
    ("hung_workers_replaced", "hung_workers_replaced", "workers killed and replaced because they hung"),
    ("restarts", "restarts", "web tier and autoscaler processes restarted by `imgrec up`"),
]
WORKER_STAGES = [  # (stage in the workers' heartbeats, what it times)
    ("decode", "seconds a worker took to decode and prepare one image"),
    ("inference", "seconds of inference per image (a call's time shared among the images it took)"),
]


class WebMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "imgrec_http_requests", "HTTP requests by method, route template and status class (2xx ...)",
            ["method", "route", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "imgrec_http_request_duration_seconds", "HTTP request latency", ["method", "route"], registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )
        self.stage = Histogram(
            "imgrec_web_stage_seconds", "time per upload in each web-tier stage", ["stage"],
            registry=self.registry, buckets=STAGE_BUCKETS,
        )
        self.replies = Counter(
            "imgrec_replies", "results handed to waiting requests, by where they came from",
            ["source"], registry=self.registry,
        )
        # This replica's process: CPU seconds, memory, open files, start time; Python's version.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    def watch_system(self, status: Callable[[], dict]) -> None:
        """Publish the status snapshot's gauges at every scrape."""
        self.registry.register(SystemCollector(status))


class RequestMetrics:
    """Pure ASGI middleware: one shape as starlette's, no per-handler code. It counts and
    times every request, and writes its access line (`access_line`), one middleware for
    both, so the web path pays for one layer."""

    def __init__(self, app, metrics: WebMetrics, access_log: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def capture(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            seconds = time.perf_counter() - start
            method = scope["method"] if scope["method"] in METHODS else "other"
            route = getattr(scope.get("route"), "path", "unmatched")  # the template, never the raw path
            self.metrics.requests.labels(method, route, f"{status // 100}xx").inc()
            self.metrics.latency.labels(method, route).observe(seconds)
            if self.access_log:
                access_line(scope, method, route, status, seconds)


def access_line(scope, method: str, route: str, status: int, seconds: float) -> None:
    """One line per request: method, route template, status, milliseconds, request id, the
    client's address, and the jobs it concerns (an upload's, or the one in its path)."""
    state = scope.get("state") or {}
    fields: dict = {"method": method, "route": route, "status": status, "duration_ms": round(seconds * 1000, 2),
                    "request_id": state.get("request_id", "")}
    text = f"{method} {route} {status} {fields['duration_ms']:.1f} ms request {fields['request_id']}"
    if client := scope.get("client"):
        fields["client"] = client[0]
        text += f" client {client[0]}"
    params = scope.get("path_params") or {}
    job_ids = state.get("job_ids") or [v for k, v in params.items() if k == "job_id" and is_id(v)]
    if job_ids:
        fields["job_ids"] = job_ids
        text += f" jobs {','.join(job_ids)}"
    if batch_id := state.get("batch_id") or (params.get("batch_id") if is_id(params.get("batch_id")) else None):
        fields["batch_id"] = batch_id
        text += f" batch {batch_id}"
    access.info("%s", text, extra=fields)


class SystemCollector:
    """Reads the status snapshot at scrape time (`status` is the app's status function)."""

    def __init__(self, status: Callable[[], dict]) -> None:
        self.status = status

    def collect(self):
        s = self.status()
        for name, doc in SYSTEM_GAUGES:
            yield GaugeMetricFamily(f"imgrec_{name}", doc, value=s[name])
        for key, name, doc in SYSTEM_COUNTERS:
            yield CounterMetricFamily(f"imgrec_{name}", doc, value=s[key])
        yield GaugeMetricFamily("imgrec_problems", "problems the autoscalers report (e.g. no model)", value=len(s["problems"]))
        sizes = {int(k): v for k, v in s["batch_sizes"].items()}
        buckets = [(str(le), sum(v for k, v in sizes.items() if k <= le)) for le in BATCH_BUCKETS]
        buckets.append(("+Inf", sum(sizes.values())))
        total = sum(k * v for k, v in sizes.items())
        yield HistogramMetricFamily("imgrec_batch_size", "images per worker batch", buckets=buckets, sum_value=total)
        for stage, doc in WORKER_STAGES:
            yield worker_histogram(stage, doc, s["stage_histograms"].get(stage, {}))
        model = InfoMetricFamily("imgrec_model", "the models live workers run (version: the model's sha256 prefix)",
                                 labels=["name", "version", "variant"])
        for m in s["models"]:
            model.add_metric([m["name"], m["version"], m["variant"]], {})
        yield model


def worker_histogram(stage: str, doc: str, counts: dict[str, float]) -> HistogramMetricFamily:
    """A stage's per-image histogram over every worker, from the images per bucket their
    heartbeats sum to (not cumulative; keyed by upper bound, "+Inf" the last, and "sum")."""
    bounds = sorted((float(k), n) for k, n in counts.items() if k not in ("sum", "+Inf"))
    buckets, below = [], 0.0
    for bound, n in bounds:
        below += n
        buckets.append((f"{bound:g}", below))
    buckets.append(("+Inf", below + counts.get("+Inf", 0)))
    return HistogramMetricFamily(f"imgrec_worker_{stage}_seconds", doc, buckets=buckets, sum_value=counts.get("sum", 0.0))
