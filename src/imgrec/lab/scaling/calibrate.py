"""The simulated workers of `imgrec bench replay`, calibrated on the live service.

The simulator's defaults come from the engine alone (`service_time`). A live request
also spends time outside the classifier (HTTP, the fsynced store and queue writes,
the reply); a live worker spends CPU besides the classifier's (receiving, fetching,
writing, acking); and each answer costs CPU beside the workers on the cores they
share (the web tier's, and the load client's, which in a replay runs on this machine
too). Each is measured here on a live `imgrec up`, with probes that are not the
traces being replayed: single requests on an idle warm service, one saturating
burst, and a few requests at zero workers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np

from imgrec.lab.cpu import CpuSample, account
from imgrec.lab.harness import ServiceProcess, wait_until
from imgrec.lab.scaling.simulate import ServiceModel, WorkerModel
from imgrec.settings import Settings

BURST = 300  # requests sent at once to saturate the warm service
# Single requests on the idle service, one after another: the time outside the workers,
# whose spread (a flush that takes longer now and then) is a short trace's p99.
IDLE_PROBES = 80


def service_env(settings: Settings) -> dict[str, str]:
    """The settings for a service of its own (its own data, port, store and queue)."""
    own = ("IMGREC_DATA_DIR", "IMGREC_PORT", "IMGREC_STORE", "IMGREC_QUEUE")
    return {k: v for k, v in settings.to_env().items() if k not in own}


async def send_all(url: str, times: np.ndarray, images: list[tuple[str, bytes]]) -> list[float | None]:
    """Each request sent at its arrival time whatever became of the earlier ones (an open
    loop, as real users arrive), one image per classic `POST /`: each one's latency, or
    None when it was not answered with 200."""
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=200)
    latencies: list[float | None] = [None] * len(times)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        start = time.perf_counter()

        async def one(i: int) -> None:
            await asyncio.sleep(max(0.0, start + times[i] - time.perf_counter()))
            sent = time.perf_counter()
            name, data = images[i % len(images)]
            try:
                r = await client.post(url + "/", files={"myfile": (name, data, "image/jpeg")})
                if r.status_code == 200:
                    latencies[i] = time.perf_counter() - sent
            except httpx.HTTPError:
                pass  # counted as unanswered

        await asyncio.gather(*(one(i) for i in range(len(times))))
    return latencies


def _post(client: httpx.Client, url: str, image: tuple[str, bytes]) -> float:
    t0 = time.perf_counter()
    client.post(url + "/", files={"myfile": (image[0], image[1], "image/jpeg")}).raise_for_status()
    return time.perf_counter() - t0


def _warm(settings: Settings, images, model: WorkerModel, workdir: Path) -> tuple[list[float], dict]:
    """(seconds each of single requests on the idle service spent outside the classifier,
    CPU ms per image by process under a burst, the sending client's as "client")."""
    workers = str(settings.max_workers)
    svc = ServiceProcess(workdir, settings.model_path, "--min-workers", workers, "--max-workers", workers,
                         env=service_env(settings))
    try:
        wait_until(lambda: len(svc.worker_pids()) == settings.max_workers, 60, 0.2, "warm workers")
        with httpx.Client(timeout=60) as client:
            idle = [_post(client, svc.url, images[i % len(images)]) for i in range(IDLE_PROBES + 5)][5:]
        before, client_cpu = CpuSample.take(svc.proc.pid), time.process_time()
        asyncio.run(send_all(svc.url, np.zeros(BURST), images))
        cpu = account(before, CpuSample.take(svc.proc.pid), BURST)["cpu_ms_per_image"]
        cpu["client"] = 1000 * (time.process_time() - client_cpu) / BURST
    finally:
        svc.stop()
    return [max(0.0, x - model.service.seconds(1)) for x in idle], cpu


def spawned_at(log: str) -> float | None:
    """When (epoch seconds) the autoscaler spawned its first worker, from a service log
    (timestamps to the millisecond, local time); None if it spawned none."""
    spawned = re.search(r"^(\S+ \S+) imgrec\.autoscaler INFO started worker pid \d+", log, re.M)
    return datetime.strptime(spawned[1], "%Y-%m-%d %H:%M:%S,%f").timestamp() if spawned else None


def calibrate(settings: Settings, images, model: WorkerModel, workdir: Path,
              starts: int = 3) -> tuple[WorkerModel, list[float]]:
    """`model` with the overhead of a request, the workers' CPU per image, the CPU each
    image costs beside them (web tier and load client), and the start-up a request at
    zero workers waits for (their median), each measured on the live service; and each
    probe's start-up, for a prediction that spans their spread."""
    overheads, cpu = _warm(settings, images, model, workdir / "warm")
    overhead = float(np.median(overheads))
    worker_ms, total_ms = cpu.get("worker", 0.0), sum(cpu.values())
    service = ServiceModel(model.service.a, max(model.service.b, worker_ms / 1000))
    side = (total_ms - worker_ms) / 1000  # charged while the workers serve, on the cores they share
    start_ups = []
    for i in range(starts):
        svc = ServiceProcess(workdir / f"cold{i}", settings.model_path, "--max-workers", "1", env=service_env(settings))
        try:
            with httpx.Client(timeout=60) as client:
                waited = _post(client, svc.url, images[i % len(images)])
                answered = time.time()
        finally:
            svc.stop()
        # On the live service (page cache warm, the service's own spawn path, the first
        # inference's warm-up), not a bare worker's. Timed from the spawn the service logs:
        # a request's whole wait also holds the autoscaler's tick, which the simulation
        # has; without a logged spawn, the tick's mean is taken off instead.
        spawned = spawned_at(svc.log.read_text())
        whole = answered - spawned if spawned is not None else waited - settings.poll_interval / 2
        start_ups.append(max(0.05, whole - overhead - service.seconds(1)))
    calibrated = dataclasses.replace(model, service=service, side_cpu=side, overhead=overhead, overheads=tuple(overheads),
                                     cold_start=float(np.median(start_ups)))
    return calibrated, start_ups
