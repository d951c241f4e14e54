"""Reading image uploads from a multipart request, with errors a person understands.

Every file is checked from its header (format, pixel count) before anything is
stored or queued, so a refused file leaves nothing behind. A request whose files
are all refused gets the first one's 4xx; among several files, the good ones go
ahead and each refused one gets its error in the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    data: bytes
    error: UploadError | None = None  # set for a refused file among several good ones


def _check(filename: str | None, data: bytes, max_pixels: int) -> UploadError | None:
    name = filename or "upload"
    if not data:
        return UploadError(400, f"{name}: the file is empty")
    try:
        open_checked(data, max_pixels)
    except ImageRejected as exc:
        return UploadError(415 if "unsupported image format" in str(exc) else 422, f"{name}: {exc}")
    return None


async def read_uploads(request: Request, fields: tuple[str, ...], max_files: int, max_pixels: int) -> list[Upload]:
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
        uploads = [Upload(f.filename, data, _check(f.filename, data, max_pixels)) for f in files for data in [await f.read()]]
        refused = [u.error for u in uploads if u.error]
        if len(refused) == len(uploads):
            raise refused[0]  # nothing to do: the request as a whole is refused
        return uploads  # the good ones go ahead; each refused one gets its error in the answer
    finally:
        await form.close()
