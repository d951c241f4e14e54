"""`imgrec autoscaler`'s loop: every poll interval, snapshot -> policy -> actuator,
a look at the workers' heartbeats, and the housekeeping at its own pace."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imgrec import presence
from imgrec.actuators import Actuator
from imgrec.autoscaler.housekeeping import Housekeeping
from imgrec.autoscaler.policy import PolicyState, ScalingConfig, Snapshot, decide, share
from imgrec.errors import BackendError, ModelMissing
from imgrec.queues import Queue
from imgrec.stores import ObjectStore

log = logging.getLogger("imgrec.autoscaler")
WATCH_SECONDS = 2.0  # how often the workers' heartbeats are looked at


class ModelCheck:
    """Whether workers here can load a model: no worker is started that could not (it
    would only crash, again and again). A missing model is pulled from the store (at most
    every `pull_every` seconds). Looked at most every 5 s; a change is logged once."""

    def __init__(
        self,
        model_dir: Path,
        store: ObjectStore | None = None,
        every: float = 5.0,
        pull_every: float = 30.0,
        variant: str = "lite0",
    ) -> None:
        self.model_dir, self.store, self.every, self.pull_every = model_dir, store, every, pull_every
        self.variant = variant
        self._seen: tuple[float, str] = (-every, "")
        self._pulled, self._failed = -pull_every, ""
        self.kind = ""  # the problem in a few words, naming no path or address

    def problem(self) -> str:
        when, problem = self._seen
        if time.monotonic() - when < self.every:
            return problem
        try:
            self._look()
            now = self.kind = ""
        except (ModelMissing, BackendError) as exc:
            now = f"workers cannot start: {exc}"
            self.kind = "workers cannot start: " + ("no model" if isinstance(exc, ModelMissing) else "the store fails")
        if now != problem:
            (log.error if now else log.info)(now or f"model found in {self.model_dir}; starting workers")
        self._seen = (time.monotonic(), now)
        return now

    def _look(self) -> None:
        from imgrec.engine import registry
        from imgrec.engine.model import load_manifest

        try:
            load_manifest(self.model_dir, variant=self.variant)
            return
        except ModelMissing as exc:
            if self.store is None:
                raise
            self._failed = self._failed or str(exc)
        if time.monotonic() - self._pulled >= self.pull_every:
            self._pulled = time.monotonic()
            try:
                registry.obtain(self.model_dir, self.store, self.variant)
                self._failed = ""
                return
            except (ModelMissing, BackendError) as exc:
                self._failed = str(exc)
        raise ModelMissing(self._failed)


@dataclass
class Pool:
    """The workers of one model: its request queue, its actuator, its policy's state, and
    whether its workers can start (`problem`: why not, or "")."""

    model: str
    queue: Queue
    actuator: Actuator
    problem: Callable[[], str] = lambda: ""
    state: PolicyState | None = None
    dead: int = 0  # dead letters at the last tick
    checks: ModelCheck | None = None  # what `problem` asks, if a model here is looked at


class Autoscaler:
    """One policy per pool (one model's queue and workers), the pools sharing the host's
    `config.max_workers` (`share`); one pool when one model is served."""

    def __init__(
        self, queue, actuator: Actuator, config: ScalingConfig, poll_interval: float, chores: Housekeeping,
        problem: Callable[[], str] = lambda: "", more: list[Pool] | None = None, model: str = "",
    ) -> None:
        self.pools = [Pool(model, queue, actuator, problem), *(more or [])]
        self.queue, self.actuator, self.config = queue, actuator, config
        self.chores = chores  # e.g. dead letters are answered even with no worker running
        self.poll_interval = poll_interval
        self.problem = problem
        for pool in self.pools:
            pool.state = PolicyState(desired=config.min_workers)
        self._next_watch = 0.0
        self._stop = threading.Event()

    @property
    def state(self) -> PolicyState:
        """The first (the default model's) pool's state."""
        assert self.pools[0].state is not None
        return self.pools[0].state

    def tick(self) -> PolicyState:
        wanted = []
        for pool in self.pools:
            stats = pool.queue.stats()
            assert pool.state is not None
            before = pool.state.desired
            pool.state = decide(Snapshot(time.time(), stats.depth, stats.in_flight, stats.last_sent), pool.state, self.config)
            pool.dead = stats.dead
            if pool.state.desired != before:
                log.info(
                    "%sbacklog %d, in flight %d: %d -> %d workers", f"{pool.model}: " if len(self.pools) > 1 else "",
                    stats.depth, stats.in_flight, before, pool.state.desired,
                )
            wanted.append(0 if pool.problem() else pool.state.desired)
        for pool, workers in zip(self.pools, share(wanted, self.config.max_workers), strict=True):
            pool.actuator.reconcile(workers)
        if time.monotonic() >= self._next_watch:
            self._next_watch = time.monotonic() + WATCH_SECONDS
            beats = presence.read(self.chores.store, "worker")
            for pool in self.pools:
                pool.actuator.watch(beats)
        self.chores.tick(sum(pool.dead for pool in self.pools))
        return self.state

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except BackendError as exc:
                log.warning("autoscaler tick failed (%s); trying again", exc)
            self._stop.wait(self.poll_interval)

    def stop(self, *_: object) -> None:
        self._stop.set()
