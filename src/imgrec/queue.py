"""The queue port: at-least-once delivery with visibility timeouts and a dead-letter queue.

A `Queue` is one named queue. A received message stays invisible to other
consumers for the visibility timeout; if it is not acked by then it is delivered
again. After `max_receives` deliveries without an ack it moves to the queue's
dead-letter queue instead of being delivered once more.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from urllib.parse import urlparse


class QueueMissing(RuntimeError):
    """The queue does not exist (never created, or deleted)."""


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    body: dict
    receipt: str  # identifies this delivery; a stale receipt cannot ack a newer one
    receive_count: int


@dataclass(frozen=True, slots=True)
class QueueStats:
    depth: int  # waiting to be received
    in_flight: int  # received, not yet acked
    dead: int  # in the dead-letter queue


class Queue(ABC):
    def __init__(self, name: str, *, visibility_timeout: float = 30.0, max_receives: int = 5) -> None:
        if not name or len(name) > 80 or not all(c.isalnum() or c in "-_" for c in name):
            raise ValueError(f"bad queue name {name!r}: letters, digits, - and _ only, up to 80")
        self.name = name
        self.visibility_timeout = visibility_timeout
        self.max_receives = max_receives

    @abstractmethod
    def send(self, body: dict) -> str:
        """Enqueue a JSON-serialisable body; returns the message id."""

    @abstractmethod
    def receive(self, max_messages: int = 1, wait: float = 0.0) -> list[Message]:
        """Up to `max_messages`, blocking up to `wait` seconds for the first one."""

    @abstractmethod
    def ack(self, message: Message) -> bool:
        """Delete a received message; False if its receipt is stale (it was redelivered)."""

    @abstractmethod
    def extend(self, message: Message, seconds: float) -> bool:
        """Keep a message invisible `seconds` from now; 0 releases it at once."""

    @abstractmethod
    def stats(self) -> QueueStats: ...

    @abstractmethod
    def receive_dead(self, max_messages: int = 10) -> list[Message]:
        """Take messages from the dead-letter queue (they are acked with `ack`)."""

    @abstractmethod
    def delete(self) -> None:
        """Remove the queue and everything in it (for per-replica reply queues)."""

    def release(self, message: Message) -> bool:
        return self.extend(message, 0)

    def send_many(self, bodies: list[dict]) -> list[str]:
        """Several at once; adapters override this with one round trip where they can."""
        return [self.send(b) for b in bodies]

    def ack_many(self, messages: list[Message]) -> None:
        for m in messages:
            self.ack(m)

    def close(self) -> None:  # noqa: B027 - optional for adapters
        pass


def open_queue(url: str, name: str, *, create: bool = False, **options) -> Queue:
    """The adapter for a URL, e.g. ``sqlite:///var/lib/imgrec/queue.sqlite3``.

    `create` makes the queue if it is missing (and uses it as it is otherwise); without
    it a queue that does not exist is not brought into being, e.g. when a worker
    replies to a web replica that has stopped and deleted its reply queue.
    """
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        from imgrec.queues.sqlite import SqliteQueue

        return SqliteQueue(url, name, create=create, **options)
    if scheme in ("redis", "rediss"):
        from imgrec.queues.redis import RedisQueue

        return RedisQueue(url, name, create=create, **options)
    if scheme == "sqs":
        from imgrec.queues.sqs import SqsQueue

        return SqsQueue(url, name, create=create, **options)
    raise ValueError(f"unknown queue URL {url!r}: supported schemes are sqlite://, redis:// and sqs://")
