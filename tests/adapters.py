"""Every adapter of each port, for the contract suites: name -> URL factory.

Each factory takes pytest's `request` (to start the server it needs, once per
session) and returns a URL unique to the test, so tests never share a queue or bucket.
"""

from __future__ import annotations

import uuid

import pytest


def _sqlite(request) -> str:
    return f"sqlite://{request.getfixturevalue('tmp_path')}/queue.sqlite3"


def _redis(request) -> str:
    server = request.getfixturevalue("redis_server")
    return f"{server.url}?prefix=t{uuid.uuid4().hex[:12]}"


def _sqs(request) -> str:
    request.getfixturevalue("moto_server")
    return f"sqs://t{uuid.uuid4().hex[:12]}"


def _sqs_fifo(request) -> str:
    return _sqs(request) + "?fifo=1"


def _local(request) -> str:
    return (request.getfixturevalue("tmp_path") / "store").as_uri()


def _s3(request) -> str:
    request.getfixturevalue("moto_server")
    from imgrec.stores.s3 import S3Store

    url = f"s3://b{uuid.uuid4().hex[:12]}/prefix"
    S3Store(url).create()
    return url


QUEUES = {"sqlite": _sqlite, "redis": _redis, "sqs": _sqs, "sqs-fifo": _sqs_fifo}
STORES = {"local": _local, "s3": _s3}


@pytest.fixture(params=sorted(QUEUES))
def queue_url(request) -> str:
    return QUEUES[request.param](request)


@pytest.fixture(params=sorted(STORES))
def store_url(request) -> str:
    return STORES[request.param](request)
