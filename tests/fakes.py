"""Stand-ins for in-process tests of the worker: a classifier that needs no model, and
a store that fails on demand. Queues and stores otherwise are the real `memory://`
adapters (which pass the same contract suites as the durable ones). And a stand-in
model (a few bytes and a manifest) for the tests of moving models around."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from imgrec.engine.model import MANIFEST_FILE, Manifest
from imgrec.engine.pipeline import Guess, ImageError, Pipeline, Prediction
from imgrec.errors import BackendUnavailable
from imgrec.stores import ObjectStore


def image(label: str) -> bytes:
    """The bytes FakeClassifier labels `label`."""
    return f"img:{label}".encode()


CRASH = b"crash"  # ends the process that decodes it, as a decoder bug would
HANG = b"hang"  # never finishes decoding


class FakeClassifier(Pipeline):
    model_id = "fake@000000000000"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[int] = []  # batch sizes given to infer

    def decode(self, data: bytes):
        if data == CRASH:
            os._exit(3)
        if data == HANG:
            time.sleep(3600)
        if not data.startswith(b"img:"):
            return ImageError("not an image (or a format we cannot read)")
        return np.frombuffer(data[4:], np.uint8)  # "pixels" that spell the label

    def infer(self, pixels: list) -> list[Prediction]:
        self.calls.append(len(pixels))
        time.sleep(self.delay)
        labels = [p.tobytes().decode() for p in pixels]
        return [Prediction(label, 1, "n00000001", 0.9, [Guess(label, 1, "n00000001", 0.9)]) for label in labels]


class FakeClock:
    """A monotonic clock that moves only when told to (`advance`)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FlakyStore(ObjectStore):
    """Wraps a store; while `down`, every call raises BackendUnavailable; while `full`,
    writes do (reads work, as on a full disk)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner, self.down, self.full = inner, False, False
        self.refused = 0  # calls failed on purpose

    def _check(self) -> None:
        if self.down:
            self.refused += 1
            raise BackendUnavailable("store: connection refused by s3.internal:9000 (simulated)")

    def put(self, key, data, content_type="application/octet-stream"):
        self._check()
        if self.full:
            self.refused += 1
            raise BackendUnavailable("store: [Errno 28] No space left on device: /var/lib/imgrec (simulated)")
        self.inner.put(key, data, content_type)

    def get(self, key):
        self._check()
        return self.inner.get(key)

    def get_file(self, key, file):
        self._check()
        return self.inner.get_file(key, file)

    def exists(self, key):
        self._check()
        return self.inner.exists(key)

    def keys(self, prefix=""):
        self._check()
        return self.inner.keys(prefix)

    def scan(self, prefix=""):
        self._check()
        return self.inner.scan(prefix)

    def delete(self, key):
        self._check()
        self.inner.delete(key)


def fake_model(
    folder: Path, content: bytes = b"not really onnx", name: str = "efficientnet-lite0", variant: str = "lite0"
) -> Manifest:
    """A model folder as `imgrec model build` leaves one, with `content` for its ONNX file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(content)
    manifest = Manifest(
        name,
        "model.onnx",
        hashlib.sha256(content).hexdigest(),
        "input",
        "NHWC",
        224,
        256,
        (0.5, 0.5, 0.5),
        (0.5, 0.5, 0.5),
        [{"index": 0, "wnid": "n0", "label": "thing"}],
        "a test",
        variant=variant,
    )
    (folder / MANIFEST_FILE).write_text(json.dumps(asdict(manifest)))
    return manifest
