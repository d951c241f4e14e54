"""Reading image uploads from a multipart request, with errors a person understands.

Every file is checked from its header (format, pixel count) before anything is
stored or queued, so a bad request leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from starlette.datastructures import UploadFile

from imgrec.preprocess import ImageRejected, open_checked
from imgrec.web.limits import BodyTooLarge


@dataclass(frozen=True)
class Upload:
    filename: str | None
    data: bytes


class UploadError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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
        uploads = []
        for f in files:
            data = await f.read()
            name = f.filename or "upload"
            if not data:
                raise UploadError(400, f"{name}: the file is empty")
            try:
                open_checked(data, max_pixels)
            except ImageRejected as exc:
                status = 415 if "unsupported image format" in str(exc) else 422
                raise UploadError(status, f"{name}: {exc}") from None
            uploads.append(Upload(f.filename, data))
        return uploads
    finally:
        await form.close()
