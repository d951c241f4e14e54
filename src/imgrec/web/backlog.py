"""The backlog limit: uploads past `max_backlog` waiting requests get 429, counted per file."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator

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

    def waiting(self) -> int:
        """Requests waiting or being admitted, as last looked at (`refresh` first)."""
        return self.depth + self.reserved

    def room(self) -> int:
        """How many more files an upload may bring now (`refresh` first)."""
        return max(0, self.limit - self.waiting())

    def check(self, files: int) -> None:
        if self.waiting() + files > self.limit:
            raise Overloaded(self.waiting())

    @contextlib.contextmanager
    def reserve(self, files: int) -> Iterator[Reservation]:
        """Room for `files` more requests, held until each is sent (then it counts in the
        depth instead) or the block ends (what was not sent gives its room back)."""
        self.check(files)
        held = Reservation(self, files)
        self.reserved += files
        try:
            yield held
        finally:
            self.reserved -= held.left

    def sent(self, files: int) -> None:
        self._sent += files
        self.depth += files


class Reservation:
    """Room held for an upload's files while they are stored and queued."""

    def __init__(self, backlog: Backlog, files: int) -> None:
        self.backlog, self.left = backlog, files

    def sent(self, files: int = 1) -> None:
        """`files` of them are queued: counted once, in the depth, no longer held here
        (counted in both, an upload being stored took twice its room)."""
        taken = min(files, self.left)
        self.left -= taken
        self.backlog.reserved -= taken
        self.backlog.sent(files)
