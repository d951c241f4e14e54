"""Classify one image in a forked child, so that an image that crashes or hangs the
decoder ends the child, not the worker. Used only for redelivered messages (whose
earlier attempt may have ended a worker): the common path stays in-process.
"""

from __future__ import annotations

import multiprocessing as mp
import os

from imgrec.engine.pipeline import Pipeline

_fork = mp.get_context("fork")  # the child inherits the loaded model: nothing to reload


def _child(clf: Pipeline, data: bytes, conn) -> None:
    try:
        conn.send(clf.classify([data])[0].to_dict())
    finally:
        os._exit(0)  # no cleanup of the parent's threads, sockets or files


def classify_isolated(clf: Pipeline, data: bytes, timeout: float) -> dict | None:
    """The result as a dict (prediction or image error), or None if the child crashed or
    ran past `timeout` seconds."""
    receiver, sender = _fork.Pipe(duplex=False)
    child = _fork.Process(target=_child, args=(clf, data, sender), daemon=True)
    child.start()
    sender.close()
    try:
        if receiver.poll(timeout):
            return receiver.recv()
        return None
    except EOFError:  # it died before answering
        return None
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receiver.close()
