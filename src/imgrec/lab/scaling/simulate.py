"""A discrete-event simulation of the service's scaling: arrivals, the request queue,
workers and an autoscaler that calls a policy function every tick (for `imgrec`, the
very `decide` that `imgrec autoscaler` runs).

What it models, as the real parts do it:
- every `policy.interval` seconds the autoscaler reads the backlog (waiting) and the
  messages in flight, and the policy says how many workers there should be;
- the actuator starts workers, each serving only after its cold start, or stops the
  newest: one still starting or idle exits at once, a busy one after its batch;
- a ready worker takes everything waiting, up to `max_batch`, as soon as anything
  waits, and holds it for `a + b * n` seconds;
- with `host_cores` set, workers share that many cores: while more are starting or
  busy than there are cores, every one of them runs slower (processor sharing); a busy
  worker also keeps `side_cpu` seconds of CPU per image busy beside it on the same
  cores (the web tier's share of each answer; in a replay, the load client's too);
- an arrival that finds `max_backlog` messages waiting is refused, as the web tier does;
- the queue says when it got its newest message (SQLite, Redis), unless `sees_sends` is off (SQS).
Workers are billed from start to exit. The run lasts until the trace is over, every
request answered and the policy back at its floor (or `tail` seconds past the trace).
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from imgrec.autoscaler.policy import Snapshot
from imgrec.errors import ConfigError
from imgrec.lab.scaling.peers import Policy

INF = math.inf


@dataclass(frozen=True)
class ServiceModel:
    """Seconds a worker holds a batch of n messages: a + b * n."""

    a: float
    b: float

    def seconds(self, n: int) -> float:
        return self.a + self.b * n


@dataclass(frozen=True)
class WorkerModel:
    service: ServiceModel
    cold_start: float  # seconds (of one core) from a worker's start to its first message
    max_batch: int
    host_cores: float | None = None  # workers share this many cores; None: each has its own
    max_backlog: int | None = None  # waiting messages past which an arrival is refused
    overhead: float = 0.0  # seconds each answer spends outside the workers (web tier, network)
    side_cpu: float = 0.0  # CPU seconds per image spent beside the workers, on the shared cores
    sees_sends: bool = True  # the queue says when it got its newest message (not SQS)
    overheads: tuple[float, ...] = ()  # measured ones: each answer draws one instead (its spread is the tail)

    @property
    def busy_demand(self) -> float:
        """Cores one busy worker keeps busy: its own, and the work its answers cause beside it."""
        return 1.0 + (self.side_cpu / self.service.b if self.service.b > 0 else 0.0)


@dataclass
class Series:
    """The system now and then during a run, for the chart."""

    t: list[float]
    backlog: list[int]
    in_flight: list[int]
    workers: list[int]


@dataclass
class Result:
    policy: str
    requests: int
    rejected: int
    latencies: np.ndarray  # seconds, of every answered request
    worker_seconds: float
    cold_starts: int
    scale_events: int  # ticks that changed the number of workers
    peak_workers: int
    end: float
    slo: float
    series: Series | None = None

    def figures(self) -> dict:
        """The figures `imgrec simulate --json` writes for each policy."""
        lat = self.latencies
        p50, p95, p99 = (round(float(x) * 1000, 1) for x in np.percentile(lat, [50, 95, 99])) if len(lat) else (None,) * 3
        within = int(np.count_nonzero(lat <= self.slo))
        return {
            "worker_seconds": round(self.worker_seconds, 1), "p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
            "slo_attainment": round(within / self.requests, 4) if self.requests else 1.0,
            "cold_starts": self.cold_starts, "scale_events": self.scale_events, "peak_workers": self.peak_workers,
            "requests": self.requests, "answered": len(lat), "rejected": self.rejected,
        }


class _Worker:
    __slots__ = ("started", "ready", "lo", "n", "stopping", "job")

    def __init__(self, started: float) -> None:
        self.started, self.ready, self.lo, self.n, self.stopping, self.job = started, False, 0, 0, False, 0


class Simulation:
    """One policy over one trace. Time is real seconds; `v` is the work every running
    worker has done since 0 (it runs slower than time while cores are oversubscribed),
    so a batch or a start-up ends when `v` reaches its mark: one heap, no rescheduling."""

    def __init__(self, times: Sequence[float], policy: Policy, model: WorkerModel, duration: float,
                 slo: float = 1.0, samples: int = 0, tail: float = 3600.0, first_tick: float = 0.0, seed: int = 0) -> None:
        if policy.interval <= 0:
            raise ConfigError(f"{policy.name}: the poll interval must be positive")
        self.times = np.asarray(times, dtype=float)
        self.policy, self.model, self.duration, self.slo, self.tail = policy, model, duration, slo, tail
        self.every = duration / samples if samples else INF
        self.series = Series([], [], [], []) if samples else None
        self.now = self.v = 0.0
        self.speed = 1.0
        self.starting = self.busy = 0  # workers loading, workers serving: what uses the cores
        self.jobs: list[tuple[float, int, _Worker]] = []  # (v at which it ends, job id, worker)
        self.seq = 0
        self.procs: list[_Worker] = []  # running and not asked to stop, oldest first
        self.idle: dict[_Worker, None] = {}  # ready and waiting, an ordered set
        self.stopping: set[_Worker] = set()
        self.queue: list[int] = []  # arrival index of each accepted message, in order
        self.done = np.full(len(self.times), np.nan)  # answer time by queue position
        self.taken = self.in_flight = self.rejected = 0
        self.billed, self.cold_starts, self.scale_events, self.peak = 0.0, 0, 0, 0
        self.state = policy.initial
        self.first_tick, self.seed = first_tick, seed

    # --- the run ---------------------------------------------------------------------------

    def run(self) -> Result:
        arrivals = self.times.tolist()
        n, i = len(arrivals), 0
        next_tick, next_sample = self.first_tick, 0.0 if self.series else INF
        jobs = self.jobs
        while True:
            while jobs and jobs[0][1] != jobs[0][2].job:
                heapq.heappop(jobs)  # a start-up cut short by a scale-in
            t_job = self.now + (jobs[0][0] - self.v) / self.speed if jobs else INF
            t_next = min(t_job, next_tick, next_sample)
            if i < n and arrivals[i] < t_next:
                # With nobody idle, everything up to the next other event just queues.
                j = i + 1 if self.idle else bisect_left(arrivals, t_next, i + 1)
                self._advance(arrivals[j - 1])
                self._arrive(i, j)
                i = j
            elif t_next == t_job:
                v, _, worker = heapq.heappop(jobs)
                self._advance(t_job)
                self.v = v
                self._finished(worker)
            elif t_next == next_tick:
                self._advance(next_tick)
                if self._settled(i == n):
                    break
                self._tick()
                next_tick += self.policy.interval
            else:
                self._advance(next_sample)
                self._sample()
                next_sample += self.every
        return self._result()

    def _advance(self, t: float) -> None:
        self.v += (t - self.now) * self.speed
        self.now = t

    def _settled(self, all_arrived: bool) -> bool:
        if self.now >= self.duration + self.tail:
            return True
        answered = all_arrived and self.taken == len(self.queue) and self.in_flight == 0
        return answered and self.now >= self.duration and len(self.procs) <= self.policy.floor and not self.stopping

    # --- requests and workers --------------------------------------------------------------

    def _arrive(self, i: int, j: int) -> None:
        room = j - i
        if self.model.max_backlog is not None:
            room = max(0, min(room, self.model.max_backlog - (len(self.queue) - self.taken)))
        self.queue.extend(range(i, i + room))
        self.rejected += j - i - room
        while self.idle and self.taken < len(self.queue):
            worker, _ = self.idle.popitem()
            self._serve(worker)

    def _serve(self, worker: _Worker) -> None:
        """The worker takes everything waiting, up to max_batch, or waits."""
        n = min(self.model.max_batch, len(self.queue) - self.taken)
        if n <= 0:
            self.idle[worker] = None
            return
        worker.lo, worker.n = self.taken, n
        self.taken += n
        self.in_flight += n
        self._work(worker, self.model.service.seconds(n))

    def _work(self, worker: _Worker, seconds: float) -> None:
        self._use_cores(+1, worker)
        self.seq += 1
        worker.job = self.seq
        heapq.heappush(self.jobs, (self.v + seconds, self.seq, worker))

    def _use_cores(self, change: int, worker: _Worker) -> None:
        if worker.ready:
            self.busy += change
        else:
            self.starting += change
        cores = self.model.host_cores
        demand = self.starting + self.busy * self.model.busy_demand
        self.speed = 1.0 if cores is None or demand <= cores else cores / demand

    def _finished(self, worker: _Worker) -> None:
        self._use_cores(-1, worker)
        if not worker.ready:
            worker.ready = True
        else:
            self.done[worker.lo : worker.lo + worker.n] = self.now
            self.in_flight -= worker.n
            worker.n = 0
        if worker.stopping:
            self._exit(worker)
        else:
            self._serve(worker)

    def _exit(self, worker: _Worker) -> None:
        self.billed += self.now - worker.started
        self.stopping.discard(worker)

    # --- the autoscaler ----------------------------------------------------------------------

    def _tick(self) -> None:
        before = self.state.desired
        # When the queue got its newest message (-inf: none yet; 0 is a time here), or None: it cannot tell.
        last_sent = (float(self.times[self.queue[-1]]) if self.queue else -INF) if self.model.sees_sends else None
        snapshot = Snapshot(self.now, len(self.queue) - self.taken, self.in_flight, last_sent)
        self.state = self.policy.decide(snapshot, self.state, self.policy.config)
        desired = self.state.desired
        self.scale_events += desired != before
        while len(self.procs) < desired:
            worker = _Worker(self.now)
            self.procs.append(worker)
            self.cold_starts += 1
            self._work(worker, self.model.cold_start)
        while len(self.procs) > desired:
            self._stop(self.procs.pop())  # the newest: the oldest has the warmest caches
        self.peak = max(self.peak, len(self.procs) + len(self.stopping))

    def _stop(self, worker: _Worker) -> None:
        if not worker.ready:  # killed while loading: SIGTERM's default action
            worker.job = -1
            self._use_cores(-1, worker)
            self._exit(worker)
        elif worker.n == 0:
            del self.idle[worker]
            self._exit(worker)
        else:
            worker.stopping = True
            self.stopping.add(worker)

    def _sample(self) -> None:
        s = self.series
        assert s is not None  # sampled only when asked for
        s.t.append(self.now)
        s.backlog.append(len(self.queue) - self.taken)
        s.in_flight.append(self.in_flight)
        s.workers.append(len(self.procs) + len(self.stopping))

    def _result(self) -> Result:
        for worker in self.procs + list(self.stopping):
            self.billed += self.now - worker.started
        positions = np.asarray(self.queue, dtype=np.int64)
        done = self.done[: len(positions)]
        answered = ~np.isnan(done)
        outside = (np.random.default_rng(self.seed).choice(self.model.overheads, int(answered.sum()))
                   if self.model.overheads else self.model.overhead)  # each answer draws a measured one
        latencies = done[answered] - self.times[positions[answered]] + outside
        return Result(
            self.policy.name, len(self.times), self.rejected, latencies, self.billed, self.cold_starts,
            self.scale_events, self.peak, self.now, self.slo, self.series,
        )


def simulate(times: Sequence[float], policy: Policy, model: WorkerModel, duration: float | None = None,
             slo: float = 1.0, samples: int = 0, first_tick: float = 0.0, seed: int = 0) -> Result:
    """Run `policy` over arrivals at `times` (seconds from 0, sorted); `duration` defaults
    to the last arrival; `samples` > 0 records that many snapshots for a chart; the
    autoscaler ticks at `first_tick` and every interval after; `seed` draws the overheads."""
    if duration is None:
        duration = float(times[-1]) if len(times) else 0.0
    return Simulation(times, policy, model, duration, slo, samples, first_tick=first_tick, seed=seed).run()
