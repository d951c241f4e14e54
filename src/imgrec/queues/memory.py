"""`MemoryQueue`: queues in this process's memory, for tests and one-process experiments.

URL ``memory://name``: every queue opened with the same URL and queue name in
one process is the same queue. Same semantics as the durable adapters
(visibility timeout, receive counts, dead letters, QueueMissing), none of
their durability.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlparse

from imgrec.errors import QueueMissing
from imgrec.queues.base import Message, Queue, QueueStats

_LOCK = threading.Condition()
_QUEUES: dict[tuple[str, str], _State] = {}
_IDS = itertools.count(1)


@dataclass
class _Entry:
    body: dict
    visible_at: float = 0.0
    receive_count: int = 0
    receipt: str = ""


@dataclass
class _State:
    live: dict[str, _Entry] = field(default_factory=dict)
    dead: dict[str, _Entry] = field(default_factory=dict)
    last_sent: float = 0.0


class MemoryQueue(Queue):
    def __init__(self, url: str, name: str, *, create: bool = False, **options) -> None:
        super().__init__(name, **options)
        self._key = (urlparse(url).netloc, name)
        if create:
            self.create()
        elif self._key not in _QUEUES:
            raise QueueMissing(f"queue {name} does not exist (deleted, or never created)")

    def volatile(self) -> str | None:
        return "the memory queue keeps nothing outside this process"

    def create(self) -> None:
        with _LOCK:
            _QUEUES.setdefault(self._key, _State())

    def _state(self) -> _State:
        try:
            return _QUEUES[self._key]
        except KeyError:
            raise QueueMissing(f"queue {self.name} does not exist (deleted)") from None

    def send(self, body: dict) -> str:
        return self.send_many([body])[0]

    def send_many(self, bodies: list[dict]) -> list[str]:
        with _LOCK:
            state = self._state()
            ids = [str(next(_IDS)) for _ in bodies]
            for i, body in zip(ids, bodies, strict=False):
                state.live[i] = _Entry(dict(body))
            state.last_sent = time.time()
            _LOCK.notify_all()
        return ids

    def _take(self, state: _State, max_messages: int) -> list[Message]:
        now, taken = time.time(), list[Message]()
        for mid, entry in list(state.live.items()):
            if len(taken) >= max_messages:
                break
            if entry.visible_at > now:
                continue
            if entry.receive_count >= self.max_receives:
                state.dead[mid] = state.live.pop(mid)
                entry.visible_at, entry.receipt = 0.0, ""
                continue
            entry.receive_count += 1
            entry.visible_at, entry.receipt = now + self.visibility_timeout, uuid.uuid4().hex
            taken.append(Message(mid, dict(entry.body), entry.receipt, entry.receive_count))
        return taken

    def receive(self, max_messages: int = 1, wait: float = 0.0) -> list[Message]:
        deadline = time.monotonic() + wait
        with _LOCK:
            while True:
                taken = self._take(self._state(), max_messages)
                remaining = deadline - time.monotonic()
                if taken or remaining <= 0:
                    return taken
                _LOCK.wait(min(remaining, 0.05))  # also wakes for visibility running out

    def _entry(self, message: Message) -> tuple[dict[str, _Entry], _Entry] | None:
        state = _QUEUES.get(self._key)
        for where in (state.live, state.dead) if state else ():
            entry = where.get(message.id)
            if entry is not None and entry.receipt == message.receipt:
                return where, entry
        return None

    def ack(self, message: Message) -> bool:
        with _LOCK:
            found = self._entry(message)
            if found:
                del found[0][message.id]
                _LOCK.notify_all()
            return found is not None

    def join(self, timeout: float) -> None:
        """Wait until every message sent was acked (none waiting, none in flight), as
        dramatiq's StubBroker.join: tests wait for the work to be done, not for time to
        pass. TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with _LOCK:
            while (state := _QUEUES.get(self._key)) is not None and state.live:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"queue {self.name}: {len(state.live)} messages not done after {timeout:g} s")
                _LOCK.wait(min(left, 0.05))  # also wakes for visibility running out

    def extend(self, message: Message, seconds: float) -> bool:
        with _LOCK:
            found = self._entry(message)
            if found is None or found[0] is not _QUEUES[self._key].live:
                return False
            found[1].visible_at = time.time() + seconds
            _LOCK.notify_all()
            return True

    def stats(self) -> QueueStats:
        with _LOCK:
            state = _QUEUES.get(self._key) or _State()
            now = time.time()
            waiting = sum(e.visible_at <= now for e in state.live.values())
            return QueueStats(waiting, len(state.live) - waiting, len(state.dead), state.last_sent)

    def receive_dead(self, max_messages: int = 10) -> list[Message]:
        with _LOCK:
            now, taken = time.time(), []
            for mid, entry in list(self._state().dead.items())[:max_messages]:
                if entry.visible_at <= now:
                    entry.visible_at, entry.receipt = now + self.visibility_timeout, uuid.uuid4().hex
                    taken.append(Message(mid, dict(entry.body), entry.receipt, entry.receive_count))
            return taken

    def delete(self) -> None:
        with _LOCK:
            _QUEUES.pop(self._key, None)
