"""The adapters a part of the service uses, chosen by the settings' URLs."""

from __future__ import annotations

from imgrec import jobs
from imgrec.queue import Queue, open_queue
from imgrec.settings import Settings
from imgrec.store import ObjectStore, open_store


def request_queue(settings: Settings) -> Queue:
    return open_queue(
        settings.queue_url, jobs.REQUEST_QUEUE, create=True,
        visibility_timeout=settings.visibility_timeout, max_receives=settings.max_receives,
    )


def store(settings: Settings) -> ObjectStore:
    return open_store(settings.store_url)


def init(settings: Settings) -> list[str]:
    """Create what a deployment needs and does not have yet (bucket, queues); idempotent."""
    done = []
    st = store(settings)
    if hasattr(st, "create"):
        st.create()
    done.append(f"store ready: {settings.store_url}")
    request_queue(settings).close()
    done.append(f"queue ready: {settings.queue_url} ({jobs.REQUEST_QUEUE} and its dead-letter queue)")
    return done
