"""The web tier: stores each upload, queues a request, returns the worker's answer.

Routes only parse and answer; `intake` takes uploads in, `results` reads them back,
`responses` holds the error answers. Cross-cutting concerns are ASGI middleware.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from imgrec import connect, jobs
from imgrec.queue import Queue, open_queue
from imgrec.settings import Settings
from imgrec.store import ObjectStore
from imgrec.web import results
from imgrec.web.auth import ApiKeys
from imgrec.web.intake import Intake
from imgrec.web.limits import BodySizeLimit
from imgrec.web.metrics import RequestMetrics, SystemCollector
from imgrec.web.replies import ReplyListener
from imgrec.web.responses import BackendUnavailable, Overloaded, backend, error, retry_later
from imgrec.web.uploads import UploadError

log = logging.getLogger("imgrec.web")
CLASSIC_FIELDS = ("myfile", "inputFile")
API_FIELDS = ("file",)


@dataclass
class Services:
    store: ObjectStore
    requests: Queue
    replies: ReplyListener
    intake: Intake


def _upload_schema(field: str, many: bool) -> dict:
    """OpenAPI for a multipart upload: the handlers read the form themselves (to answer bad
    input with their own messages), so the schema is stated here."""
    binary = {"type": "string", "format": "binary"}
    prop = {"type": "array", "items": binary} if many else binary
    schema = {"type": "object", "required": [field], "properties": {field: prop}}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics_registry = CollectorRegistry()
    services: Services | None = None

    def svc() -> Services:
        assert services is not None, "the app is not started"
        return services

    def status_snapshot() -> dict:
        return results.status_snapshot(svc().requests, svc().store)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        nonlocal services
        store = connect.store(settings)
        requests = connect.request_queue(settings)
        reply_queue = open_queue(settings.queue_url, f"replies-{jobs.new_id()[:16]}", create=True)
        replies = ReplyListener(reply_queue, store, metrics_registry)
        replies.start()
        services = Services(store, requests, replies, Intake(settings, store, requests, replies, metrics_registry))
        metrics_registry.register(SystemCollector(status_snapshot))
        log.info("web tier ready; replies on queue %s", replies.name)
        yield
        replies.stop()
        requests.close()

    app = FastAPI(title="imgrec", version="0.1.0", lifespan=lifespan)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    if keys := [k.strip() for k in settings.api_keys.split(",") if k.strip()]:
        app.add_middleware(ApiKeys, keys=keys)
    app.add_middleware(RequestMetrics, registry=metrics_registry)

    @app.exception_handler(BackendUnavailable)
    async def unavailable(request: Request, exc: BackendUnavailable):
        return retry_later(request, 503, "the service's storage or queue is unavailable right now; please retry shortly")

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, exc: Overloaded):
        return retry_later(request, 429, f"the service is busy ({exc} requests waiting); please retry shortly")

    # --- the classic workload generator ------------------------------------------------

    @app.post(
        "/", response_class=PlainTextResponse, summary="Classic: one image in 'myfile', answers name:label",
        openapi_extra=_upload_schema("myfile", many=False),
    )
    async def classic(request: Request):
        intake = svc().intake
        try:
            _, submitted = await intake.take(request, CLASSIC_FIELDS, 1, wait=True, always_batch=False)
        except UploadError as exc:
            return PlainTextResponse(exc.message + "\n", status_code=exc.status)
        (result,) = await intake.wait_all(submitted)
        name = jobs.display_name(submitted[0][1].filename)
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
        intake = svc().intake
        try:
            batch_id, submitted = await intake.take(
                request, API_FIELDS, settings.max_files_per_request, wait=True, always_batch=False
            )
        except UploadError as exc:
            return error(exc.status, exc.message)
        answers = await intake.wait_all(submitted)
        if any(r is None for r in answers):
            return error(504, "timed out waiting for a worker; finished results will be at GET /api/v1/jobs/{job_id}")
        body: dict = {"results": [results.public(r) for r in answers if r is not None]}
        if batch_id:
            await backend(results.write_batch_results, svc().store, batch_id, body["results"])
            body["batch_id"] = batch_id
        status = 422 if all("error" in r for r in body["results"]) else 200
        return JSONResponse(body, status_code=status)

    @app.post(
        "/api/v1/jobs", status_code=202, summary="Submit images (field 'file'); answers at once with job ids",
        openapi_extra=_upload_schema("file", many=True),
    )
    async def api_submit(request: Request):
        try:
            batch_id, submitted = await svc().intake.take(
                request, API_FIELDS, settings.max_files_per_request, wait=False, always_batch=True
            )
        except UploadError as exc:
            return error(exc.status, exc.message)
        listed = [
            {"job_id": j, "filename": up.filename, "status": "queued", "url": f"/api/v1/jobs/{j}"}
            if j else {**results.entry(j, up), "status": "rejected"}
            for j, up, _ in submitted
        ]
        body = {"batch_id": batch_id, "batch_url": f"/api/v1/batches/{batch_id}", "jobs": listed}
        return JSONResponse(body, status_code=202)

    @app.get("/api/v1/jobs/{job_id}", summary="A job's status and result")
    async def api_job(job_id: str):
        if not jobs.is_id(job_id):
            return error(404, "no such job: a job id is 32 hexadecimal characters")
        status = await backend(results.job_status, svc().store, job_id)
        return status if status else error(404, f"no such job: {job_id}")

    @app.get("/api/v1/batches/{batch_id}", summary="All results of a multi-image upload, in upload order (?format=csv)")
    async def api_batch(batch_id: str, format: str = "json"):
        if not jobs.is_id(batch_id):
            return error(404, "no such batch: a batch id is 32 hexadecimal characters")
        if format not in ("json", "csv"):
            return error(400, "format must be json or csv")
        view = await backend(results.batch_view, svc().store, batch_id)
        if view is None:
            return error(404, f"no such batch: {batch_id}")
        if format == "json":
            return view
        if view["status"] != "done":
            return error(409, "the batch is not finished yet; try again shortly", {"Retry-After": "1"})
        return Response(
            results.to_csv(view["results"]), media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="imgrec-{batch_id}.csv"'},
        )

    # --- operations -------------------------------------------------------------------

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
            return error(503, f"not ready: {exc}", {"Retry-After": "1"})
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
