"""Taking uploads in: admission (backlog limit), reading, storing, queueing, waiting.

Each file is stored first and then a request naming it is queued (never the bytes);
a waiting request registers for its reply before the request is sent.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from fastapi import Request as HttpRequest

from imgrec.errors import BackendError, Overloaded
from imgrec.messages import Request, input_key, new_id
from imgrec.queue import Queue
from imgrec.settings import Settings
from imgrec.store import ObjectStore
from imgrec.web import results
from imgrec.web.metrics import WebMetrics
from imgrec.web.replies import ReplyListener
from imgrec.web.uploads import Upload, read_uploads


@dataclass(frozen=True)
class Submitted:
    """One file of an upload: its job (None if the file was refused) and, for a waiting
    request, the future its reply will arrive on."""

    job_id: str | None
    upload: Upload
    reply: asyncio.Future | None = None


class Intake:
    def __init__(
        self, settings: Settings, store: ObjectStore, requests: Queue, replies: ReplyListener, metrics: WebMetrics
    ) -> None:
        self.settings, self.store, self.requests, self.replies = settings, store, requests, replies
        self.stage = metrics.stage
        # At most this many uploads are read and stored at once; others wait unread.
        self.gate = asyncio.Semaphore(settings.max_concurrent_uploads)
        self._backlog_seen = (0.0, 0)  # (when, depth): one queue look per quarter second

    async def admit(self) -> None:
        when, depth = self._backlog_seen
        if time.monotonic() - when > 0.25:
            depth = (await asyncio.to_thread(self.requests.stats)).depth
            self._backlog_seen = (time.monotonic(), depth)
        if depth >= self.settings.max_backlog:
            raise Overloaded(depth)

    async def take(
        self, request: HttpRequest, fields: tuple[str, ...], max_files: int, *, wait: bool, always_batch: bool
    ) -> tuple[str | None, list[Submitted]]:
        """Admit, read, store and queue an upload: (batch id, its files in order). Several
        files (or `always_batch`) make a batch. Raises BadInput for a refused request."""
        async with self.gate:
            await self.admit()
            started = time.perf_counter()
            async with read_uploads(request, fields, max_files, self.settings.max_pixels) as uploads:
                self.stage.labels("parse").observe(time.perf_counter() - started)
                batch_id = new_id() if always_batch or len(uploads) > 1 else None
                return batch_id, await self.submit(uploads, wait=wait, batch_id=batch_id)

    async def submit(self, uploads: list[Upload], *, wait: bool, batch_id: str | None) -> list[Submitted]:
        submitted: list[Submitted] = []
        try:
            for up in uploads:
                submitted.append(Submitted(None, up) if up.error else await self._submit_one(up, wait, batch_id))
        except BackendError:
            for s in submitted:
                if s.job_id:
                    self.replies.forget(s.job_id)
            raise
        if batch_id:
            entries = [results.entry(s.job_id, s.upload) for s in submitted]
            await asyncio.to_thread(results.write_batch_manifest, self.store, batch_id, entries, time.time())
        return submitted

    async def _submit_one(self, up: Upload, wait: bool, batch_id: str | None) -> Submitted:
        job_id = new_id()
        reply_to = self.replies.name if wait else None
        request = Request(job_id, input_key(job_id, up.filename or "upload"), up.filename, batch_id, reply_to)
        fut = self.replies.expect(job_id) if wait else None  # before the request can be answered
        try:
            await asyncio.to_thread(self._store_and_send, up, request)
        except BackendError:
            self.replies.forget(job_id)
            raise
        return Submitted(job_id, up, fut)

    def _store_and_send(self, up: Upload, request: Request) -> None:
        """Store the input, then queue the request naming it: one trip off the event loop."""
        t0 = time.perf_counter()
        self.store.put_file(request.input_key, up.file)
        t1 = time.perf_counter()
        self.requests.send({**request.to_dict(), "sent_at": time.time()})
        self.stage.labels("store").observe(t1 - t0)
        self.stage.labels("enqueue").observe(time.perf_counter() - t1)

    async def wait_all(self, submitted: list[Submitted]) -> list[dict | None]:
        """Each file's result as the API shows it, in upload order (a refused file's entry
        says why), or None when no answer came within the request timeout."""
        timeout = self.settings.request_timeout

        async def one(s: Submitted) -> dict | None:
            if s.job_id is None:
                return results.entry(None, s.upload)
            output = await self.replies.wait(s.job_id, s.reply, timeout)
            return output.public() if output else None

        with self.stage.labels("wait").time():
            return list(await asyncio.gather(*(one(s) for s in submitted)))
