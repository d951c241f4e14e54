"""The routes: each parses its request, calls intake or results, and answers.

Errors are raised, not answered here: `errors` renders them all one way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import APIRouter, Depends, Request, Security
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import APIKeyHeader, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from imgrec import jobs, presence
from imgrec.errors import BackendError, BadInput, CannotClassify, NotFound
from imgrec.messages import display_name, is_id
from imgrec.queues import Queue
from imgrec.settings import Settings
from imgrec.stores import ObjectStore
from imgrec.web import batches
from imgrec.web.errors import render
from imgrec.web.history import StatusHistory
from imgrec.web.intake import Intake
from imgrec.web.metrics import WebMetrics
from imgrec.web.readiness import Readiness

CLASSIC_FIELDS = ("myfile", "inputFile")
API_FIELDS = ("file",)
# Declared so that the OpenAPI schema (and /docs' "Authorize") knows the keys; the
# check itself is the ApiKeys middleware, which also guards what FastAPI does not route.
_KEY = [Security(APIKeyHeader(name="X-API-Key", auto_error=False)), Security(HTTPBearer(auto_error=False))]
router = APIRouter(dependencies=_KEY)


def _errors(*codes: int) -> dict:
    """OpenAPI for the error answers a route gives (all `{"detail": ...}`)."""
    why = {
        400: "no file, an empty one, or a body that is not multipart as announced", 401: "an API key is needed",
        404: "no such job or batch", 408: "the upload arrived too slowly", 409: "the batch is not finished",
        410: "the job or batch has expired (IMGREC_RETENTION)", 413: "the body is over the upload limit",
        415: "not multipart/form-data, or a format that is not accepted", 422: "not an image we can classify",
        429: "the backlog is full, or too many uploads from this address: retry after Retry-After",
        503: "the store or queue is unavailable, or no worker can start: retry after Retry-After",
        504: "no worker answered in time: the results will be at the URLs given",
    }
    return {c: {"description": why[c]} for c in codes}


UPLOAD_ERRORS = _errors(400, 401, 408, 413, 415, 422, 429, 503)


@dataclass
class Parts:
    """What the routes work with, made when the app starts (see `app.lifespan`)."""

    settings: Settings
    store: ObjectStore
    requests: Queue
    intake: Intake
    metrics: WebMetrics
    readiness: Readiness
    history: StatusHistory
    store_clock: presence.StoreClock  # other hosts' heartbeats are judged by the store's clock
    clock: Callable[[], float] = time.monotonic  # for the caches of what is looked at every few seconds
    _looked: tuple[float, bool] = (-1e9, False)
    intakes: dict[str, Intake] = field(default_factory=dict)  # one per model served (`intake`: the default's)

    def intake_of(self, model: str) -> Intake:
        """The intake of a model served here; NotFound naming those served otherwise."""
        try:
            return self.intakes[model]
        except KeyError:
            raise NotFound(f"no model {model!r} is served here; served: {', '.join(self.intakes)}") from None

    def status(self) -> dict:
        """The deployment's status; its problems say where only to callers with a key."""
        return presence.deployment_status(
            self.requests, self.store, self.store_clock, detail=bool(self.settings.keys),
            per_model={m: i.requests for m, i in self.intakes.items()},
        )

    async def ensure_workers_can_run(self) -> None:
        """For a client about to wait: refuse at once when no worker runs and the
        autoscalers (or workers waiting for a model) say why (looked at every few seconds)."""
        now = self.clock()
        if now - self._looked[0] > 3.0:
            workers = await asyncio.to_thread(presence.read, self.store, "worker", self.store_clock)
            overseers = await asyncio.to_thread(presence.read, self.store, "autoscaler", self.store_clock)
            blocked = not any(presence.is_alive(w) for w in workers) and bool(presence.problems(overseers + workers))
            self._looked = (now, blocked)
        if self._looked[1]:
            raise CannotClassify(
                "the service cannot classify right now: no worker can start (see /api/v1/status); please retry later"
            )


async def parts(request: Request) -> Parts:
    # async: FastAPI runs a plain `def` dependency on its thread pool, a thread trip per request.
    return request.app.state.parts


def _upload_schema(field: str, many: bool) -> dict:
    """OpenAPI for a multipart upload: the handlers read the form themselves (to answer bad
    input with their own messages), so the schema is stated here."""
    binary = {"type": "string", "format": "binary"}
    prop = {"type": "array", "items": binary} if many else binary
    schema = {"type": "object", "required": [field], "properties": {field: prop}}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def _name_jobs(request: Request, batch_id: str | None, submitted: list) -> None:
    """The upload's jobs (and batch), for its access line."""
    request.state.job_ids = [s.job_id for s in submitted if s.job_id]
    if batch_id:
        request.state.batch_id = batch_id


def _id(value: str, what: str) -> str:
    if not is_id(value):
        raise NotFound(f"no such {what}: a {what} id is 32 hexadecimal characters")
    return value


# --- the classic workload generator ----------------------------------------------------


@router.post(
    "/", response_class=PlainTextResponse, summary="Classic: one image in 'myfile', answers name:label",
    openapi_extra=_upload_schema("myfile", many=False), responses={**UPLOAD_ERRORS, **_errors(504)},
)
async def classic(request: Request, p: Parts = Depends(parts)):
    await p.ensure_workers_can_run()
    _, submitted = await p.intake.take(request, CLASSIC_FIELDS, 1, wait=True, always_batch=False)
    _name_jobs(request, None, submitted)
    (result,) = await p.intake.wait_all(submitted)
    name = display_name(submitted[0].upload.filename)
    if result is None:
        job = submitted[0].job_id
        return PlainTextResponse(
            f"{name}: timed out waiting for a worker; job {job}: its result will be at /api/v1/jobs/{job}\n",
            status_code=504,
        )
    if "error" in result:
        return PlainTextResponse(f"{name}: {result['error']}\n", status_code=422)
    return PlainTextResponse(f"{name}:{result['label']}")


# --- the JSON API ----------------------------------------------------------------------


@router.post(
    "/api/v1/classify", summary="Classify one or more images (field 'file'); waits for the results",
    openapi_extra=_upload_schema("file", many=True), responses={**UPLOAD_ERRORS, **_errors(504)},
)
async def api_classify(request: Request, p: Parts = Depends(parts)):
    return await _classify(request, p, p.intake)


@router.post(
    "/api/v1/models/{model}/classify", summary="Classify images with one of the models served (field 'file'); waits",
    openapi_extra=_upload_schema("file", many=True), responses={**UPLOAD_ERRORS, **_errors(404, 504)},
)
async def api_model_classify(request: Request, model: str, p: Parts = Depends(parts)):
    return await _classify(request, p, p.intake_of(model))


async def _classify(request: Request, p: Parts, intake: Intake) -> JSONResponse:
    await p.ensure_workers_can_run()
    batch_id, submitted = await intake.take(
        request, API_FIELDS, p.settings.max_files_per_request, wait=True, always_batch=False
    )
    _name_jobs(request, batch_id, submitted)
    waited = await intake.wait_all(submitted)
    answers = [r for r in waited if r is not None]
    if len(answers) < len(waited):
        return _timed_out(batch_id, submitted)
    body: dict = {"results": answers}
    if batch_id:
        await asyncio.to_thread(batches.write_results, p.store, batch_id, answers)
        body["batch_id"] = batch_id
    status = 422 if all("error" in r for r in answers) else 200
    return JSONResponse(body, status_code=status)


def _timed_out(batch_id: str | None, submitted: list) -> JSONResponse:
    """504, with where each result will be: nothing accepted is lost by a timeout."""
    body: dict = {
        "detail": "timed out waiting for a worker; the results will be at the URLs below",
        "jobs": [{"job_id": s.job_id, "filename": s.upload.filename, "url": f"/api/v1/jobs/{s.job_id}"}
                 for s in submitted if s.job_id],
    }
    if batch_id:
        body.update(batch_id=batch_id, batch_url=f"/api/v1/batches/{batch_id}")
    return JSONResponse(body, status_code=504)


@router.post(
    "/api/v1/jobs", status_code=202, summary="Submit images (field 'file'); answers at once with job ids",
    openapi_extra=_upload_schema("file", many=True),
    responses={202: {"description": "accepted: a batch id and, for each file, its job or why it was refused"},
               **UPLOAD_ERRORS},
)
async def api_submit(request: Request, p: Parts = Depends(parts)):
    return await _submit(request, p, p.intake)


@router.post(
    "/api/v1/models/{model}/jobs", status_code=202, summary="Submit images to one of the models served; answers at once",
    openapi_extra=_upload_schema("file", many=True),
    responses={202: {"description": "accepted: a batch id and, for each file, its job or why it was refused"},
               **UPLOAD_ERRORS, **_errors(404)},
)
async def api_model_submit(request: Request, model: str, p: Parts = Depends(parts)):
    return await _submit(request, p, p.intake_of(model))


@router.get("/api/v1/models", summary="The models served here, the default first")
async def api_models(p: Parts = Depends(parts)):
    return {"default": p.settings.default_model, "models": list(p.intakes) or [p.settings.default_model]}


async def _submit(request: Request, p: Parts, intake: Intake) -> JSONResponse:
    batch_id, submitted = await intake.take(
        request, API_FIELDS, p.settings.max_files_per_request, wait=False, always_batch=True
    )
    _name_jobs(request, batch_id, submitted)
    listed = [
        {"job_id": s.job_id, "filename": s.upload.filename, "status": "queued", "url": f"/api/v1/jobs/{s.job_id}"}
        if s.job_id else {**batches.entry(None, s.upload), "status": "rejected"}
        for s in submitted
    ]
    body = {"batch_id": batch_id, "batch_url": f"/api/v1/batches/{batch_id}", "jobs": listed}
    return JSONResponse(body, status_code=202)


@router.get("/api/v1/jobs/{job_id}", summary="A job's status and result", responses=_errors(401, 404, 410, 503))
async def api_job(job_id: str, p: Parts = Depends(parts)):
    return await asyncio.to_thread(jobs.status, p.store, _id(job_id, "job"), p.settings.retention)


@router.get(
    "/api/v1/batches/{batch_id}", summary="All results of a multi-image upload, in upload order (?format=csv)",
    responses=_errors(400, 401, 404, 409, 410, 503),
)
async def api_batch(request: Request, batch_id: str, format: str = "json", p: Parts = Depends(parts)):
    _id(batch_id, "batch")
    if format not in ("json", "csv"):
        raise BadInput("format must be json or csv")
    view = await asyncio.to_thread(batches.batch_view, p.store, batch_id, p.settings.retention)
    if format == "json":
        return view
    if view["status"] != "done":
        return render(request, 409, "the batch is not finished yet; try again shortly", {"Retry-After": "1"})
    return Response(
        batches.to_csv(view["results"]), media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="imgrec-{batch_id}.csv"'},
    )


# --- operations ------------------------------------------------------------------------


@router.get("/api/v1/status", summary="Queue depth, in-flight, live workers, dead letters, completed, problems")
async def api_status(p: Parts = Depends(parts)):
    return await asyncio.to_thread(p.status)


@router.get("/api/v1/status/history", summary="The last minutes of status samples and scale events (this replica's)")
async def api_status_history(p: Parts = Depends(parts)):
    return p.history.view()


@router.get("/api/v1/limits", summary="What one request may carry, and the backlog's room now: split uploads to fit")
async def api_limits(p: Parts = Depends(parts)):
    s, backlog = p.settings, p.intake.backlog
    try:
        await backlog.refresh()  # the queue is looked at every quarter second at most, however often this is read
    except BackendError:
        pass  # the limits hold whatever the queue does; the room is as last seen (an upload would get 503)
    return {
        "max_upload_bytes": s.max_upload_bytes, "max_files_per_request": s.max_files_per_request,
        "max_pixels": s.max_pixels, "max_aspect_ratio": s.max_aspect_ratio, "request_timeout": s.request_timeout,
        "formats": ["JPEG", "PNG", "WebP", "BMP", "GIF", "TIFF"], "api_key_required": bool(s.keys),
        "max_backlog": backlog.limit, "backlog_waiting": backlog.waiting(), "backlog_room": backlog.room(),
    }


@router.api_route("/healthz", methods=["GET", "HEAD"], include_in_schema=False)  # HEAD: monitors that use it
async def healthz():
    return {"ok": True}


@router.api_route("/readyz", methods=["GET", "HEAD"], include_in_schema=False)
async def readyz(request: Request, p: Parts = Depends(parts)):
    if problem := await p.readiness.problem():
        return render(request, 503, f"not ready: {problem}", {"Retry-After": "1"})
    return {"ready": True}


@router.get("/metrics", include_in_schema=False)
async def metrics(p: Parts = Depends(parts)):
    data = await asyncio.to_thread(generate_latest, p.metrics.registry)
    return Response(data, media_type=CONTENT_TYPE_LATEST)


