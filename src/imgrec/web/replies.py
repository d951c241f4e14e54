"""The reply channel of one web replica: its own queue, read by one thread.

Workers send each result to the queue named in the request (`reply_to`), so
replicas never take each other's replies. The thread survives any error (see
`imgrec.background`), and readiness fails while it cannot read its queue. Waiting requests hold a future per job;
if a reply is lost (e.g. the replica restarted), the result is still read from
the store, which is checked every `recheck` seconds while waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time

from imgrec.background import Loop
from imgrec.errors import BackendError, BadInput
from imgrec.jobs import read_output
from imgrec.messages import Output, Reply
from imgrec.presence import Presence
from imgrec.queues import Queue
from imgrec.stores import ObjectStore
from imgrec.web.metrics import WebMetrics

log = logging.getLogger("imgrec.web.replies")


class ReplyListener:
    def __init__(self, queue: Queue, store: ObjectStore, metrics: WebMetrics, recheck: float = 5.0) -> None:
        self.queue, self.store, self.recheck = queue, store, recheck
        self._answers = metrics.replies
        self._waiting: dict[str, asyncio.Future] = {}  # touched only on the event loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener = Loop("reply listener", self._listen_once, log=log, expected=(BackendError,))
        # So that no sweeper takes this replica for dead and removes its queue.
        self._presence = Presence(store, "web", queue.name)

    @property
    def name(self) -> str:
        return self.queue.name

    @property
    def healthy(self) -> bool:
        """Listening, and its last look at the queue succeeded (readiness asks)."""
        return self._listener.healthy

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._presence.start()
        self._listener.start()

    def stop(self) -> None:
        self._listener.stop()
        self._presence.stop(None)
        try:
            self.queue.delete()
        except BackendError as exc:  # the autoscaler's sweep removes it later
            log.warning("reply queue %s not removed (%s)", self.name, exc)
        self.queue.close()

    def expect(self, job_id: str) -> asyncio.Future:
        """Register before sending the request, so that no reply can arrive unexpected."""
        fut = self._waiting[job_id] = asyncio.get_running_loop().create_future()
        return fut

    def forget(self, job_id: str) -> None:
        self._waiting.pop(job_id, None)

    async def wait(self, job_id: str, fut: asyncio.Future, timeout: float) -> Output | None:
        """The job's result, or None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                try:
                    result = await asyncio.wait_for(asyncio.shield(fut), min(left, self.recheck))
                    self._answers.labels("queue").inc()
                    return result
                except TimeoutError:
                    try:
                        result = await asyncio.to_thread(read_output, self.store, job_id)
                    except BackendError as exc:  # the store is down: keep waiting for the reply
                        log.warning("store unavailable while waiting for job %s: %s", job_id, exc)
                        result = None
                    if result is not None:
                        self._answers.labels("store").inc()
                        return result
            return None
        finally:
            self._waiting.pop(job_id, None)

    def _deliver(self, answers: list[tuple[str, Output]]) -> None:
        for job_id, output in answers:
            fut = self._waiting.get(job_id)
            if fut is not None and not fut.done():
                fut.set_result(output)

    def _listen_once(self) -> None:
        assert self._loop is not None
        messages = self.queue.receive(100, wait=0.5)
        answers = []
        for m in messages:
            try:
                reply = Reply.from_dict(m.body)
            except BadInput:
                log.error("ignoring a malformed reply: %r", m.body)
                continue
            answers.append((reply.job_id, reply.output))
        if answers:  # one wake-up of the event loop per batch, not per reply
            self._loop.call_soon_threadsafe(self._deliver, answers)
        if messages:
            try:
                self.queue.ack_many(messages)
            except BackendError as exc:
                log.warning("acking replies failed (%s); they may be delivered twice (harmless)", exc)
