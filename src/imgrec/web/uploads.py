"""Reading image uploads from a multipart request, with errors a person understands.

An upload is taken in two steps. First its body is parsed as it arrives, at whatever
pace the client sends it, with no slot of the service held meanwhile (the
UploadGuard middleware bounds its size, time and rate): each file of a wanted field
goes once into its own spool file (in memory up to 1 MB, then on disk), other parts
are counted and dropped. Then every file is checked from its header (format, pixel
count, shape; `imaging.header`, whose cost is bounded whatever the file holds) before
anything is stored or queued, so a refused file leaves nothing behind. A request
whose files are all refused gets the first one's 4xx; among several files, the good
ones go ahead and each refused one gets its error in the answer.

HTTP's tokens are compared as HTTP says: a media type, its parameters' names and a
part's header names are case-insensitive (`Multipart/Form-Data; Boundary=x` is
multipart). A file name given only as RFC 5987's `filename*=UTF-8''...` (which RFC
7578 forbids, but some clients send) is read as the file's name.
"""

from __future__ import annotations

import tempfile
import urllib.parse
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from imgrec.errors import BadInput
from imgrec.imaging.header import ImageLimits, ImageRejected, open_checked

if TYPE_CHECKING:  # python-multipart declares its callbacks' type for type checkers only
    from python_multipart.multipart import MultipartCallbacks

SPOOL_IN_MEMORY = 1 << 20  # bytes of a file kept in memory before it goes to disk
MAX_OTHER_PARTS = 20  # parts of fields no route reads (each dropped, at most 64 KiB)
MAX_OTHER_PART_BYTES = 1 << 16


@dataclass
class Upload:
    filename: str | None
    file: IO[bytes]  # spooled to disk past 1 MB: never held whole here
    size: int = 0
    error: BadInput | None = None  # set for a refused file among several good ones


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    headers: dict[bytes, bytes] = field(default_factory=dict)
    upload: Upload | None = None  # a file of a wanted field
    dropped: int = 0  # bytes of a part nobody reads


def _filename(options: dict[bytes, bytes], raw: bytes) -> str | None:
    """The part's file name: `filename=`, else RFC 5987's `filename*=charset'lang'pct-encoded`."""
    if b"filename" in options:
        return options[b"filename"].decode("utf-8", "replace")
    for segment in raw.split(b";"):
        key, _, value = segment.strip().partition(b"=")
        if key.strip().lower() == b"filename*":
            charset, _, rest = value.strip().strip(b'"').decode("latin-1").partition("'")
            _, _, encoded = rest.partition("'")
            try:
                return urllib.parse.unquote(encoded, encoding=charset or "utf-8", errors="strict")
            except (LookupError, UnicodeDecodeError):
                raise BadInput(f"a part's filename* is not valid {charset or 'UTF-8'}: send the file name as filename=") from None
    return None


class _FormReader:
    """python-multipart's callbacks: each file of a wanted field into its own spool file."""

    def __init__(self, fields: tuple[str, ...], max_files: int) -> None:
        self.fields, self.max_files = fields, max_files
        self.uploads: list[Upload] = []
        self.as_text: list[str] = []  # wanted fields sent as text, not as files
        self.files = self.others = 0
        self._part = _Part()
        self._header: tuple[bytearray, bytearray] = (bytearray(), bytearray())

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._begin, "on_part_data": self._data, "on_header_field": self._header_name,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
        }

    def _begin(self) -> None:
        self._part = _Part()

    def _header_name(self, data: bytes, start: int, end: int) -> None:
        self._header[0].extend(data[start:end])

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._header[1].extend(data[start:end])

    def _header_end(self) -> None:
        name, value = self._header
        self._part.headers[bytes(name).strip().lower()] = bytes(value)
        self._header = (bytearray(), bytearray())

    def _headers_finished(self) -> None:
        part = self._part
        raw = part.headers.get(b"content-disposition", b"")
        _, options = parse_options_header(raw)  # names lowercased, as HTTP says
        if b"name" not in options:
            raise BadInput('a part of the multipart body has no name (Content-Disposition: form-data; name="...")')
        part.name = options[b"name"].decode("utf-8", "replace")
        part.filename = _filename(options, raw)
        if part.filename is None:
            self.others += 1
            if part.name in self.fields:
                self.as_text.append(part.name)
        else:
            self.files += 1
            if self.files > self.max_files:
                raise BadInput(f"too many files in one request: at most {self.max_files}; split the upload", 400)
            if part.name in self.fields:
                spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 (closed by the caller)
                part.upload = Upload(part.filename, spool)
                self.uploads.append(part.upload)
            else:
                self.others += 1
        if self.others > MAX_OTHER_PARTS:
            raise BadInput(f"too many parts in one request besides the files (at most {MAX_OTHER_PARTS})", 400)

    def _data(self, data: bytes, start: int, end: int) -> None:
        upload = self._part.upload
        if upload is not None:
            upload.file.write(data[start:end])
            upload.size += end - start
            return
        self._part.dropped += end - start
        if self._part.dropped > MAX_OTHER_PART_BYTES:
            raise BadInput(
                f"a part of field {self._part.name!r} is over {MAX_OTHER_PART_BYTES:,} bytes; send images as files", 400
            )

    def close(self) -> None:
        for u in self.uploads:
            u.file.close()


_PARSER_ERRORS = {  # python-multipart's limits on a part's own headers
    "Maximum header size exceeded": "a part's header line is over 4 KB; is its file name that long?",
    "Maximum header count exceeded": "a part has more than 8 header lines",
}


def field_list(fields: tuple[str, ...]) -> str:
    return " or ".join(f"'{f}'" for f in fields)


async def receive_files(request: Request, fields: tuple[str, ...], max_files: int) -> list[Upload]:
    """The files of the wanted `fields`, in order, each in its own spool file (the caller
    closes them). Raises BadInput when the request as a whole is refused."""
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data":
        shown = request.headers.get("content-type") or "no content type"
        raise BadInput(f"send the image as multipart/form-data in the field {field_list(fields)} (got {shown})", 415)
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadInput("could not read the multipart body: its Content-Type names no boundary", 400)
    reader = _FormReader(fields, max_files)
    parser = MultipartParser(boundary, reader.callbacks())
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except ClientDisconnect:
        reader.close()
        raise BadInput("the client went away before the upload was complete", 400) from None
    except FormParserError as exc:
        reader.close()
        why = _PARSER_ERRORS.get(str(exc), str(exc))
        raise BadInput(f"could not read the multipart body: {why}", 400) from None
    except BaseException:
        reader.close()
        raise
    if not reader.uploads:
        reader.close()
        hint = " (it was sent as text, not as a file)" if reader.as_text else ""
        raise BadInput(f"no image in the request: send it in the multipart field {field_list(fields)}{hint}", 400)
    for u in reader.uploads:
        u.file.seek(0)
    return reader.uploads


def check_files(uploads: list[Upload], limits: ImageLimits) -> list[Upload]:
    """Each file checked from its header (blocking: run it off the event loop). Raises
    the first refusal when every file is refused."""
    for u in uploads:
        u.error = _check(u, limits)
    refused = [(u.filename, u.error) for u in uploads if u.error]
    if len(refused) == len(uploads):  # nothing to do: the request as a whole is refused
        first = refused[0][1]
        each = [{"filename": name, "error": error.message, "status": error.status} for name, error in refused]
        raise BadInput(first.message, first.status, {"files": each} if len(uploads) > 1 else None)
    return uploads


def _check(u: Upload, limits: ImageLimits) -> BadInput | None:
    """Refuse from the header alone: empty, not an image, a format we do not take, too many pixels."""
    name = u.filename or "upload"
    if not u.size:
        return BadInput(f"{name}: the file is empty", 400)
    try:
        u.file.seek(0)
        open_checked(u.file, limits)
    except ImageRejected as exc:
        return BadInput(f"{name}: {exc}", exc.status)
    finally:
        u.file.seek(0)
    return None
