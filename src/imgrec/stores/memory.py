"""`MemoryStore`: objects in a dict, for tests and one-process experiments.

URL ``memory://name``: every store opened with the same name in one process is
the same store. Nothing survives the process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from urllib.parse import urlparse

from imgrec.errors import NotFound
from imgrec.stores.base import ObjectStore, Staged, check_key

_STORES: dict[str, dict[str, tuple[bytes, float]]] = {}
_LOCK = threading.Lock()


class MemoryStore(ObjectStore):
    def __init__(self, url: str, timeout: float = 0.0) -> None:
        name = urlparse(url).netloc
        with _LOCK:
            self._objects = _STORES.setdefault(name, {})

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self._objects[check_key(key)] = (bytes(data), time.time())

    def stage(self, key: str, file, content_type: str = "application/octet-stream") -> Staged:
        return Staged(check_key(key), file.read())

    def commit(self, staged: list[Staged]) -> None:
        for s in staged:
            self.put(s.key, s.hold)

    def discard(self, staged: list[Staged]) -> None:
        pass

    def get(self, key: str) -> bytes:
        try:
            return self._objects[check_key(key)][0]
        except KeyError:
            raise NotFound(key) from None

    def exists(self, key: str) -> bool:
        return check_key(key) in self._objects

    def keys(self, prefix: str = "") -> Iterator[str]:
        return iter(sorted(k for k in list(self._objects) if k.startswith(prefix)))

    def scan(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        found = [(k, v[1]) for k, v in list(self._objects.items()) if k.startswith(prefix)]
        return iter(sorted(found))

    def delete(self, key: str) -> None:
        self._objects.pop(check_key(key), None)
