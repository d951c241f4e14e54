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

from imgrec.preprocess import ImageRejected, open_checked
from imgrec.web.limits import BodyTooLarge


class UploadError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Upload:
    filename: str | None
    file: BinaryIO  # spooled to disk past 1 MB by the multipart parser: never held whole here
    error: UploadError | None = None  # set for a refused file among several good ones


def _check(f: UploadFile, max_pixels: int) -> UploadError | None:
    """Refuse from the header alone: empty, not an image, a format we do not take, too many pixels."""
    name = f.filename or "upload"
    if not f.size:
        return UploadError(400, f"{name}: the file is empty")
    try:
        f.file.seek(0)
        open_checked(f.file, max_pixels)
    except ImageRejected as exc:
        return UploadError(415 if "unsupported image format" in str(exc) else 422, f"{name}: {exc}")
    finally:
        f.file.seek(0)
    return None


@asynccontextmanager
async def read_uploads(
    request: Request, fields: tuple[str, ...], max_files: int, max_pixels: int
) -> AsyncIterator[list[Upload]]:
    """The files of a multipart request, open until the block ends (then their spool
    files are removed). Raises UploadError when the request as a whole is refused."""
    field_list = " or ".join(f"'{f}'" for f in fields)
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise UploadError(415, f"send the image as multipart/form-data in the field {field_list} (got {ctype or 'no content type'})")
    try:
        form = await request.form(max_files=max_files, max_fields=max_files + 20)
    except BodyTooLarge:
        raise  # answered with 413 by the middleware that raised it
    except Exception as exc:  # python-multipart/starlette parse errors, too many parts
        detail = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
        raise UploadError(400, f"could not read the multipart body: {detail}") from None
    try:
        values = [v for f in fields for v in form.getlist(f)]
        files = [v for v in values if isinstance(v, UploadFile)]
        if not files:
            hint = " (it was sent as text, not as a file)" if values else ""
            raise UploadError(400, f"no image in the request: send it in the multipart field {field_list}{hint}")
        uploads = [Upload(f.filename, f.file, _check(f, max_pixels)) for f in files]
        refused = [u.error for u in uploads if u.error]
        if len(refused) == len(uploads):
            raise refused[0]  # nothing to do: the request as a whole is refused
        yield uploads  # the good ones go ahead; each refused one gets its error in the answer
    finally:
        await form.close()
