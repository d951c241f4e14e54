"""Stopping: signals handled without deadlocks, and children that stop with their parent.

A Python signal handler runs in the main thread between two bytecodes, wherever that
thread is, possibly inside a `with lock:` block (`threading.Event.set` and `wait`
take one) or inside the handler of an earlier signal. A handler that takes a lock
can then wait forever for a lock its own thread holds: `imgrec up` stopped with
Ctrl-C sends SIGINT to every process and then SIGTERM to its children, and a worker
whose handler (`Event.set`) was interrupted by the second signal hung until it was
killed. Writing to a pipe takes no lock; a thread reads it and runs the callback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
log = logging.getLogger("imgrec")


def on_stop_signal(callback: Callable[[], object]) -> None:
    """Run `callback` on a thread of its own at the first SIGTERM or SIGINT (later
    ones change nothing: the callback runs once). Call from the main thread."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)

    def handler(*_: object) -> None:
        with contextlib.suppress(BlockingIOError):  # a full pipe: a stop is on its way already
            os.write(write_end, b"!")

    def relay() -> None:
        os.read(read_end, 1)
        callback()

    threading.Thread(target=relay, name="stop-signal", daemon=True).start()
    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)


# Set by `imgrec up` for its children and by the local actuator for its workers.
PARENT_ENV = "IMGREC_PARENT_PID"


def child_env(env: dict[str, str]) -> dict[str, str]:
    """`env` for a child that should stop when this process is gone."""
    return {**env, PARENT_ENV: str(os.getpid())}


def stop_with_parent(every: float = 1.0) -> None:
    """If started by an imgrec parent (see `child_env`), SIGTERM this process once that
    parent is gone, e.g. `imgrec up` killed with SIGKILL: its web tier would otherwise
    hold the port and its autoscaler keep workers running, and the next `imgrec up`
    would meet them. The process stops as on any SIGTERM (gracefully)."""
    parent = os.environ.get(PARENT_ENV, "")
    if not parent.isdigit():
        return

    def watch() -> None:
        while os.getppid() == int(parent):
            time.sleep(every)
        log.warning("parent process %s is gone: stopping", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
