"""Long-lived work on a thread of its own that never dies silently.

A background thread that ends on an error nobody expected is a silent outage: a web
replica whose reply listener died still said it was ready, and every waiting request
fell back to polling the store. A `Loop` runs its step again and again; an error it
was told to expect (an outage of the store or the queue, a `BackendError`) is logged
in one line, anything else with its traceback, and either way it waits, longer while
the failures go on, and tries again. `healthy` says whether the last step succeeded,
for readiness probes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

MAX_BACKOFF = 10.0  # seconds between tries of a step that keeps failing


class Loop:
    """`step()` every `every` seconds (0: again at once) on a daemon thread, until `stop`;
    the first after `first` seconds (default: `every`)."""

    def __init__(
        self, name: str, step: Callable[[], object], *, every: float = 0.0, log: logging.Logger,
        expected: tuple[type[Exception], ...] = (), max_backoff: float = MAX_BACKOFF, first: float | None = None,
    ) -> None:
        self.name, self.step, self.every, self.log = name, step, every, log
        self.first = every if first is None else first
        self.expected, self.max_backoff = expected, max_backoff
        self.failures = 0  # steps that raised, in a row
        self.unexpected = 0  # steps that raised what no one expected, since the start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Loop:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def healthy(self) -> bool:
        """Running, and its last step succeeded."""
        return self._thread.is_alive() and not self.failures

    def _run(self) -> None:
        delay = self.first
        while not self._stop.wait(delay):
            try:
                self.step()
            except self.expected as exc:
                self.failures += 1
                delay = self._backoff()
                self.log.warning("%s: %s; trying again in %.1f s", self.name, exc, delay)
            except Exception:  # a thread's boundary: whatever it was, this loop must go on
                self.failures += 1
                self.unexpected += 1
                delay = self._backoff()
                self.log.exception("%s failed unexpectedly; trying again in %.1f s", self.name, delay)
            else:
                if self.failures:
                    self.log.info("%s works again", self.name)
                self.failures, delay = 0, self.every

    def _backoff(self) -> float:
        return min(self.max_backoff, max(self.every, 0.5 * 2.0 ** (self.failures - 1)))
