"""Taking uploads in: admission (backlog limit), reading, storing, queueing, waiting.

Each file is stored first and then a request naming it is queued (never the bytes),
an upload's files as one group, committed together with the other uploads of the
moment (`imgrec.jobs.Committer`); a waiting request registers for its reply before
the request is sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from fastapi import Request as HttpRequest

from imgrec import jobs
from imgrec.imaging.header import ImageLimits
from imgrec.messages import Request, input_key, new_id
from imgrec.queues import Queue
from imgrec.settings import Settings
from imgrec.stores import ObjectStore, Staged
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
        clock: Callable[[], float] = time.monotonic, model: str | None = None, beside: Intake | None = None,
    ) -> None:
        self.settings, self.store, self.requests, self.replies = settings, store, requests, replies
        # The model its requests ask for, named in them where several are served (None: the only one)
        self.model = model if model is not None and len(settings.served_models) > 1 else None
        self.limits = ImageLimits.from_settings(settings)
        self.stage = metrics.stage
        self.backlog = Backlog(requests, settings.max_backlog, clock=clock)
        # Another model's intake on this replica shares the first one's gate and threads: the
        # limits below are the replica's, however many models it serves.
        # At most this many uploads are parsed, checked and stored at once; the others
        # wait, their bodies already received (a slow client holds no slot).
        self.gate: asyncio.Semaphore = beside.gate if beside else asyncio.Semaphore(settings.max_concurrent_uploads)
        # The threads that stage uploads' files (several files of one upload at once: their
        # flushes overlap), and the one that commits them in groups to this model's queue.
        self._io: ThreadPoolExecutor = beside._io if beside else ThreadPoolExecutor(
            settings.max_concurrent_uploads, thread_name_prefix="stage"
        )
        self.committer = jobs.Committer(store, requests)
        # A durable queue is the job's record; another keeps a pending record in the store.
        # So does every job where several models are served: should a damaged queue file
        # lose its message, `imgrec queue salvage` finds its model there.
        self.keep_pending = not requests.durable() or self.model is not None
        # Header checks on threads of their own: however many hostile files arrive at once,
        # each check is bounded (imaging.header) and none delays the store's writes.
        self._checks: ThreadPoolExecutor = beside._checks if beside else ThreadPoolExecutor(2, thread_name_prefix="header-check")

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
        """Store and queue the upload's good files as one group (`jobs.Committer`): staged
        at once on the intake's threads, then committed with whatever other uploads were
        staged meanwhile. A waiting request registers for each reply before it is sent."""
        now, reply_to = time.time(), self.replies.name if wait else None
        requests: dict[int, Request] = {}  # by id() of the upload
        for up in uploads:
            if not up.error:
                job_id = new_id()
                requests[id(up)] = Request(job_id, input_key(job_id, up.filename or "upload"), up.filename, batch_id,
                                           reply_to, now, model=self.model)
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        staging = [
            loop.run_in_executor(self._io, jobs.stage, self.store, requests[id(up)], up.file, self.keep_pending)
            for up in uploads if not up.error
        ]
        submitted = [Submitted(requests[id(up)].job_id if not up.error else None, up) for up in uploads]
        if batch_id:
            entries = [batches.entry(s.job_id, s.upload) for s in submitted]
            staging.append(loop.run_in_executor(self._io, self._stage_manifest, batch_id, entries, now))
        results = await asyncio.gather(*staging, return_exceptions=True)
        staged = [x for r in results if not isinstance(r, BaseException) for x in r]
        if failed := next((r for r in results if isinstance(r, BaseException)), None):
            await loop.run_in_executor(self._io, self.store.discard, staged)
            raise failed
        stored = time.perf_counter()
        if wait:  # before the requests can be answered
            submitted = [replace(s, reply=self.replies.expect(s.job_id)) if s.job_id else s for s in submitted]
        try:
            await asyncio.wrap_future(self.committer.commit(staged, list(requests.values())))
        except BaseException:  # an outage, or the request cancelled: nobody waits for these replies
            for s in submitted:
                if s.job_id:
                    self.replies.forget(s.job_id)
            raise
        self.stage.labels("store").observe(stored - started)
        self.stage.labels("enqueue").observe(time.perf_counter() - stored)
        room.sent(len(requests))
        return submitted

    def _stage_manifest(self, batch_id: str, entries: list[dict], created: float) -> list[Staged]:
        return [batches.stage_manifest(self.store, batch_id, entries, created)]

    def close(self) -> None:
        self.committer.close()
        self._io.shutdown(wait=False)
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
