"""The object-store port: keys to bytes, as in S3.

Keys are relative, '/'-separated paths of safe segments; `check_key` rejects any
other key so that no adapter can be made to write outside its place. Adapters
live beside it in `imgrec.stores` (`open_store` picks one by URL). Every method raises
only `imgrec.errors` exceptions: `NotFound` for a missing object,
`BackendUnavailable` when the store cannot serve now (unreachable, disk full).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from imgrec.errors import BadInput

_SEGMENT = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


def check_key(key: str) -> str:
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") or not _SEGMENT.match(p) for p in parts):
        raise BadInput(f"unsafe object key {key!r}")
    return key


@dataclass(frozen=True)
class Staged:
    """An object written but not yet visible under its key (`ObjectStore.stage`). `hold`
    is the adapter's own: a temporary file, the bytes, or nothing where staging already
    wrote the object whole."""

    key: str
    hold: Any = None


class ObjectStore(ABC):
    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Write the whole object at once: readers see the old or the new bytes, never a mix."""

    def put_file(self, key: str, file: IO[bytes], content_type: str = "application/octet-stream") -> None:
        """Like `put`, from a binary file read from its current position; adapters that can
        stream override this, so that a large upload is never held in memory whole."""
        self.put(key, file.read(), content_type)

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes; raises NotFound."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def keys(self, prefix: str = "") -> Iterator[str]:
        """Keys that start with `prefix`, in lexical order."""

    @abstractmethod
    def scan(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        """(key, last modified as a Unix time) for the keys that start with `prefix`, in
        lexical order: what the retention sweep needs, in one listing."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; no error if it is not there."""

    def put_many(self, items: list[tuple[str, bytes, str]]) -> None:
        """Several (key, data, content type) at once; adapters override this where one
        flush or round trip can serve them all."""
        for key, data, content_type in items:
            self.put(key, data, content_type)

    def stage(self, key: str, file: IO[bytes], content_type: str = "application/octet-stream") -> Staged:
        """The first half of a group commit: write the object's bytes where they will
        survive a crash, without making it visible under `key` yet. Several threads may
        stage at once (their flushes overlap); `commit` then makes a whole group visible
        and durable at once, `discard` drops what a failed group staged.

        The default writes the object whole (a store whose every write is durable on
        return, such as S3, has nothing to group)."""
        self.put_file(key, file, content_type)
        return Staged(key)

    def commit(self, staged: list[Staged]) -> None:  # noqa: B027 - the default staged nothing
        """Make staged objects visible under their keys and durable, in one step where the
        adapter can (a local disk flushes each folder once for the whole group)."""

    def discard(self, staged: list[Staged]) -> None:
        """Drop what `stage` wrote for a group that will not be committed; never raises."""
        for s in staged:
            if s.hold is None:
                try:
                    self.delete(s.key)
                except Exception:  # noqa: BLE001 - best effort: what is left is swept with its job
                    pass

    def delete_many(self, keys: list[str]) -> None:
        """Several at once; adapters override this with one round trip where they can."""
        for key in keys:
            self.delete(key)

    def create(self) -> None:  # noqa: B027 - stores that need making (a bucket) override it
        """Make the store if it does not exist (`imgrec init`); idempotent."""
