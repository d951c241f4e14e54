"""A new version of a worker's model, taken up between two batches: no restart, nothing lost.

A `ModelWatch` looks at the version the store serves for the worker's model every few
seconds, on a thread of its own (a `Loop`). When it is not the one the worker runs, the
watch pulls it (checked against its sha256) into the model's folder, loads it and runs one
inference, all beside the classifier that goes on serving; the worker's loop `take`s the
new classifier between two batches. A push, or a `rollback`, reaches every worker this
way ([the record](../../docs/decisions/workers-poll-for-a-new-version.md)).

The workers of one host share the model's folder: the pull and the load hold a lock on
it, so that no worker loads a file while another replaces it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from imgrec.background import Loop
from imgrec.engine import registry
from imgrec.engine.classifier import Classifier
from imgrec.engine.model import folder_lock
from imgrec.errors import BackendError, ModelMissing
from imgrec.stores import ObjectStore

log = logging.getLogger("imgrec.worker")


class ModelWatch:
    """Prepares the version the store serves for `model` whenever it is not `current`'s."""

    def __init__(
        self, store: ObjectStore, model: str, model_dir: Path, current: Classifier, load: Callable[[], Classifier],
        every: float,
    ) -> None:
        self.store, self.model, self.model_dir, self.load = store, model, model_dir, load
        self.running = current.manifest
        self._ready: Classifier | None = None
        self._lock = threading.Lock()
        self._loop = Loop(
            "model watch", self.look, every=every, first=0.0, log=log, expected=(BackendError, ModelMissing)
        )

    def start(self) -> ModelWatch:
        self._loop.start()
        return self

    def stop(self) -> None:
        self._loop.stop()

    def look(self) -> None:
        """One look: if the store serves another version than the one running (or prepared),
        pull, load and warm it, ready to `take`."""
        try:
            remote = registry.remote_manifest(self.store, self.model)
        except ModelMissing:
            return  # nothing pushed (one host, a model built here): the one here is the one served
        with self._lock:
            prepared = self._ready.manifest if self._ready is not None else self.running
        if remote.serves_as(prepared):  # the file, and its labels and preprocessing (a push may change those alone)
            return
        try:
            with folder_lock(self.model_dir):
                registry.pull(self.store, self.model_dir, self.model)
                clf = self.load()
        except OSError as exc:  # a folder it cannot write (a read-only image): said in one line, tried again
            raise ModelMissing(f"cannot take up {remote.name}@{remote.short_hash} in {self.model_dir}: {exc}") from None
        warm_up(clf)
        log.info("model %s prepared beside %s; taken up after this batch", clf.model_id, self.running.short_hash)
        with self._lock:
            self._ready = clf

    def take(self) -> Classifier | None:
        """The new classifier, once (None while there is none): the caller serves it from now on."""
        with self._lock:
            clf, self._ready = self._ready, None
            if clf is not None:
                self.running = clf.manifest
            return clf


def warm_up(clf: Classifier) -> None:
    """One inference before the first job: the first run of a session is the slowest."""
    import numpy as np

    size = clf.manifest.input_size
    clf.infer([np.zeros((size, size, 3), np.uint8)])
