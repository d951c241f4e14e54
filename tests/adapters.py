"""Every adapter of each port, for the contract suites (one fixture per port)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from imgrec.queue import Queue, open_queue
from imgrec.store import ObjectStore, open_store

# name -> function(tmp_path) -> URL. Later adapters add themselves here.
QUEUE_URLS: dict[str, Callable[[Path], str]] = {
    "sqlite": lambda tmp: f"sqlite://{tmp}/queue.sqlite3",
}
STORE_URLS: dict[str, Callable[[Path], str]] = {
    "local": lambda tmp: (tmp / "store").as_uri(),
}


def make_queue(url: str, name: str = "requests", **options) -> Queue:
    return open_queue(url, name, **options)


def make_store(url: str) -> ObjectStore:
    return open_store(url)
