"""Whether this replica can take uploads now: its reply listener is listening, the
queue answers and the store takes a write (a tiny canary object).

Looked at most once a second, so a load balancer probing often costs the backends
little, and answered within ANSWER_WITHIN seconds whatever the backends do: a look
that takes longer (a store or queue that stalls rather than fails) makes the answer
"not ready" while it goes on in the background. The answer names what is wrong,
never where it lives: backend addresses stay in the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from imgrec.errors import BackendError
from imgrec.messages import canary_key
from imgrec.queues import Queue
from imgrec.stores import ObjectStore

log = logging.getLogger("imgrec.web")
ANSWER_WITHIN = 0.5  # seconds /readyz waits for a look at the backends


class Readiness:
    def __init__(
        self, store: ObjectStore, queue: Queue, member_id: str, listening: Callable[[], bool] = lambda: True,
        every: float = 1.0, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.queue, self.key, self.every = store, queue, canary_key(member_id), every
        self.listening, self.clock = listening, clock
        self._looked_at = clock() - every
        self._look: asyncio.Future[str | None] | None = None

    async def problem(self) -> str | None:
        """None when ready, else what is wrong, for a person."""
        if not self.listening():
            return "this replica's reply listener is not running"
        if self._look is None or (self._look.done() and self.clock() - self._looked_at >= self.every):
            self._look = asyncio.ensure_future(asyncio.to_thread(self._check))
            self._looked_at = self.clock()
        if not self._look.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._look), ANSWER_WITHIN)
            except TimeoutError:
                return "the store or the queue does not answer"
        return self._look.result()

    def _check(self) -> str | None:
        try:
            self.queue.stats()
        except BackendError as exc:
            log.warning("not ready: the queue cannot be reached (%s)", exc)
            return "the queue cannot be reached"
        try:
            self.store.put(self.key, b"ok", "text/plain")
        except BackendError as exc:
            log.warning("not ready: the store cannot be written (%s)", exc)
            return "the store cannot be written"
        return None

    def forget(self) -> None:
        try:
            self.store.delete(self.key)
        except BackendError:
            pass  # the retention sweep removes it later
