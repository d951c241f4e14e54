"""The queue: its port (`base`) and the adapters, chosen by URL: ``sqlite://``,
``redis://``, ``sqs://``, ``memory://`` (each in its own module, imported when chosen)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from imgrec.errors import ConfigError
from imgrec.messages import request_queue_name
from imgrec.queues.base import Message, Queue, QueueStats

__all__ = ["Message", "Queue", "QueueStats", "open_queue", "request_queue"]

if TYPE_CHECKING:
    from imgrec.settings import Settings


def open_queue(url: str, name: str, *, create: bool = False, **options: Any) -> Queue:
    """The adapter for a URL, e.g. ``sqlite:///var/lib/imgrec/queue.sqlite3``.

    `create` makes the queue if it is missing (and uses it as it is otherwise); without
    it a queue that does not exist is not brought into being, e.g. when a worker
    replies to a web replica that has stopped and deleted its reply queue.
    """
    scheme = urlparse(url).scheme
    adapter: Callable[..., Queue]
    if scheme == "sqlite":
        from imgrec.queues.sqlite import SqliteQueue as adapter
    elif scheme in ("redis", "rediss"):
        from imgrec.queues.redis import RedisQueue as adapter
    elif scheme == "sqs":
        from imgrec.queues.sqs import SqsQueue as adapter
    elif scheme == "memory":
        from imgrec.queues.memory import MemoryQueue as adapter
    else:
        raise ConfigError(f"unknown queue URL {url!r}: supported schemes are sqlite://, redis:// and sqs://")
    return adapter(url, name, create=create, **options)


# The workers give an image up after `max_receives` failed attempts themselves (see
# worker.batch); the queue's own dead-letter threshold is a few deliveries further, a
# safety net for a message whose workers keep ending before they can count it.
DELIVERY_SLACK = 3


def request_queue(settings: Settings, model: str | None = None) -> Queue:
    """The queue of classification requests for `model` (default: the one this process serves,
    IMGREC_MODEL), made if missing. A queue whose server keeps nothing on disk is refused
    unless the operator said it is fine (jobs it loses are sent again from their pending
    records, but clients waiting meanwhile time out)."""
    name = request_queue_name(model or settings.model, settings.default_model)
    queue = open_queue(
        settings.queue_url, name, create=True, timeout=settings.backend_timeout, check=True,
        visibility_timeout=settings.visibility_timeout, max_receives=settings.max_receives + DELIVERY_SLACK,
    )
    if (why := queue.volatile()) and not settings.allow_volatile_queue:
        queue.close()
        raise ConfigError(
            f"{why}. Turn persistence on (redis-cli CONFIG SET appendonly yes, and in redis.conf), "
            "or accept the risk with IMGREC_ALLOW_VOLATILE_QUEUE=1"
        )
    return queue
