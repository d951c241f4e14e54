"""The backlog limit: uploads past `max_backlog` waiting requests get 429, counted per file."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from imgrec.errors import Overloaded
from imgrec.queues import Queue


class Backlog:
    """How many requests wait, as this replica sees it: the queue's depth (looked at
    most every `every` seconds), what it sent since, and what it is admitting now.
    Check and reservation happen on one event loop with no wait between them, so
    concurrent uploads cannot overshoot the limit together; across replicas each
    sees the others' uploads at its next look (see the README's Guarantees)."""

    def __init__(self, queue: Queue, limit: int, every: float = 0.25, clock: Callable[[], float] = time.monotonic) -> None:
        self.queue, self.limit, self.every, self.clock = queue, limit, every, clock
        self.depth = self.reserved = self._sent = 0
        self._looked_at = clock() - every
        self._looking: asyncio.Task | None = None

    async def refresh(self) -> None:
        if self.clock() - self._looked_at < self.every:
            return
        if self._looking is None or self._looking.done():  # one look at a time; the others wait for it
            self._looking = asyncio.ensure_future(self._look())
        await asyncio.shield(self._looking)

    async def _look(self) -> None:
        sent_before = self._sent
        depth = (await asyncio.to_thread(self.queue.stats)).depth
        self.depth = depth + (self._sent - sent_before)  # what was sent during the look may be missing
        self._looked_at = self.clock()

    def check(self, files: int) -> None:
        if self.depth + self.reserved + files > self.limit:
            raise Overloaded(self.depth + self.reserved)

    @contextlib.contextmanager
    def reserve(self, files: int):
        """Room for `files` more requests, held until they are sent (or not)."""
        self.check(files)
        self.reserved += files
        try:
            yield
        finally:
            self.reserved -= files

    def sent(self, files: int) -> None:
        self._sent += files
        self.depth += files
