"""The backlog's count: each file of an upload counted once, while it is stored and after."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from imgrec.errors import Overloaded
from imgrec.web.backlog import Backlog


class _Queue:
    depth = 0

    def stats(self):
        return SimpleNamespace(depth=self.depth)


def test_a_file_being_stored_is_counted_once():
    queue, now = _Queue(), [0.0]
    backlog = Backlog(queue, 10, clock=lambda: now[0])
    asyncio.run(backlog.refresh())
    with backlog.reserve(6) as room:
        assert (backlog.waiting(), backlog.room()) == (6, 4)
        for _ in range(3):
            room.sent(1)
            queue.depth += 1
        assert (backlog.waiting(), backlog.room()) == (6, 4), "3 queued and 3 held, not 3 + 6"
        backlog.check(4)  # another upload of 4 still fits
        now[0] += 1
        asyncio.run(backlog.refresh())
        assert backlog.waiting() == 6, "the queue's own count of the 3, plus the 3 still held"
    assert (backlog.waiting(), backlog.room()) == (3, 7), "what was never sent gives its room back"
    with pytest.raises(Overloaded):
        backlog.check(8)
