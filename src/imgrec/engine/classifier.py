"""The classifier: a model variant on onnxruntime, loaded once per process."""


from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

from imgrec.engine.model import Manifest, load_manifest
from imgrec.engine.pipeline import Guess, ImageError, Pipeline, Prediction
from imgrec.engine.variants import VARIANTS
from imgrec.imaging.header import ImageLimits, ImageRejected
from imgrec.imaging.pixels import load_image
from imgrec.settings import Settings


def session_options(threads: int) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return opts


def default_infer_batch(manifest: Manifest) -> int:
    """A built-in variant's measured images per call (`Variant.infer_batch`); a whole batch for
    a model from a folder, which nobody measured."""
    v = VARIANTS.get(manifest.variant)
    return v.infer_batch if v is not None else 0


class Classifier(Pipeline):
    """A model in the data directory on onnxruntime: `classify` (from `Pipeline`) batches
    of encoded images."""

    def __init__(
        self,
        model_dir: Path,
        *,
        threads: int = 1,
        limits: ImageLimits = ImageLimits(),
        draft: bool = True,
        infer_batch: int = 0,
    ) -> None:
        self.model_dir = model_dir
        self.manifest: Manifest = load_manifest(model_dir)
        self.limits = limits
        self.draft = draft
        # Images per onnxruntime call (0: the variant's own, see `Variant.infer_batch`).
        # Batching messages still pays (fewer round trips); only the call is kept small.
        self.infer_batch = infer_batch or default_infer_batch(self.manifest)
        self._session = ort.InferenceSession(
            str(model_dir / self.manifest.file),
            sess_options=session_options(threads),
            providers=["CPUExecutionProvider"],
        )
        self._classes = self.manifest.labels
        m = self.manifest
        # float32 input: (pixels * scale - mean) / std, as one multiply-add per channel
        self._mul = (m.scale / np.asarray(m.std, np.float32)).astype(np.float32)
        self._add = (-np.asarray(m.mean, np.float32) / np.asarray(m.std, np.float32)).astype(np.float32)
        self.decode_pool = ThreadPoolExecutor(threads, thread_name_prefix="decode") if threads > 1 else None

    @classmethod
    def from_settings(cls, settings: Settings, threads: int | None = None) -> Classifier:
        """The classifier a worker (or a local command, with `threads`) runs: the configured
        model, limits and inference batch."""
        return cls(
            settings.model_path, threads=threads or settings.intra_op_threads, limits=ImageLimits.from_settings(settings),
            infer_batch=settings.infer_batch,
        )

    @property
    def model_id(self) -> str:
        return f"{self.manifest.name}@{self.manifest.short_hash}"

    def decode(self, data: bytes) -> np.ndarray | ImageError:
        try:
            return load_image(
                data,
                self.limits,
                resize=self.manifest.resize_size,
                crop=self.manifest.input_size,
                draft=self.draft,
                straight=self.manifest.resize == "straight",
            )
        except ImageRejected as exc:
            return ImageError(str(exc))

    def infer(self, pixels: list[np.ndarray]) -> list[Prediction]:
        """Run the model on decoded HxWx3 uint8 crops, `infer_batch` at a time."""
        step = self.infer_batch or max(1, len(pixels))
        predictions: list[Prediction] = []
        for start in range(0, len(pixels), step):
            predictions += self.predictions(self.run(self.normalize(pixels[start : start + step])))
        return predictions

    def normalize(self, pixels: list[np.ndarray]) -> np.ndarray:
        """Stack HxWx3 uint8 crops into the model's input: as they are for a uint8 input (the
        built-in graphs normalise them themselves), scaled and normalised for a float32 one,
        channels first for NCHW."""
        batch = np.stack(pixels)
        if self.manifest.input_type == "float32":
            batch = batch.astype(np.float32) * self._mul + self._add
        if self.manifest.input_layout == "NCHW":
            batch = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
        return batch

    def run(self, batch: np.ndarray) -> np.ndarray:
        (logits,) = self._session.run(None, {self.manifest.input_name: batch})
        return logits

    def predictions(self, logits: np.ndarray) -> list[Prediction]:
        return [self._predict(row) for row in logits]

    def _predict(self, logits: np.ndarray) -> Prediction:
        z = logits.astype(np.float64)
        if self.manifest.output == "probabilities":
            probs = z
        else:
            probs = np.exp(z - z.max())
            probs /= probs.sum()
        top = np.argsort(-probs)[:5]
        guesses = [self._guess(int(i), float(probs[i])) for i in top]
        best = guesses[0]
        return Prediction(best.label, best.class_index, best.wnid, best.score, guesses)

    def _guess(self, index: int, score: float) -> Guess:
        c = self._classes[index]
        return Guess(c["label"], index, c["wnid"], score)
