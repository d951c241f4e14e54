"""Accuracy of the classifier on a folder with a ``labels.csv`` (filename,class_index,...)."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from imgrec.engine.classifier import Classifier
from imgrec.engine.pipeline import ImageError, Prediction


@dataclass
class EvalReport:
    total: int = 0
    top1: int = 0
    top5: int = 0
    seconds: float = 0.0
    wrong: list[tuple[str, int, str]] = field(default_factory=list)  # (file, expected, got)

    @property
    def images_per_second(self) -> float:
        return self.total / self.seconds if self.seconds else 0.0


def read_labels(folder: Path) -> list[tuple[str, int]]:
    path = folder / "labels.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (expected columns: filename,class_index)")
    with path.open(newline="") as f:
        return [(row["filename"], int(row["class_index"])) for row in csv.DictReader(f)]


def evaluate(
    classifier: Classifier,
    folder: Path,
    batch_size: int = 16,
    progress: Callable[[int], None] = lambda n: None,
) -> EvalReport:
    labels = read_labels(folder)
    report = EvalReport()
    for start in range(0, len(labels), batch_size):
        chunk = labels[start : start + batch_size]
        images = [(folder / name).read_bytes() for name, _ in chunk]
        t0 = time.perf_counter()
        results = classifier.classify(images)
        report.seconds += time.perf_counter() - t0
        for (name, expected), result in zip(chunk, results, strict=False):
            report.total += 1
            if isinstance(result, ImageError):
                report.wrong.append((name, expected, f"error: {result.error}"))
                continue
            assert isinstance(result, Prediction)
            report.top1 += result.class_index == expected
            report.top5 += expected in {g.class_index for g in result.top}
            if result.class_index != expected:
                report.wrong.append((name, expected, result.label))
        progress(len(chunk))
    return report
