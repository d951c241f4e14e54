"""The last minutes of the deployment, for the page's dashboard: every few seconds a
sample of the status (queue, in flight, workers), and since the last sample the
images completed per second and, per image, the time it waited in the queue and the
time the workers spent on it (from the workers' heartbeats, so every request counts,
waited for or not). Kept in memory by each replica (ten minutes by default)."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

from imgrec.background import Loop
from imgrec.errors import BackendError

log = logging.getLogger("imgrec.web")


class StatusHistory:
    def __init__(self, status: Callable[[], dict], every: float = 2.0, keep: int = 300) -> None:
        self.status, self.every = status, every
        self.samples: deque[dict] = deque(maxlen=keep)
        self.events: deque[dict] = deque(maxlen=keep)
        # A sample is a look at the queue and the store: an outage skips it (the dashboard
        # shows a gap), and so does anything unexpected, which is logged.
        self._sampling = Loop(
            "status history", lambda: self.sample(self.status(), time.time()), every=every, first=0.0, log=log,
            expected=(BackendError,),
        )
        self._last: tuple[float, dict] | None = None  # the previous sample's time and status

    def start(self) -> None:
        self._sampling.start()

    def stop(self) -> None:
        self._sampling.stop()

    def sample(self, status: dict, now: float) -> None:
        rate = wait_ms = work_ms = None
        if self._last is not None:
            then, last = self._last
            done = status["completed"] - last["completed"]
            rate = max(0.0, done / max(now - then, 1e-6))
            if done > 0:
                def spent(*stages: str) -> float:
                    now_s, then_s = status.get("stage_seconds", {}), last.get("stage_seconds", {})
                    return sum(now_s.get(k, 0.0) - then_s.get(k, 0.0) for k in stages)

                wait_ms = 1000 * spent("queue_wait") / done
                work_ms = 1000 * spent("fetch", "decode", "inference", "result_write", "reply_and_ack") / done
        if self.samples and self.samples[-1]["workers"] != status["workers"]:
            self.events.append({"t": now, "from": self.samples[-1]["workers"], "to": status["workers"]})
        self.samples.append({
            "t": now, "queue_depth": status["queue_depth"], "in_flight": status["in_flight"],
            "workers": status["workers"], "images_per_second": rate, "queue_wait_ms": wait_ms, "work_ms": work_ms,
        })
        self._last = (now, status)

    def view(self) -> dict:
        return {"every": self.every, "samples": list(self.samples), "scale_events": list(self.events)}
