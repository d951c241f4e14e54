"""`imgrec autoscaler`: every poll interval, snapshot -> policy -> actuator."""

from __future__ import annotations

import logging
import threading
import time

from imgrec import registry, replicas
from imgrec.actuator import Actuator
from imgrec.autoscaler.policy import PolicyState, ScalingConfig, Snapshot, decide
from imgrec.outputs import Publisher, answer_dead_letters
from imgrec.queue import Queue

log = logging.getLogger("imgrec.autoscaler")
SWEEP_SECONDS = 60.0  # how often to look for reply queues left by dead web replicas


class Autoscaler:
    def __init__(
        self, queue: Queue, actuator: Actuator, config: ScalingConfig, poll_interval: float,
        publisher: Publisher | None = None,
    ) -> None:
        self.queue, self.actuator, self.config = queue, actuator, config
        self.publisher = publisher  # to answer dead-lettered requests, even with no worker running
        self.poll_interval = poll_interval
        self.state = PolicyState(desired=config.min_workers)
        self._next_sweep = 0.0
        self._stop = threading.Event()

    def tick(self) -> PolicyState:
        stats = self.queue.stats()
        before = self.state.desired
        self.state = decide(Snapshot(time.time(), stats.depth, stats.in_flight), self.state, self.config)
        if self.state.desired != before:
            log.info(
                "backlog %d, in flight %d: %d -> %d workers",
                stats.depth, stats.in_flight, before, self.state.desired,
            )
        self.actuator.reconcile(self.state.desired)
        if self.publisher is not None:
            if stats.dead:
                answer_dead_letters(self.queue, self.publisher)
            if time.monotonic() >= self._next_sweep:
                self._next_sweep = time.monotonic() + SWEEP_SECONDS
                replicas.sweep(self.publisher.store, self.publisher.queue_url)
                registry.compact(self.publisher.store)
        return self.state

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("autoscaler tick failed; trying again")
            self._stop.wait(self.poll_interval)

    def stop(self, *_: object) -> None:
        self._stop.set()
