"""HTTP's tokens compared as HTTP says: media types, their parameters' names, header
names and transfer codings are case-insensitive; a part's name may come as RFC 5987's
`filename*`. And the time the service spends before it reads a body is never the
client's fault."""

from __future__ import annotations

import asyncio

import pytest

from images import chelsea, encode
from imgrec.web.limits import UploadGuard, _has_body

CAT = encode(chelsea().resize((400, 260)), "PNG")


def _body(disposition: bytes, data: bytes = CAT, boundary: bytes = b"b") -> bytes:
    return (b"--" + boundary + b"\r\n" + disposition + b"\r\nContent-Type: image/png\r\n\r\n" + data + b"\r\n--"
            + boundary + b"--\r\n")


@pytest.mark.parametrize("ctype", [
    "multipart/form-data; boundary=b", "Multipart/Form-Data; boundary=b", "MULTIPART/FORM-DATA; BOUNDARY=b",
    'multipart/form-data; Boundary="b"', "multipart/form-data ; boundary=b; charset=UTF-8",
])
def test_every_spelling_of_multipart_is_multipart(web, ctype):
    body = _body(b'Content-Disposition: form-data; name="file"; filename="cat.png"')
    r = web.client.post("/api/v1/classify", content=body, headers={"content-type": ctype})
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["label"] == "tiger cat"


@pytest.mark.parametrize("disposition", [
    b'content-disposition: form-data; name="file"; filename="cat.png"',
    b'CONTENT-DISPOSITION: Form-Data; NAME="file"; FILENAME="cat.png"',
    b"Content-Disposition: form-data; name=file; filename=cat.png",
])
def test_a_parts_header_names_and_parameters_in_any_case(web, disposition):
    headers = {"content-type": "multipart/form-data; boundary=b"}
    r = web.client.post("/api/v1/classify", content=_body(disposition), headers=headers)
    assert r.status_code == 200, r.text


def test_a_file_named_only_by_filename_star_is_read_with_its_name(web):
    body = _body(b"Content-Disposition: form-data; name=\"file\"; filename*=UTF-8''chat%20noir%C3%A9.png")
    r = web.client.post("/api/v1/jobs", content=body, headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 202, r.text
    assert r.json()["jobs"][0]["filename"] == "chat noiré.png"
    bad = _body(b"Content-Disposition: form-data; name=\"file\"; filename*=UTF-8''%FF%FE.png")
    r = web.client.post("/api/v1/jobs", content=bad, headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 400 and "filename*" in r.json()["detail"]


@pytest.mark.parametrize(("headers", "has_body"), [
    ([(b"transfer-encoding", b"chunked")], True), ([(b"transfer-encoding", b"Chunked")], True),
    ([(b"transfer-encoding", b"CHUNKED")], True), ([(b"transfer-encoding", b"gzip, chunked")], True),
    ([(b"content-length", b"12")], True), ([(b"content-length", b"0")], False), ([], False),
])
def test_whether_a_request_has_a_body_whatever_the_spelling(headers, has_body):
    assert _has_body({"headers": headers}) is has_body


def test_the_services_own_wait_before_reading_a_body_is_not_the_clients():
    """The client sent its whole body at once; the app (the service) takes longer than the
    whole upload deadline before it reads it, e.g. waiting for a thread: not a 408."""
    answers = []

    async def busy_app(scope, receive, send):
        await asyncio.sleep(1.5)  # the service is busy elsewhere
        message = await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": message["body"]})

    async def receive():
        return {"type": "http.request", "body": b"x" * 100, "more_body": False}

    async def send(message):
        answers.append(message)

    guard = UploadGuard(busy_app, max_bytes=1000, deadline=1.0, min_rate=1000.0, per_client=4)
    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-length", b"100")], "client": ("c", 1)}
    asyncio.run(guard(scope, receive, send))
    assert answers[0]["status"] == 200


def test_a_client_that_does_not_send_its_body_still_gets_408():
    answers = []

    async def app(scope, receive, send):
        await receive()

    async def receive():
        await asyncio.sleep(60)  # the client sends nothing

    async def send(message):
        answers.append(message)

    guard = UploadGuard(app, max_bytes=1000, deadline=0.5, min_rate=1000.0, per_client=4)
    scope = {"type": "http", "method": "POST", "path": "/api/v1/jobs", "headers": [(b"transfer-encoding", b"Chunked")],
             "client": ("c", 1)}
    asyncio.run(guard(scope, receive, send))
    assert answers[0]["status"] == 408
