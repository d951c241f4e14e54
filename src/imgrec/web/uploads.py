"""Reading image uploads from a multipart request, with errors a person understands.

Every file is checked from its header (format, pixel count) before anything is
stored or queued, so a refused file leaves nothing behind. A request whose files
are all refused gets the first one's 4xx; among several files, the good ones go
ahead and each refused one gets its error in the answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import BinaryIO

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect

from imgrec.engine.preprocess import ImageRejected, open_checked
from imgrec.errors import BadInput


@dataclass(frozen=True)
class Upload:
    filename: str | None
    file: BinaryIO  # spooled to disk past 1 MB by the multipart parser: never held whole here
    error: BadInput | None = None  # set for a refused file among several good ones


def _check(f: UploadFile, max_pixels: int) -> BadInput | None:
    """Refuse from the header alone: empty, not an image, a format we do not take, too many pixels."""
    name = f.filename or "upload"
    if not f.size:
        return BadInput(f"{name}: the file is empty", 400)
    try:
        f.file.seek(0)
        open_checked(f.file, max_pixels)
    except ImageRejected as exc:
        return BadInput(f"{name}: {exc}", exc.status)
    finally:
        f.file.seek(0)
    return None


@asynccontextmanager
async def read_uploads(
    request: Request, fields: tuple[str, ...], max_files: int, max_pixels: int
) -> AsyncIterator[list[Upload]]:
    """The files of a multipart request, open until the block ends (then their spool
    files are removed). Raises BadInput when the request as a whole is refused."""
    field_list = " or ".join(f"'{f}'" for f in fields)
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise BadInput(f"send the image as multipart/form-data in the field {field_list} (got {ctype or 'no content type'})", 415)
    try:  # (a body over the size limit raises BodyTooLarge here, answered by its middleware)
        form = await request.form(max_files=max_files, max_fields=max_files + 20)
    except (HTTPException, MultiPartException, ClientDisconnect, ValueError) as exc:  # a body we cannot parse
        detail = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
        raise BadInput(f"could not read the multipart body: {detail}", 400) from None
    try:
        values = [v for f in fields for v in form.getlist(f)]
        files = [v for v in values if isinstance(v, UploadFile)]
        if not files:
            hint = " (it was sent as text, not as a file)" if values else ""
            raise BadInput(f"no image in the request: send it in the multipart field {field_list}{hint}", 400)
        uploads = [Upload(f.filename, f.file, _check(f, max_pixels)) for f in files]
        refused = [u.error for u in uploads if u.error]
        if len(refused) == len(uploads):
            raise refused[0]  # nothing to do: the request as a whole is refused
        yield uploads  # the good ones go ahead; each refused one gets its error in the answer
    finally:
        await form.close()
