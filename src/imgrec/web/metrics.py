"""Prometheus metrics: request counts and latency (middleware), and the system's
gauges (queue, workers, batch sizes) read when scraped."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class RequestMetrics:
    """Pure ASGI middleware: one shape as starlette's, no per-handler code."""

    def __init__(self, app, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            "imgrec_http_requests", "HTTP requests", ["method", "route", "status"], registry=registry
        )
        self.latency = Histogram(
            "imgrec_http_request_seconds", "HTTP request latency", ["method", "route"], registry=registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )

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
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.requests.labels(scope["method"], path, str(status)).inc()
            self.latency.labels(scope["method"], path).observe(time.perf_counter() - start)


class SystemCollector:
    """Reads the status snapshot at scrape time (`status` is the app's status function)."""

    def __init__(self, status) -> None:
        self.status = status

    def collect(self):
        s = self.status()
        for name, doc in [
            ("queue_depth", "requests waiting in the queue"),
            ("in_flight", "requests being processed"),
            ("dead_letter", "requests in the dead-letter queue"),
            ("workers", "live worker processes"),
            ("completed", "results written by workers"),
        ]:
            yield GaugeMetricFamily(f"imgrec_{name}", doc, value=s[name])
        sizes = {int(k): v for k, v in s["batch_sizes"].items()}
        buckets, total = [], 0
        for le in BATCH_BUCKETS:
            buckets.append((str(le), sum(v for k, v in sizes.items() if k <= le)))
        buckets.append(("+Inf", sum(sizes.values())))
        total = sum(k * v for k, v in sizes.items())
        yield HistogramMetricFamily("imgrec_batch_size", "images per worker batch", buckets=buckets, sum_value=total)
