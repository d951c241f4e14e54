"""The object-store port: keys to bytes, as in S3.

Keys are relative, '/'-separated paths of safe segments; `check_key` rejects any
other key so that no adapter can be made to write outside its place.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import BinaryIO
from urllib.parse import urlparse

_SEGMENT = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


class ObjectNotFound(KeyError):
    pass


def check_key(key: str) -> str:
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") or not _SEGMENT.match(p) for p in parts):
        raise ValueError(f"unsafe object key {key!r}")
    return key


class ObjectStore(ABC):
    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Write the whole object at once: readers see the old or the new bytes, never a mix."""

    def put_file(self, key: str, file: BinaryIO, content_type: str = "application/octet-stream") -> None:
        """Like `put`, from a binary file read from its current position; adapters that can
        stream override this, so that a large upload is never held in memory whole."""
        self.put(key, file.read(), content_type)

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes; raises ObjectNotFound."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys that start with `prefix`, in lexical order."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; no error if it is not there."""

    @abstractmethod
    def url(self, key: str, expires: int = 3600) -> str:
        """A URL from which the object can be fetched (presigned where that applies)."""


def open_store(url: str) -> ObjectStore:
    """The adapter for a URL, e.g. ``file:///var/lib/imgrec/store``."""
    scheme = urlparse(url).scheme
    if scheme == "file":
        from imgrec.stores.local import LocalStore

        return LocalStore(url)
    if scheme == "s3":
        from imgrec.stores.s3 import S3Store

        return S3Store(url)
    raise ValueError(f"unknown store URL {url!r}: supported schemes are file:// and s3://")
