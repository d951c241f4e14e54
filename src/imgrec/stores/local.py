"""`LocalStore`: objects as files under one directory."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlparse

from imgrec.errors import BackendUnavailable, NotFound, translating
from imgrec.stores.base import ObjectStore, Staged, check_key

_MISSING = (FileNotFoundError, IsADirectoryError, NotADirectoryError)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(staged: list[tuple[str, Path, list[Path]]]) -> None:
    """Remove the temporary files of a failed write; the write's own error is the one raised."""
    for tmp, _, _ in staged:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _translate(exc: Exception):
    # Disk full, read-only, permission denied, a file where a folder should be, I/O error.
    return BackendUnavailable(f"local store: {exc}") if isinstance(exc, OSError) else None


_guard = translating(_translate)


class LocalStore(ObjectStore):
    @_guard
    def __init__(self, url: str, timeout: float = 0.0) -> None:  # a local disk's calls cannot be bounded
        parsed = urlparse(url)
        self.root = Path(unquote(parsed.netloc + parsed.path)).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    @_guard
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.put_many([(key, data, content_type)])

    @_guard
    def put_file(self, key: str, file: IO[bytes], content_type: str = "application/octet-stream") -> None:
        self._commit([self._stage(key, lambda f: shutil.copyfileobj(file, f, 1 << 20))])

    @_guard
    def stage(self, key: str, file: IO[bytes], content_type: str = "application/octet-stream") -> Staged:
        # The file's bytes flushed under a temporary name; committing renames it.
        return Staged(key, self._stage(key, lambda f: shutil.copyfileobj(file, f, 1 << 20)))

    @_guard
    def commit(self, staged: list[Staged]) -> None:
        self._commit([s.hold for s in staged])

    def discard(self, staged: list[Staged]) -> None:
        _discard([s.hold for s in staged])

    @_guard
    def put_many(self, items: list[tuple[str, bytes, str]]) -> None:
        staged = []
        try:
            for key, data, _ in items:
                staged.append(self._stage(key, lambda f, data=data: f.write(data)))
        except BaseException:
            _discard(staged)
            raise
        self._commit(staged)

    def _stage(self, key: str, fill) -> tuple[str, Path, list[Path]]:
        """Write a temporary file beside the key's path and flush it to disk: (its path,
        the key's path, the folders made for it)."""
        path = self._path(key)
        new_dirs = []  # the folders below the root that this write makes
        folder = path.parent
        while folder != self.root and not folder.is_dir():
            new_dirs.append(folder)
            folder = folder.parent
        if new_dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                fill(f)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            os.unlink(tmp)
            raise
        return tmp, path, new_dirs

    @staticmethod
    def _commit(staged: list[tuple[str, Path, list[Path]]]) -> None:
        """Rename each flushed file over its key, then flush each folder touched, once:
        readers never see half an object, and a written object survives a power loss
        (a rename is durable only once its folder is synced)."""
        folders: dict[Path, None] = {}
        for i, (tmp, path, new_dirs) in enumerate(staged):
            try:
                os.replace(tmp, path)
            except BaseException:
                _discard(staged[i:])
                raise
            folders.update(dict.fromkeys([path.parent, *(p.parent for p in reversed(new_dirs))]))
        for folder in folders:
            _fsync_dir(folder)

    @_guard
    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except _MISSING:
            raise NotFound(key) from None

    @_guard
    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    @_guard
    def keys(self, prefix: str = "") -> Iterator[str]:
        # Walk only the directory the prefix names, not the whole store.
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not base.is_dir():
            return iter(())
        keys = []
        for dirpath, _, files in os.walk(base):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in files:
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix) and not name.startswith(".tmp-"):
                    keys.append(key)
        return iter(sorted(keys))

    @_guard
    def scan(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        found = []
        for key in self.keys(prefix):
            try:
                found.append((key, self._path(key).stat().st_mtime))
            except FileNotFoundError:
                continue  # deleted meanwhile
        return iter(found)

    @_guard
    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        # A job's folder (inputs/<job>/) goes with its last object, so folders do not pile up.
        if path.parent != self.root and path.parent.parent != self.root:
            with contextlib.suppress(OSError):
                path.parent.rmdir()
