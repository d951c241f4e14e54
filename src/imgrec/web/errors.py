"""Every error answer of the web tier, rendered one way: plain text for the classic
`POST /` (its clients read text), JSON `{"detail": ...}` everywhere else.

By type: BadInput gets its own 4xx, Overloaded 429, BackendUnavailable 503 (both
with Retry-After); anything else is a bug, answered 500 with a request id that
is also in the log line with the traceback.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.responses import Response

from imgrec.errors import BackendUnavailable, BadInput, CannotClassify, Expired, NotFound, Overloaded

log = logging.getLogger("imgrec.web")
RETRY_AFTER = 2  # seconds, in 503 and 429 answers
REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")  # a caller's X-Request-Id that is taken as it is
CLASSIC_PATH = "/"


def _body(path: str, method: str, message: str, extra: dict | None = None) -> tuple[bytes, str]:
    if path == CLASSIC_PATH and method == "POST":
        return (message + "\n").encode(), "text/plain; charset=utf-8"
    return json.dumps({"detail": message, **(extra or {})}).encode(), "application/json"


def render(
    scope_or_request, status: int, message: str, headers: dict[str, str] | None = None, extra: dict | None = None
) -> Response:
    """The error answer for a request (or an ASGI scope)."""
    path, method = scope_or_request["path"], scope_or_request["method"]
    body, ctype = _body(path, method, message, extra)
    return Response(body, status_code=status, media_type=ctype.split(";")[0], headers=headers)


async def send_error(scope, send, status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """The same answer from pure ASGI middleware (before any app code ran)."""
    body, ctype = _body(scope["path"], scope["method"], message)
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode()), *headers],
    })
    await send({"type": "http.response.body", "body": body})


def retry_later(request: Request, status: int, message: str) -> Response:
    return render(request, status, message, {"Retry-After": str(RETRY_AFTER)})


def answer_for(request: Request, exc: Exception) -> Response | None:
    """The answer for an error the routes raise on purpose, by its type; None for anything
    else (a bug: the `Unexpected` middleware answers it 500)."""
    if isinstance(exc, BadInput):
        return render(request, exc.status, exc.message, extra=exc.extra)
    if isinstance(exc, BackendUnavailable):
        log.warning("%s %s: backend unavailable: %s", request.method, request.url.path, exc)
        return retry_later(request, 503, "the service's storage or queue is unavailable right now; please retry shortly")
    if isinstance(exc, CannotClassify):
        return render(request, 503, str(exc), {"Retry-After": "30"})
    if isinstance(exc, Overloaded):
        return retry_later(request, 429, f"the service is busy ({exc} requests waiting); please retry shortly")
    if isinstance(exc, NotFound):
        return render(request, 410 if isinstance(exc, Expired) else 404, str(exc))
    return None


def install(app: FastAPI) -> None:
    """The exception handlers by type, for the routes FastAPI calls (the upload routes are
    called by `hot.UploadRoutes`, which answers the same way; the catch-all for what
    nobody expected is the `Unexpected` middleware, outermost)."""

    async def handler(request: Request, exc: Exception) -> Response:
        answer = answer_for(request, exc)
        assert answer is not None  # registered only for the types answer_for knows
        return answer

    for kind in (BadInput, BackendUnavailable, CannotClassify, Overloaded, NotFound):
        app.add_exception_handler(kind, handler)

    async def bug(request: Request, exc: Exception) -> Response:
        # FastAPI's own outermost layer answers a bug before `Unexpected` (outside FastAPI)
        # sees it: the same answer, then the exception goes on to be logged there.
        return render(request, 500, bug_message(request.scope.get("state", {}).get("request_id", "")))

    app.add_exception_handler(Exception, bug)


def bug_message(request_id: str) -> str:
    return f"internal error (request id {request_id}); it has been logged, please report it"


def request_id_for(scope) -> str:
    """The request's id: the caller's own X-Request-Id when it is one (at most 64 letters,
    digits and . _ : -, so that it can go into a log line as it is), else a new one."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            if REQUEST_ID.fullmatch(value):
                return value.decode()
            break
    return uuid.uuid4().hex[:16]


class Unexpected:
    """Pure ASGI middleware: every request gets an id (`request_id_for`), in its scope's state
    for the access line and the handlers, and in every answer as X-Request-Id; an exception
    no handler took is logged with it and answered 500 with it."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        scope.setdefault("state", {})["request_id"] = request_id = request_id_for(scope)
        started = False

        async def tagged(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, tagged)
        except Exception:  # the last line of defence of a request: nothing else caught it
            log.exception("request %s (%s %s) failed", request_id, scope["method"], scope["path"],
                          extra={"request_id": request_id})
            if not started:
                await send_error(scope, tagged, 500, bug_message(request_id))
