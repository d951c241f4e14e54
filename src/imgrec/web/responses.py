"""Answers the web tier gives when it cannot do what was asked, and the backend-call guard."""

from __future__ import annotations

import asyncio
import logging

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from imgrec.store import ObjectNotFound
from imgrec.web.uploads import UploadError

log = logging.getLogger("imgrec.web")
RETRY_AFTER = 2  # seconds, in 503 and 429 answers


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


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def retry_later(request: Request, status: int, message: str) -> Response:
    """503 or 429 with Retry-After, as text for the classic endpoint and JSON elsewhere."""
    headers = {"Retry-After": str(RETRY_AFTER)}
    if request.url.path == "/":
        return PlainTextResponse(message + "\n", status_code=status, headers=headers)
    return error(status, message, headers)
