"""The fuzz corpus at every upload endpoint: a 4xx (or a result) for each hostile file,
never a 5xx, and the good file beside it goes ahead."""

from __future__ import annotations

from fuzz_corpus import corpus
from images import chelsea, encode

GOOD = ("cat.png", encode(chelsea().resize((400, 260)), "PNG"), "image/png")


def test_every_hostile_file_beside_a_good_one(web):
    for name, data in sorted(corpus().items()):
        r = web.client.post("/api/v1/jobs", files=[("file", GOOD), ("file", (name, data, "image/png"))])
        assert r.status_code == 202, (name, r.status_code, r.text)
        good, bad = r.json()["jobs"]
        assert good["status"] == "queued" and bad["status"] in ("queued", "rejected"), name
        if bad["status"] == "rejected":
            assert bad["error"].startswith(name + ": "), bad


def test_hostile_files_alone_get_a_4xx_or_an_error_result(web):
    for i, (name, data) in enumerate(sorted(corpus().items())):
        if i % 8:
            continue
        for endpoint, field in (("/", "myfile"), ("/api/v1/classify", "file")):
            r = web.client.post(endpoint, files={field: (name, data, "image/png")})
            assert 200 <= r.status_code < 500, (endpoint, name, r.status_code, r.text)
