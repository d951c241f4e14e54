"""`S3Store`: objects in any S3-compatible service (AWS S3, MinIO, Ceph, ...).

Endpoint, region and credentials come from the standard AWS chain: environment
(`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ...), profiles,
instance roles. URL: ``s3://bucket/prefix``; ``?addressing=virtual|path`` overrides
the addressing style (path by default when a custom endpoint is set, as MinIO wants).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import IO
from urllib.parse import parse_qs, urlparse

from imgrec.errors import BackendError, ConfigError, NotFound, aws_error, require, translating
from imgrec.stores import DEFAULT_TIMEOUT
from imgrec.stores.base import ObjectStore, check_key

_guard = translating(lambda exc: aws_error(exc, "S3 store"))
_DELETE_BATCH = 1000  # S3's limit of keys per DeleteObjects request


class S3Store(ObjectStore):
    @_guard
    def __init__(self, url: str, client=None, timeout: float = DEFAULT_TIMEOUT) -> None:
        boto3 = require("boto3", "aws", "the S3 store")
        from botocore.config import Config

        parsed = urlparse(url)
        self.bucket = parsed.netloc
        if not self.bucket:
            raise ConfigError(f"no bucket in store URL {url!r}; e.g. s3://my-bucket/imgrec")
        self.prefix = parsed.path.strip("/") + "/" if parsed.path.strip("/") else ""
        options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        custom_endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        style = options.get("addressing", "path" if custom_endpoint else "auto")
        # Each call bounded: a server that stalls is an outage within about `timeout`
        # seconds (half for the connection and each answer, one retry), never a hang.
        config = Config(
            s3={"addressing_style": style}, retries={"mode": "standard", "total_max_attempts": 2},
            connect_timeout=timeout / 2, read_timeout=timeout / 2,
        )
        self._s3 = client or boto3.client("s3", config=config)
        self._errors = self._s3.exceptions

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    @_guard
    def create(self) -> None:
        """Create the bucket if it does not exist (`imgrec init`)."""
        try:
            self._s3.head_bucket(Bucket=self.bucket)
        except self._errors.ClientError:
            region = self._s3.meta.region_name
            kwargs = {} if region in (None, "us-east-1") else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            self._s3.create_bucket(Bucket=self.bucket, **kwargs)

    @_guard
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self._s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type)

    @_guard
    def put_file(self, key: str, file: IO[bytes], content_type: str = "application/octet-stream") -> None:
        # upload_fileobj streams, in multipart parts for large files.
        self._s3.upload_fileobj(file, self.bucket, self._key(key), ExtraArgs={"ContentType": content_type})

    @_guard
    def get(self, key: str) -> bytes:
        try:
            return self._s3.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self._errors.NoSuchKey:
            raise NotFound(key) from None

    @_guard
    def get_file(self, key: str, file: IO[bytes]) -> int:
        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except self._errors.NoSuchKey:
            raise NotFound(key) from None
        written = 0
        for chunk in body.iter_chunks(1 << 20):
            file.write(chunk)
            written += len(chunk)
        return written

    @_guard
    def exists(self, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except self._errors.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    @_guard
    def keys(self, prefix: str = "") -> Iterator[str]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                yield obj["Key"][len(self.prefix):]

    @_guard
    def scan(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                yield obj["Key"][len(self.prefix):], obj["LastModified"].timestamp()

    @_guard
    def delete(self, key: str) -> None:
        self._s3.delete_object(Bucket=self.bucket, Key=self._key(key))

    @_guard
    def delete_many(self, keys: list[str]) -> None:
        for start in range(0, len(keys), _DELETE_BATCH):
            chunk = [{"Key": self._key(k)} for k in keys[start : start + _DELETE_BATCH]]
            response = self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True})
            if response.get("Errors"):
                raise BackendError(f"S3 store: {len(response['Errors'])} objects not deleted: {response['Errors'][0]}")
