"""Reading image uploads from a multipart request, with errors a person understands.

An upload is taken in two steps. First its body is received into a spool file
(in memory up to 1 MB, then on disk), at whatever pace the client sends it, with
no slot of the service held meanwhile (the UploadGuard middleware bounds its
size, time and rate). Then, with the body complete, the form is parsed from the
spool and every file is checked from its header (format, pixel count, shape)
before anything is stored or queued, so a refused file leaves nothing behind. A
request whose files are all refused gets the first one's 4xx; among several
files, the good ones go ahead and each refused one gets its error in the answer.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import IO, BinaryIO

from fastapi import Request
from python_multipart.exceptions import FormParserError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect

from imgrec.errors import BadInput
from imgrec.imaging.header import ImageLimits, ImageRejected, open_checked

SPOOL_IN_MEMORY = 1 << 20  # bytes of a received body kept in memory before it goes to disk
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Upload:
    filename: str | None
    file: BinaryIO  # spooled to disk past 1 MB by the multipart parser: never held whole here
    error: BadInput | None = None  # set for a refused file among several good ones


async def receive_body(request: Request) -> tempfile.SpooledTemporaryFile:
    """The whole request body, spooled; the client may take its time (within the guard's limits)."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
    try:
        async for chunk in request.stream():
            spool.write(chunk)
    except ClientDisconnect:
        spool.close()
        raise BadInput("the client went away before the upload was complete", 400) from None
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool


def _replay(spool: IO[bytes]):
    """An ASGI `receive` that gives the spooled body again, for the form parser."""

    async def receive() -> dict:
        chunk = spool.read(_CHUNK)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunk)}

    return receive


_PARSER_ERRORS = {  # python-multipart's limits on a part's own headers
    "Maximum header size exceeded": "a part's header line is over 4 KB; is its file name that long?",
    "Maximum header count exceeded": "a part has more than 8 header lines",
}


def _parser_error(exc: BaseException | None) -> str:
    """What python-multipart said, under Starlette's "Invalid multipart data." (Starlette
    re-raises the parser's error as a MultiPartException, then as an HTTPException)."""
    while exc is not None and not isinstance(exc, FormParserError):
        exc = exc.__cause__ or exc.__context__
    return _PARSER_ERRORS.get(str(exc), str(exc)) if exc is not None else ""


@asynccontextmanager
async def read_form(request: Request, spool: IO[bytes], fields: tuple[str, ...], max_files: int) -> AsyncIterator[list]:
    """The files of a spooled multipart body, open until the block ends (then their spool
    files are removed). Raises BadInput when the request as a whole is refused."""
    field_list = " or ".join(f"'{f}'" for f in fields)
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise BadInput(f"send the image as multipart/form-data in the field {field_list} (got {ctype or 'no content type'})", 415)
    parsed = Request(request.scope, _replay(spool))
    try:
        form = await parsed.form(max_files=max_files, max_fields=max_files + 20)
    except (HTTPException, MultiPartException, ValueError) as exc:  # a body we cannot parse
        detail = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
        why = _parser_error(exc)
        raise BadInput(f"could not read the multipart body: {detail.rstrip('.')}{f' ({why})' if why else ''}", 400) from None
    try:
        values = [v for f in fields for v in form.getlist(f)]
        files = [v for v in values if isinstance(v, UploadFile)]
        if not files:
            hint = " (it was sent as text, not as a file)" if values else ""
            raise BadInput(f"no image in the request: send it in the multipart field {field_list}{hint}", 400)
        yield files
    finally:
        await form.close()


def check_files(files: list[UploadFile], limits: ImageLimits) -> list[Upload]:
    """Each file checked from its header (blocking: run it off the event loop). Raises
    the first refusal when every file is refused."""
    uploads = [Upload(f.filename, f.file, _check(f, limits)) for f in files]
    refused = [(u.filename, u.error) for u in uploads if u.error]
    if len(refused) == len(uploads):  # nothing to do: the request as a whole is refused
        first = refused[0][1]
        each = [{"filename": name, "error": error.message, "status": error.status} for name, error in refused]
        raise BadInput(first.message, first.status, {"files": each} if len(uploads) > 1 else None)
    return uploads


def _check(f: UploadFile, limits: ImageLimits) -> BadInput | None:
    """Refuse from the header alone: empty, not an image, a format we do not take, too many pixels."""
    name = f.filename or "upload"
    if not f.size:
        return BadInput(f"{name}: the file is empty", 400)
    try:
        f.file.seek(0)
        open_checked(f.file, limits)
    except ImageRejected as exc:
        return BadInput(f"{name}: {exc}", exc.status)
    finally:
        f.file.seek(0)
    return None
