"""Cross-process wake-ups for the SQLite queue, so consumers block instead of polling.

Each waiting consumer binds a Unix datagram socket and leaves a marker file named
after it in the queue's wake directory. A producer, after committing a message,
sends one byte to every listed socket. A consumer drains its socket before it
looks at the database, so a message committed after that look still wakes it.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
import tempfile
import uuid
from pathlib import Path


def _address(token: str) -> str | bytes:
    if sys.platform.startswith("linux"):
        return b"\0imgrec-wake-" + token.encode()  # abstract: no file, gone with the process
    return os.path.join(tempfile.gettempdir(), f"imgrec-wake-{token}")


class Waiter:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._token = uuid.uuid4().hex[:16]
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(_address(self._token))
        self._sock.setblocking(False)
        self._marker = directory / self._token
        self._marker.touch()

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._sock.recv(64):
                pass

    def wait(self, timeout: float) -> None:
        if timeout > 0:
            select.select([self._sock], [], [], timeout)

    def close(self) -> None:
        self._marker.unlink(missing_ok=True)
        self._sock.close()
        if isinstance(addr := _address(self._token), str):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(addr)


def wake_all(directory: Path) -> None:
    try:
        tokens = os.listdir(directory)
    except FileNotFoundError:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        for token in tokens:
            try:
                s.sendto(b"!", _address(token))
            except BlockingIOError:
                pass  # its buffer is full of wake-ups already
            except (ConnectionRefusedError, FileNotFoundError):
                (directory / token).unlink(missing_ok=True)  # its process is gone
