"""Taking uploads in: admission (backlog limit), reading, storing, queueing, waiting.

Each file is stored first and then a request naming it is queued (never the bytes);
a waiting request registers for its reply before the request is sent.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import Request
from prometheus_client import CollectorRegistry, Histogram

from imgrec import jobs
from imgrec.queue import Queue
from imgrec.settings import Settings
from imgrec.store import ObjectStore
from imgrec.web import results
from imgrec.web.replies import ReplyListener
from imgrec.web.responses import BackendUnavailable, Overloaded, backend
from imgrec.web.uploads import Upload, read_uploads

Submitted = tuple[str | None, Upload, asyncio.Future | None]  # (job id, upload, reply future)


class Intake:
    def __init__(
        self, settings: Settings, store: ObjectStore, requests: Queue, replies: ReplyListener, registry: CollectorRegistry
    ) -> None:
        self.settings, self.store, self.requests, self.replies = settings, store, requests, replies
        self.stage = Histogram(
            "imgrec_web_stage_seconds", "time per upload in each web-tier stage", ["stage"], registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        # At most this many uploads are read and stored at once; others wait unread.
        self.gate = asyncio.Semaphore(settings.max_concurrent_uploads)
        self._backlog_seen = (0.0, 0)  # (when, depth): one queue look per quarter second

    async def admit(self) -> None:
        when, depth = self._backlog_seen
        if time.monotonic() - when > 0.25:
            depth = (await backend(self.requests.stats)).depth
            self._backlog_seen = (time.monotonic(), depth)
        if depth >= self.settings.max_backlog:
            raise Overloaded(depth)

    async def take(
        self, request: Request, fields: tuple[str, ...], max_files: int, *, wait: bool, always_batch: bool
    ) -> tuple[str | None, list[Submitted]]:
        """Admit, read, store and queue an upload: (batch id, its files in order). Several
        files (or `always_batch`) make a batch. Raises UploadError for a refused request."""
        async with self.gate:
            await self.admit()
            started = time.perf_counter()
            async with read_uploads(request, fields, max_files, self.settings.max_pixels) as uploads:
                self.stage.labels("parse").observe(time.perf_counter() - started)
                batch_id = jobs.new_id() if always_batch or len(uploads) > 1 else None
                return batch_id, await self.submit(uploads, wait=wait, batch_id=batch_id)

    async def submit(self, uploads: list[Upload], *, wait: bool, batch_id: str | None) -> list[Submitted]:
        submitted: list[Submitted] = []
        try:
            for up in uploads:
                submitted.append((None, up, None) if up.error else await self._submit_one(up, wait, batch_id))
        except BackendUnavailable:
            for job_id, _, _ in submitted:
                if job_id:
                    self.replies.forget(job_id)
            raise
        if batch_id:
            entries = [results.entry(j, up) for j, up, _ in submitted]
            await backend(results.write_batch_manifest, self.store, batch_id, entries, time.time())
        return submitted

    async def _submit_one(self, up: Upload, wait: bool, batch_id: str | None) -> Submitted:
        job_id = jobs.new_id()
        key = jobs.input_key(job_id, up.filename or "upload")
        body = {
            "job_id": job_id,
            "input_key": key,
            "filename": up.filename,
            "batch_id": batch_id,
            "reply_to": self.replies.name if wait else None,
            "mode": "sync" if wait else "async",
        }
        fut = self.replies.expect(job_id) if wait else None  # before the request can be answered
        try:
            await backend(self._store_and_send, key, up, body)
        except BackendUnavailable:
            self.replies.forget(job_id)
            raise
        return job_id, up, fut

    def _store_and_send(self, key: str, up: Upload, body: dict) -> None:
        """Store the input, then queue the request naming it: one trip off the event loop."""
        t0 = time.perf_counter()
        self.store.put_file(key, up.file)
        t1 = time.perf_counter()
        self.requests.send({**body, "sent_at": time.time()})
        self.stage.labels("store").observe(t1 - t0)
        self.stage.labels("enqueue").observe(time.perf_counter() - t1)

    async def wait_all(self, submitted: list[Submitted]) -> list[dict | None]:
        """Each file's result in upload order (None: no answer within the request timeout)."""
        timeout = self.settings.request_timeout

        async def one(job_id, up, fut):
            return await self.replies.wait(job_id, fut, timeout) if job_id else results.entry(None, up)

        with self.stage.labels("wait").time():
            return list(await asyncio.gather(*(one(*s) for s in submitted)))
