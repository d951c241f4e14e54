"""A time limit on work that cannot be interrupted in-process (a hung image decoder).

When the limit passes, the process ends: its messages come back after their
visibility timeout, are retried alone (see `batch.BatchProcessor.process_alone`),
and after `max_receives` attempts go to the dead-letter queue, whose requests the
autoscaler's housekeeping answers with an error result.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time

log = logging.getLogger("imgrec.worker.watchdog")
EXIT_OVER_TIME = 70


class Watchdog:
    def __init__(self, check_every: float = 0.05) -> None:
        self._deadline: float | None = None
        self._what = ""
        self._check_every = check_every
        threading.Thread(target=self._watch, name="watchdog", daemon=True).start()

    @contextlib.contextmanager
    def limit(self, seconds: float, what: str):
        self._deadline, self._what = time.monotonic() + seconds, what
        try:
            yield
        finally:
            self._deadline = None

    def _watch(self) -> None:
        while True:
            time.sleep(self._check_every)
            deadline = self._deadline
            if deadline is not None and time.monotonic() > deadline:
                log.error("%s is over its time limit; ending this worker so that it is retried elsewhere", self._what)
                os._exit(EXIT_OVER_TIME)
