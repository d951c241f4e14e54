"""Stop signals, handled without deadlocks: the handler writes a byte, a thread stops.

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
import os
import signal
import threading
from collections.abc import Callable

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


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
