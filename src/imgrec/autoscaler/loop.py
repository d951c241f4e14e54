"""`imgrec autoscaler`'s loop: every poll interval, snapshot -> policy -> actuator,
and now and then the housekeeping."""

from __future__ import annotations

import logging
import threading
import time

from imgrec import presence
from imgrec.actuator import Actuator
from imgrec.autoscaler import housekeeping
from imgrec.autoscaler.policy import PolicyState, ScalingConfig, Snapshot, decide
from imgrec.errors import BackendError
from imgrec.queue import Queue
from imgrec.worker.publisher import Publisher

log = logging.getLogger("imgrec.autoscaler")
SWEEP_SECONDS = 60.0  # how often to look for reply queues left by dead web replicas


class Autoscaler:
    def __init__(
        self, queue: Queue, actuator: Actuator, config: ScalingConfig, poll_interval: float, publisher: Publisher
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
        if stats.dead:
            housekeeping.answer_dead_letters(self.queue, self.publisher)
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + SWEEP_SECONDS
            housekeeping.sweep_reply_queues(self.publisher.store, self.publisher.queue_url)
            presence.compact(self.publisher.store)
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
