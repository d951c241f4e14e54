"""The web tier: stores each upload, queues a request, returns the worker's answer."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest

from imgrec import connect, jobs, registry
from imgrec.queue import Queue, open_queue
from imgrec.settings import Settings
from imgrec.store import ObjectNotFound, ObjectStore
from imgrec.web.auth import ApiKeys
from imgrec.web.limits import BodySizeLimit
from imgrec.web.metrics import RequestMetrics, SystemCollector
from imgrec.web.replies import ReplyListener
from imgrec.web.uploads import Upload, UploadError, read_uploads

log = logging.getLogger("imgrec.web")
CLASSIC_FIELDS = ("myfile", "inputFile")
API_FIELDS = ("file",)
RETRY_AFTER = 2  # seconds, in 503 and 429 answers
CSV_COLUMNS = ("filename", "job_id", "label", "class_index", "wnid", "score", "error")


@dataclass
class Services:
    settings: Settings
    store: ObjectStore
    requests: Queue
    replies: ReplyListener


class Overloaded(Exception):
    """The backlog is over its limit: the client should come back later (429)."""


class BackendUnavailable(Exception):
    """The queue or the store failed: the client should try again shortly (503)."""


async def backend(fn, *args):
    """Run a blocking queue/store call off the event loop; its failures become 503s."""
    try:
        return await asyncio.to_thread(fn, *args)
    except (ObjectNotFound, UploadError):
        raise
    except Exception as exc:
        log.warning("backend call %s failed: %s", getattr(fn, "__name__", fn), exc)
        raise BackendUnavailable(f"{type(exc).__name__}: {exc}") from exc


def _upload_schema(field: str, many: bool) -> dict:
    """OpenAPI for a multipart upload: the handlers read the form themselves (to answer bad
    input with their own messages), so the schema is stated here."""
    binary = {"type": "string", "format": "binary"}
    prop = {"type": "array", "items": binary} if many else binary
    schema = {"type": "object", "required": [field], "properties": {field: prop}}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def _public(output: dict) -> dict:
    """A result as the API shows it."""
    keys = ("job_id", "filename", "label", "class_index", "wnid", "score", "top", "error")
    return {k: output[k] for k in keys if k in output}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    services: Services | None = None
    metrics_registry = CollectorRegistry()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        nonlocal services
        store = connect.store(settings)
        requests = connect.request_queue(settings)
        reply_queue = open_queue(settings.queue_url, f"replies-{jobs.new_id()[:16]}", create=True)
        replies = ReplyListener(reply_queue, store, metrics_registry)
        replies.start()
        services = Services(settings, store, requests, replies)
        metrics_registry.register(SystemCollector(status_snapshot))
        log.info("web tier ready; replies on queue %s", replies.name)
        yield
        replies.stop()
        requests.close()

    app = FastAPI(title="imgrec", version="0.1.0", lifespan=lifespan)

    @app.exception_handler(BackendUnavailable)
    async def unavailable(request: Request, exc: BackendUnavailable):
        return _retry_later(request, 503, "the service's storage or queue is unavailable right now; please retry shortly")

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, exc: Overloaded):
        return _retry_later(request, 429, f"the service is busy ({exc} requests waiting); please retry shortly")

    stage_seconds = Histogram(
        "imgrec_web_stage_seconds", "time per upload in each web-tier stage", ["stage"], registry=metrics_registry,
        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    )

    backlog_seen = [0.0, 0]  # (when, depth): one queue look per quarter second, not per request
    uploads_gate = asyncio.Semaphore(settings.max_concurrent_uploads)

    async def admit() -> None:
        now = time.monotonic()
        if now - backlog_seen[0] > 0.25:
            backlog_seen[:] = [now, (await backend(svc().requests.stats)).depth]
        if backlog_seen[1] >= settings.max_backlog:
            raise Overloaded(backlog_seen[1])

    async def receive_uploads(request: Request, fields: tuple[str, ...], max_files: int) -> list[Upload]:
        await admit()
        with stage_seconds.labels("parse").time():
            return await read_uploads(request, fields, max_files, settings.max_pixels)

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    if keys := [k.strip() for k in settings.api_keys.split(",") if k.strip()]:
        app.add_middleware(ApiKeys, keys=keys)
    app.add_middleware(RequestMetrics, registry=metrics_registry)

    def svc() -> Services:
        assert services is not None, "the app is not started"
        return services

    # --- submitting -----------------------------------------------------------------

    async def submit(uploads: list[Upload], *, wait: bool, batch_id: str | None) -> list[tuple[str, Upload, asyncio.Future | None]]:
        s = svc()
        submitted: list[tuple[str, Upload, asyncio.Future | None]] = []
        try:
            for up in uploads:
                submitted.append((None, up, None) if up.error else await submit_one(up, wait, batch_id))
        except BackendUnavailable:
            for job_id, _, _ in submitted:
                if job_id:
                    s.replies.forget(job_id)
            raise
        if batch_id:
            manifest = {
                "batch_id": batch_id,
                "created": time.time(),
                "jobs": [_entry(j, up) for j, up, _ in submitted],
            }
            await backend(s.store.put, jobs.batch_key(batch_id), jobs.dumps(manifest), "application/json")
        return submitted

    async def submit_one(up: Upload, wait: bool, batch_id: str | None) -> tuple[str, Upload, asyncio.Future | None]:
        """Store the input, then queue the request that names it (never the bytes)."""
        s = svc()
        job_id = jobs.new_id()
        key = jobs.input_key(job_id, up.filename or "upload")
        with stage_seconds.labels("store").time():
            await backend(s.store.put, key, up.data)
        fut = s.replies.expect(job_id) if wait else None
        body = {
            "job_id": job_id,
            "input_key": key,
            "filename": up.filename,
            "batch_id": batch_id,
            "reply_to": s.replies.name if wait else None,
            "mode": "sync" if wait else "async",
            "sent_at": time.time(),
        }
        try:
            with stage_seconds.labels("enqueue").time():
                await backend(s.requests.send, body)
        except BackendUnavailable:
            s.replies.forget(job_id)
            raise
        return job_id, up, fut

    async def wait_all(submitted) -> list[dict | None]:
        timeout = settings.request_timeout
        with stage_seconds.labels("wait").time():
            return list(await asyncio.gather(*(
                svc().replies.wait(j, f, timeout) if j else _refused(up) for j, up, f in submitted
            )))

    # --- the classic workload generator ------------------------------------------------

    @app.post(
        "/", response_class=PlainTextResponse, summary="Classic: one image in 'myfile', answers name:label",
        openapi_extra=_upload_schema("myfile", many=False),
    )
    async def classic(request: Request):
        async with uploads_gate:
            try:
                up = (await receive_uploads(request, CLASSIC_FIELDS, 1))[0]
            except UploadError as exc:
                return PlainTextResponse(exc.message + "\n", status_code=exc.status)
            submitted = await submit([up], wait=True, batch_id=None)
        (result,) = await wait_all(submitted)
        name = jobs.display_name(up.filename)
        if result is None:
            return PlainTextResponse(f"{name}: timed out waiting for a worker\n", status_code=504)
        if "error" in result:
            return PlainTextResponse(f"{name}: {result['error']}\n", status_code=422)
        return PlainTextResponse(f"{name}:{result['label']}")

    # --- the JSON API -----------------------------------------------------------------

    @app.post(
        "/api/v1/classify", summary="Classify one or more images (field 'file'); waits for the results",
        openapi_extra=_upload_schema("file", many=True),
    )
    async def api_classify(request: Request):
        async with uploads_gate:
            try:
                uploads = await receive_uploads(request, API_FIELDS, settings.max_files_per_request)
            except UploadError as exc:
                return _error(exc.status, exc.message)
            batch_id = jobs.new_id() if len(uploads) > 1 else None
            submitted = await submit(uploads, wait=True, batch_id=batch_id)
        results = await wait_all(submitted)
        if any(r is None for r in results):
            return _error(504, "timed out waiting for a worker; finished results will be at GET /api/v1/jobs/{job_id}")
        body: dict = {"results": [_public(r) for r in results if r is not None]}
        if batch_id:
            await backend(write_batch_results, batch_id, body["results"])
            body["batch_id"] = batch_id
        status = 422 if all("error" in r for r in body["results"]) else 200
        return JSONResponse(body, status_code=status)

    @app.post(
        "/api/v1/jobs", status_code=202, summary="Submit images (field 'file'); answers at once with job ids",
        openapi_extra=_upload_schema("file", many=True),
    )
    async def api_submit(request: Request):
        async with uploads_gate:
            try:
                uploads = await receive_uploads(request, API_FIELDS, settings.max_files_per_request)
            except UploadError as exc:
                return _error(exc.status, exc.message)
            batch_id = jobs.new_id()
            submitted = await submit(uploads, wait=False, batch_id=batch_id)
        return JSONResponse(
            {
                "batch_id": batch_id,
                "batch_url": f"/api/v1/batches/{batch_id}",
                "jobs": [
                    {"job_id": j, "filename": up.filename, "status": "queued", "url": f"/api/v1/jobs/{j}"}
                    if j else {**_entry(j, up), "status": "rejected"}
                    for j, up, _ in submitted
                ],
            },
            status_code=202,
        )

    def job_status(job_id: str) -> dict | None:
        st = svc().store
        try:
            output = json.loads(st.get(jobs.output_key(job_id)))
            return {"job_id": job_id, "status": "failed" if "error" in output else "done", "result": _public(output)}
        except ObjectNotFound:
            pass
        if st.exists(jobs.running_key(job_id)):
            return {"job_id": job_id, "status": "running"}
        if next(iter(st.list(f"inputs/{job_id}/")), None):
            return {"job_id": job_id, "status": "queued"}
        return None

    @app.get("/api/v1/jobs/{job_id}", summary="A job's status and result")
    async def api_job(job_id: str):
        if not jobs.is_id(job_id):
            return _error(404, "no such job: a job id is 32 hexadecimal characters")
        status = await backend(job_status, job_id)
        return status if status else _error(404, f"no such job: {job_id}")

    def write_batch_results(batch_id: str, results: list[dict]) -> None:
        st = svc().store
        st.put(jobs.batch_key(batch_id, "results.json"), jobs.dumps({"batch_id": batch_id, "results": results}), "application/json")
        st.put(jobs.batch_key(batch_id, "results.csv"), _to_csv(results).encode(), "text/csv")

    def batch_view(batch_id: str) -> dict | None:
        st = svc().store
        try:
            manifest = json.loads(st.get(jobs.batch_key(batch_id)))
        except ObjectNotFound:
            return None
        try:
            return {"status": "done", **json.loads(st.get(jobs.batch_key(batch_id, "results.json")))}
        except ObjectNotFound:
            pass
        results, done = [], 0
        for entry in manifest["jobs"]:
            if entry.get("error"):  # refused at upload
                done += 1
                results.append(entry)
                continue
            state = job_status(entry["job_id"]) or {"status": "queued"}
            if "result" in state:
                done += 1
                results.append(state["result"])
            else:
                results.append({"job_id": entry["job_id"], "filename": entry["filename"], "status": state["status"]})
        if done == len(manifest["jobs"]):
            write_batch_results(batch_id, results)  # merged once, as the original outputfile.txt
            return {"status": "done", "batch_id": batch_id, "results": results}
        return {"status": "running", "batch_id": batch_id, "done": done, "results": results}

    @app.get("/api/v1/batches/{batch_id}", summary="All results of a multi-image upload, in upload order (?format=csv)")
    async def api_batch(batch_id: str, format: str = "json"):
        if not jobs.is_id(batch_id):
            return _error(404, "no such batch: a batch id is 32 hexadecimal characters")
        if format not in ("json", "csv"):
            return _error(400, "format must be json or csv")
        view = await backend(batch_view, batch_id)
        if view is None:
            return _error(404, f"no such batch: {batch_id}")
        if format == "csv":
            if view["status"] != "done":
                return _error(409, "the batch is not finished yet; try again shortly", {"Retry-After": "1"})
            return Response(
                _to_csv(view["results"]), media_type="text/csv",
                headers={"Content-Disposition": f'attachment; filename="imgrec-{batch_id}.csv"'},
            )
        return view

    # --- operations -------------------------------------------------------------------

    def status_snapshot() -> dict:
        s = svc()
        stats = s.requests.stats()
        workers = registry.read_workers(s.store)
        sizes: dict[str, int] = {}
        for w in workers:
            for k, v in w.batch_sizes.items():
                sizes[k] = sizes.get(k, 0) + v
        return {
            "queue_depth": stats.depth,
            "in_flight": stats.in_flight,
            "dead_letter": stats.dead,
            "workers": sum(w.alive for w in workers),
            "completed": sum(w.completed for w in workers),
            "batch_sizes": sizes,
        }

    @app.get("/api/v1/status", summary="Queue depth, in-flight, live workers, dead letters, completed")
    async def api_status():
        return await backend(status_snapshot)

    @app.get("/healthz", include_in_schema=False)
    async def healthz():
        return {"ok": True}

    @app.get("/readyz", include_in_schema=False)
    async def readyz():
        try:
            await backend(svc().requests.stats)
            await backend(svc().store.exists, "readyz")
        except BackendUnavailable as exc:
            return _error(503, f"not ready: {exc}", {"Retry-After": "1"})
        return {"ready": True}

    @app.get("/metrics", include_in_schema=False)
    async def metrics():
        data = await backend(generate_latest, metrics_registry)
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    page = resources.files("imgrec.web").joinpath("static/index.html").read_text("utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return page

    return app


def _entry(job_id: str | None, up: Upload) -> dict:
    entry = {"job_id": job_id, "filename": up.filename}
    if up.error:
        entry["error"] = up.error.message
    return entry


async def _refused(up: Upload) -> dict:
    return _entry(None, up)


def _retry_later(request: Request, status: int, message: str) -> Response:
    headers = {"Retry-After": str(RETRY_AFTER)}
    if request.url.path == "/":
        return PlainTextResponse(message + "\n", status_code=status, headers=headers)
    return _error(status, message, headers)


def _to_csv(results: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for r in results:
        writer.writerow(r)
    return buf.getvalue()
