"""Which files to send, and how many to a request."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
PART_OVERHEAD = 256  # bytes a multipart part adds to its file (headers, boundary), name aside


def image_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files named, and the images under the folders named (recursively, by their
    extension, in a stable order); a path that does not exist is an error."""
    return find_images(paths)[0]


def find_images(paths: Iterable[str | Path]) -> tuple[list[Path], list[Path]]:
    """`image_files`, and the files under the folders named that were left out for their
    extension (e.g. .HEIC, .txt, .DS_Store), so that a caller can say what it did not send.
    A file named on its own is always taken: the service says whether it is an image."""
    found: list[Path] = []
    skipped: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            for folder, dirs, names in os.walk(p):
                dirs.sort()
                for n in sorted(names):
                    (found if Path(n).suffix.lower() in IMAGE_SUFFIXES else skipped).append(Path(folder) / n)
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    return found, skipped


def request_size(paths: list[Path]) -> int:
    return sum(p.stat().st_size + PART_OVERHEAD + len(p.name.encode()) for p in paths) + 64


def chunks(paths: list[Path], max_files: int, max_bytes: int) -> tuple[list[list[Path]], list[Path]]:
    """The files in requests of at most `max_files` files and `max_bytes` bytes, in
    order; and the files too large to go even alone."""
    groups: list[list[Path]] = []
    too_large: list[Path] = []
    current: list[Path] = []
    size = 64
    for p in paths:
        own = request_size([p]) - 64
        if own + 64 > max_bytes:
            too_large.append(p)
            continue
        if current and (len(current) >= max_files or size + own > max_bytes):
            groups.append(current)
            current, size = [], 64
        current.append(p)
        size += own
    if current:
        groups.append(current)
    return groups, too_large
