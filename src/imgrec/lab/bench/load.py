"""An efficient async load client (aiohttp) and what it measured.

Every answer is checked against the label a direct engine run gave the same image,
so a run reports lost requests, server errors and wrong labels, not only speed.
"""

from __future__ import annotations

import asyncio
import resource
import time
from dataclasses import dataclass, field

import numpy as np

from imgrec.errors import require


@dataclass(frozen=True)
class Item:
    name: str
    data: bytes
    expected: str  # the label a direct engine run gives this image


@dataclass
class LoadReport:
    requests: int
    concurrency: int
    seconds: float = 0.0
    ok: int = 0
    wrong: list[str] = field(default_factory=list)
    server_errors: int = 0  # 5xx
    client_errors: int = 0  # 4xx
    lost: int = 0  # no answer at all (connection error, timeout)
    latencies: list[float] = field(default_factory=list)
    client_cpu_seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        return float(np.percentile(self.latencies, p)) * 1000 if self.latencies else float("nan")

    @property
    def client_cpu_share(self) -> float:
        """The client's CPU time over the machine's CPU time in the run (0..1)."""
        import os

        return self.client_cpu_seconds / (self.seconds * (os.cpu_count() or 1)) if self.seconds else 0.0

    def summary(self) -> dict:
        return {
            "requests": self.requests, "concurrency": self.concurrency, "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 2), "ok": self.ok, "wrong": len(self.wrong),
            "server_errors": self.server_errors, "client_errors": self.client_errors, "lost": self.lost,
            "p50_ms": round(self.percentile(50), 2), "p95_ms": round(self.percentile(95), 2),
            "p99_ms": round(self.percentile(99), 2), "client_cpu_share": round(self.client_cpu_share, 3),
        }


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _labels(body, endpoint: str) -> list[str | None]:
    """The labels an answer gives, in upload order: imgrec's classic text or its JSON
    results, or a peer's list of JSON objects (`[{"label": ...}]`, BentoML's batchable API)."""
    if endpoint == "/":
        return [body.rsplit(":", 1)[1]]
    if isinstance(body, dict) and "results" in body:
        return [r.get("label") for r in body["results"]]
    return [r.get("label") if isinstance(r, dict) else None for r in (body if isinstance(body, list) else [body])]


async def _run(url: str, items: list[Item], requests: int, concurrency: int, endpoint: str, timeout: float,
               per_request: int = 1, field: str | None = None) -> LoadReport:
    aiohttp = require("aiohttp", "bench", "the load client of imgrec bench")
    report = LoadReport(requests, concurrency)
    counter = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=concurrency)
    field = field or ("myfile" if endpoint == "/" else "file")
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:

        async def one(i: int) -> None:
            sent = [items[(i * per_request + k) % len(items)] for k in range(per_request)]
            form = aiohttp.FormData()
            for item in sent:
                form.add_field(field, item.data, filename=item.name)
            start = time.perf_counter()
            try:
                async with session.post(url + endpoint, data=form) as resp:
                    body = await (resp.text() if endpoint == "/" else resp.json(content_type=None))
                    status = resp.status
            except (TimeoutError, aiohttp.ClientError):
                report.lost += len(sent)
                return
            report.latencies.append(time.perf_counter() - start)
            if status >= 500:
                report.server_errors += 1
            elif status >= 400:
                report.client_errors += 1
            else:
                labels = _labels(body, endpoint)
                for item, label in zip(sent, labels + [None] * (len(sent) - len(labels)), strict=False):
                    if label == item.expected:
                        report.ok += 1
                    else:
                        report.wrong.append(f"{item.name}: expected {item.expected}, got {label}")

        async def client() -> None:
            for i in counter:
                await one(i)

        cpu0, t0 = _cpu(), time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        report.seconds = time.perf_counter() - t0
        report.client_cpu_seconds = _cpu() - cpu0
    return report


def run_load(
    url: str, items: list[Item], requests: int, concurrency: int, endpoint: str = "/api/v1/classify", timeout: float = 300,
    per_request: int = 1, field: str | None = None,
) -> LoadReport:
    """`requests` uploads of `per_request` images each (in the multipart `field`) from
    `concurrency` clients, each sending its next one as soon as it has an answer; `ok`
    counts the images answered with the expected label."""
    return asyncio.run(_run(url, items, requests, concurrency, endpoint, timeout, per_request, field))
