"""Taking uploads in: admission (backlog limit), reading, storing, queueing, waiting.

Each file is stored first and then a request naming it is queued (never the bytes:
see `imgrec.jobs.accept`); a waiting request registers for its reply before the
request is sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fastapi import Request as HttpRequest

from imgrec import jobs
from imgrec.errors import BackendError
from imgrec.imaging.header import ImageLimits
from imgrec.messages import Request, input_key, new_id
from imgrec.queues import Queue
from imgrec.settings import Settings
from imgrec.stores import ObjectStore
from imgrec.web import batches
from imgrec.web.backlog import Backlog, Reservation
from imgrec.web.metrics import WebMetrics
from imgrec.web.replies import ReplyListener
from imgrec.web.uploads import Upload, check_files, receive_files


@dataclass(frozen=True)
class Submitted:
    """One file of an upload: its job (None if the file was refused) and, for a waiting
    request, the future its reply will arrive on."""

    job_id: str | None
    upload: Upload
    reply: asyncio.Future | None = None


class Intake:
    def __init__(
        self, settings: Settings, store: ObjectStore, requests: Queue, replies: ReplyListener, metrics: WebMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings, self.store, self.requests, self.replies = settings, store, requests, replies
        self.limits = ImageLimits.from_settings(settings)
        self.stage = metrics.stage
        self.backlog = Backlog(requests, settings.max_backlog, clock=clock)
        # At most this many uploads are parsed, checked and stored at once; the others
        # wait, their bodies already received (a slow client holds no slot).
        self.gate = asyncio.Semaphore(settings.max_concurrent_uploads)
        # Pending records are written beside the inputs, not after them: two syncs (or two
        # round trips to S3) at once rather than one after the other.
        self._beside = ThreadPoolExecutor(settings.max_concurrent_uploads, thread_name_prefix="pending")
        # Header checks on threads of their own: however many hostile files arrive at once,
        # each check is bounded (imaging.header) and none delays the store's writes.
        self._checks = ThreadPoolExecutor(2, thread_name_prefix="header-check")

    async def take(
        self, request: HttpRequest, fields: tuple[str, ...], max_files: int, *, wait: bool, always_batch: bool
    ) -> tuple[str | None, list[Submitted]]:
        """Receive, check, store and queue an upload: (batch id, its files in order). Several
        files (or `always_batch`) make a batch. Raises BadInput for a refused request,
        Overloaded when it would take the backlog past its limit."""
        await self.backlog.refresh()
        self.backlog.check(1)  # full already: say so before receiving anything
        received = await receive_files(request, fields, max_files)
        try:
            async with self.gate:
                started = time.perf_counter()
                loop = asyncio.get_running_loop()
                uploads = await loop.run_in_executor(self._checks, check_files, received, self.limits)
                self.stage.labels("parse").observe(time.perf_counter() - started)
                await self.backlog.refresh()
                with self.backlog.reserve(sum(1 for u in uploads if not u.error)) as room:
                    batch_id = new_id() if always_batch or len(uploads) > 1 else None
                    return batch_id, await self.submit(uploads, wait=wait, batch_id=batch_id, room=room)
        finally:
            for u in received:
                u.file.close()

    async def submit(
        self, uploads: list[Upload], *, wait: bool, batch_id: str | None, room: Reservation
    ) -> list[Submitted]:
        submitted: list[Submitted] = []
        try:
            for up in uploads:
                submitted.append(Submitted(None, up) if up.error else await self._submit_one(up, wait, batch_id, room))
        except BackendError:
            for s in submitted:
                if s.job_id:
                    self.replies.forget(s.job_id)
            raise
        if batch_id:
            entries = [batches.entry(s.job_id, s.upload) for s in submitted]
            await asyncio.to_thread(batches.write_manifest, self.store, batch_id, entries, time.time())
        return submitted

    async def _submit_one(self, up: Upload, wait: bool, batch_id: str | None, room: Reservation) -> Submitted:
        job_id = new_id()
        reply_to = self.replies.name if wait else None
        request = Request(job_id, input_key(job_id, up.filename or "upload"), up.filename, batch_id, reply_to)
        fut = self.replies.expect(job_id) if wait else None  # before the request can be answered
        try:
            await asyncio.to_thread(self._store_and_send, up, request)
        except BackendError:
            self.replies.forget(job_id)
            raise
        room.sent(1)
        return Submitted(job_id, up, fut)

    def _store_and_send(self, up: Upload, request: Request) -> None:
        stored, queued = jobs.accept(self.store, self.requests, request, up.file, self._beside)
        self.stage.labels("store").observe(stored)
        self.stage.labels("enqueue").observe(queued)

    def close(self) -> None:
        self._beside.shutdown(wait=False)
        self._checks.shutdown(wait=False)

    async def wait_all(self, submitted: list[Submitted]) -> list[dict | None]:
        """Each file's result as the API shows it, in upload order (a refused file's entry
        says why), or None when no answer came within the request timeout."""
        timeout = self.settings.request_timeout

        async def one(s: Submitted) -> dict | None:
            if s.job_id is None or s.reply is None:
                return batches.entry(None, s.upload)
            output = await self.replies.wait(s.job_id, s.reply, timeout)
            return output.public() if output else None

        with self.stage.labels("wait").time():
            return list(await asyncio.gather(*(one(s) for s in submitted)))
