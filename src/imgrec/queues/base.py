"""The queue port: at-least-once delivery with visibility timeouts and a dead-letter queue.

A `Queue` is one named queue. A received message stays invisible to other
consumers for the visibility timeout; if it is not acked by then it is delivered
again. After `max_receives` deliveries without an ack it moves to the queue's
dead-letter queue instead of being delivered once more.

Adapters live beside it in `imgrec.queues` (`open_queue` picks one by URL). Every method
raises only `imgrec.errors` exceptions: `BackendUnavailable` when the server
cannot be reached or cannot take more now, `QueueMissing` for a queue that does
not exist (opened without `create`, or deleted).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from imgrec.errors import ConfigError
from imgrec.messages import JsonObject
from imgrec.settings import Settings

DEFAULT_TIMEOUT: float = Settings.model_fields["backend_timeout"].default


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    body: JsonObject
    receipt: str  # identifies this delivery; a stale receipt cannot ack a newer one
    receive_count: int


@dataclass(frozen=True, slots=True)
class QueueStats:
    depth: int  # waiting to be received
    in_flight: int  # received, not yet acked
    dead: int  # in the dead-letter queue
    # When the newest message was sent, in seconds since the epoch (0.0: none yet), or
    # None where the queue cannot tell (SQS): the autoscaler sees by it every request,
    # even those answered between two of its looks.
    last_sent: float | None = None


class Queue(ABC):
    def __init__(
        self, name: str, *, visibility_timeout: float = 30.0, max_receives: int = 5, ephemeral: bool = False,
        timeout: float = DEFAULT_TIMEOUT, check: bool = False,
    ) -> None:
        if not name or len(name) > 80 or not all(c.isalnum() or c in "-_" for c in name):
            raise ConfigError(f"bad queue name {name!r}: letters, digits, - and _ only, up to 80")
        self.name = name
        # Seconds a call may take before it fails as BackendUnavailable, where the adapter
        # can bound it (a server that stalls is an outage, never a hang).
        self.timeout = timeout
        # Look for damage when opening (the request queue, at each process's start): one
        # line saying what to do, rather than a service that never gets ready.
        self.check = check
        self.visibility_timeout = visibility_timeout
        self.max_receives = max_receives
        # Its messages need not outlive the machine (a web replica's replies: a power loss
        # ends the requests waiting for them too); an adapter may then skip syncing sends.
        self.ephemeral = ephemeral

    @abstractmethod
    def send(self, body: JsonObject) -> str:
        """Enqueue a JSON-serialisable body; returns the message id. QueueMissing if the
        queue was deleted: a send never brings a deleted queue back."""

    @abstractmethod
    def receive(self, max_messages: int = 1, wait: float = 0.0) -> list[Message]:
        """Up to `max_messages`, blocking up to `wait` seconds for the first one."""

    @abstractmethod
    def ack(self, message: Message) -> bool:
        """Delete a received message; False if its receipt is stale (it was redelivered)."""

    @abstractmethod
    def extend(self, message: Message, seconds: float) -> bool:
        """Keep a message invisible `seconds` from now, at most one visibility timeout (all
        that Redis can give); 0 releases it at once."""

    @abstractmethod
    def stats(self) -> QueueStats: ...

    @abstractmethod
    def receive_dead(self, max_messages: int = 10) -> list[Message]:
        """Take messages from the dead-letter queue (they are acked with `ack`)."""

    @abstractmethod
    def delete(self) -> None:
        """Remove the queue and everything in it (for per-replica reply queues)."""

    def volatile(self) -> str | None:
        """Why messages would not survive a restart of the queue's server, or None when
        they would (or it cannot be told)."""
        return None

    def durable(self) -> bool:
        """True when every send, once it returns, survives the queue's server restarting
        (and its host losing power, as far as the server syncs): the job's record can then
        live in the queue alone. False where that is not so or cannot be told; the web
        tier then keeps a pending record of each job in the store (see `imgrec.jobs`)."""
        return False

    def create(self) -> None:  # noqa: B027 - adapters whose queues need making override it
        """Make the queue (and its dead-letter queue) if missing; idempotent."""

    def release(self, message: Message) -> bool:
        return self.extend(message, 0)

    def send_many(self, bodies: list[JsonObject]) -> list[str]:
        """Several at once; adapters override this with one round trip where they can."""
        return [self.send(b) for b in bodies]

    def ack_many(self, messages: list[Message]) -> None:
        for m in messages:
            self.ack(m)

    def close(self) -> None:  # noqa: B027 - optional for adapters
        pass
