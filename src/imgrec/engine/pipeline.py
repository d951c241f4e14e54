"""What classifying is, whatever runs the model: decode each image, infer the decoded
ones together, and give every image its result in place. An image that cannot be
decoded gets its ImageError and spoils nothing of its batch.

This is the one place that does it: a worker's batch, the child process that tries a
suspect image alone, `imgrec classify`, `imgrec eval` and the benchmarks all call
`Pipeline.classify`, so what is measured is what serves. A `Guard` bounds (and may
time) each step: the worker's ends the process when an image hangs the decoder.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class Guess:
    label: str
    class_index: int
    wnid: str
    score: float


@dataclass(frozen=True, slots=True)
class Prediction:
    label: str
    class_index: int
    wnid: str
    score: float  # softmax probability
    top: list[Guess] = field(default_factory=list)  # the top-5, best first

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ImageError:
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.error}


class Guard(Protocol):
    """Wraps each step of `Pipeline.classify`."""

    def decoding(self, index: int) -> AbstractContextManager[object]:
        """Around the decoding of images[index]."""

    def inferring(self, count: int) -> AbstractContextManager[object]:
        """Around the inference of the `count` decoded images."""


class Unguarded:
    """Bounds nothing: images are decoded on the pipeline's threads, if it has several."""

    def decoding(self, index: int) -> AbstractContextManager[object]:
        return contextlib.nullcontext()

    def inferring(self, count: int) -> AbstractContextManager[object]:
        return contextlib.nullcontext()


UNGUARDED = Unguarded()


class Pipeline(ABC):
    """Subclasses say how to decode one image and how to infer a batch; `classify` is theirs."""

    # Decodes concurrently when unguarded (Pillow releases the GIL while it works).
    decode_pool: ThreadPoolExecutor | None = None

    @property
    @abstractmethod
    def model_id(self) -> str:
        """What results name as the model that made them: `name@<sha256 prefix>`."""

    @abstractmethod
    def decode(self, data: bytes) -> np.ndarray | ImageError:
        """The model's input for one encoded image, or why there is none."""

    @abstractmethod
    def infer(self, pixels: list[np.ndarray]) -> list[Prediction]:
        """A prediction for each decoded image, in order."""

    def classify(self, images: Sequence[bytes | ImageError], guard: Guard = UNGUARDED) -> list[Prediction | ImageError]:
        """Each image's prediction, or its error, in order. An ImageError given in place of
        bytes (e.g. the input is gone) is kept as it is."""
        decoded = self._decode_all(images, guard)
        good = [d for d in decoded if isinstance(d, np.ndarray)]
        with guard.inferring(len(good)):
            predictions = iter(self.infer(good) if good else [])
        return [d if isinstance(d, ImageError) else next(predictions) for d in decoded]

    def decode_many(self, images: Sequence[bytes | ImageError]) -> list[np.ndarray | ImageError]:
        """Each image decoded, on the decode pool's threads where there is one."""
        if self.decode_pool is not None and len(images) > 1:
            return list(self.decode_pool.map(self._decode_one, images))
        return [self._decode_one(data) for data in images]

    def _decode_all(self, images: Sequence[bytes | ImageError], guard: Guard) -> list[np.ndarray | ImageError]:
        if guard is UNGUARDED:
            return self.decode_many(images)
        decoded = []
        for i, data in enumerate(images):
            with guard.decoding(i):
                decoded.append(self._decode_one(data))
        return decoded

    def _decode_one(self, data: bytes | ImageError) -> np.ndarray | ImageError:
        return data if isinstance(data, ImageError) else self.decode(data)
