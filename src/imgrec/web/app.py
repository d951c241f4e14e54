"""The web tier's wiring: adapters, reply channel, middleware, error handlers, routes.

No request is handled here: see `routes` (and `hot`, which calls the upload routes
straight). Cross-cutting concerns are pure ASGI middleware (`limits`, `auth`,
`metrics`, `errors`), around FastAPI and the upload routes alike.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from imgrec import logs, presence
from imgrec.messages import REPLY_QUEUE_PREFIX, new_id
from imgrec.queues import open_queue, request_queue
from imgrec.settings import Settings
from imgrec.stores import open_store
from imgrec.web import errors, pages
from imgrec.web.auth import ApiKeys
from imgrec.web.history import StatusHistory
from imgrec.web.hot import ServiceApp
from imgrec.web.intake import Intake
from imgrec.web.limits import UploadGuard
from imgrec.web.metrics import RequestMetrics, WebMetrics
from imgrec.web.readiness import Readiness
from imgrec.web.replies import ReplyListener
from imgrec.web.routes import Parts, router

log = logging.getLogger("imgrec.web")


def create_app(settings: Settings, clock: Callable[[], float] = time.monotonic) -> ServiceApp:
    """The app; `clock` times what it looks at every so often (the backlog, readiness,
    whether workers can run), so that tests can step it."""
    metrics = WebMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store = open_store(settings.store_url, settings.backend_timeout)
        requests = request_queue(settings)
        reply_queue = open_queue(
            settings.queue_url, REPLY_QUEUE_PREFIX + new_id()[:16], create=True, ephemeral=True,
            timeout=settings.backend_timeout,
        )
        replies = ReplyListener(reply_queue, store, metrics)
        replies.start()
        intake = Intake(settings, store, requests, replies, metrics, clock)
        readiness = Readiness(store, requests, replies.name, lambda: replies.healthy, clock=clock)
        store_clock = presence.StoreClock(store, replies.name)
        history = StatusHistory(lambda: presence.deployment_status(requests, store, store_clock))
        parts = Parts(settings, store, requests, intake, metrics, readiness, history, store_clock, clock)
        metrics.watch_system(parts.status)
        app.state.parts = parts
        history.start()
        with logs.lifetime(log, "web", listening=f"{settings.host}:{settings.port}", replies=replies.name,
                           store=logs.redact(settings.store_url), queue=logs.redact(settings.queue_url)):
            yield
            history.stop()
            intake.close()
            replies.stop()
            readiness.forget()
            store_clock.forget()
            requests.close()

    app = FastAPI(
        title="imgrec", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
        description="Upload images, get ImageNet labels back. See the README for the guarantees and limits.",
    )
    errors.install(app)
    app.include_router(router)
    app.include_router(pages.router)

    def middleware(inner):
        """A request meets the catch-all, the metrics, the key check, the upload guard, then
        the upload routes or FastAPI (`hot`)."""
        inner = UploadGuard(
            inner, max_bytes=settings.max_upload_bytes, deadline=settings.upload_deadline,
            min_rate=settings.min_upload_rate, per_client=settings.max_uploads_per_client,
        )
        if settings.keys:
            inner = ApiKeys(inner, keys=settings.keys)
        inner = RequestMetrics(inner, metrics=metrics, access_log=settings.access_log)
        return errors.Unexpected(inner)  # outermost: it sees every exception no one else took

    return ServiceApp(app, middleware)
