"""The model here, without a service: `imgrec classify` files and folders, `imgrec eval`
its accuracy on a labelled folder."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress

from imgrec.cli.options import CsvOut, Paths, Threads
from imgrec.cli.progress import progress_bar
from imgrec.settings import Settings

err = Console(stderr=True)


def local_classifier(settings: Settings, threads: int = 0):
    from imgrec.engine import registry
    from imgrec.engine.classifier import Classifier
    from imgrec.engine.model import build
    from imgrec.errors import BackendError, ModelMissing
    from imgrec.stores import open_store

    try:  # the model here, or the one pushed to the store, or else built (with the export extra)
        registry.obtain(settings.model_path, open_store(settings.store_url), settings.model)
    except (ModelMissing, BackendError):
        build(settings.model_path, variant=settings.model)
    return Classifier.from_settings(settings, threads=threads or os.cpu_count() or 1)


def classify(
    ctx: typer.Context,
    paths: Paths,
    as_json: Annotated[bool, typer.Option("--json", help="Full predictions as JSON lines on stdout")] = False,
    csv_out: CsvOut = None,
    json_file: Annotated[Path | None, typer.Option("--json-file", help="Write the results as JSON to this file")] = None,
    threads: Annotated[int, typer.Option(help="onnxruntime intra-op threads (default: all cores)")] = 0,
) -> None:
    """Classify image files and folders here, with the model; prints name:label lines.
    Goes through IMGREC_MAX_BATCH images at a time: memory stays flat whatever the count."""
    from imgrec.client.files import image_files
    from imgrec.client.submit import RowWriter

    settings = ctx.obj
    files = image_files(paths)
    clf = local_classifier(settings, threads)
    failed, started = 0, time.monotonic()
    with progress_bar("classifying") as bar, RowWriter(csv_out, json_file) as out:
        task = bar.add_task("", total=len(files), rate=0.0, failed=0)
        for start in range(0, len(files), settings.max_batch):
            chunk = files[start : start + settings.max_batch]
            for f, r in zip(chunk, clf.classify([f.read_bytes() for f in chunk]), strict=True):
                result = r.to_dict()
                failed += "error" in result
                out.write({"filename": str(f), **result})
                if as_json:
                    print(json.dumps({"file": str(f), **result}))
                elif not out:
                    print(f"{f.stem}: error: {result['error']}" if "error" in result else f"{f.stem}:{result['label']}",
                          file=sys.stderr if "error" in result else sys.stdout)
            done = start + len(chunk)
            bar.update(task, completed=done, failed=failed, rate=done / max(time.monotonic() - started, 1e-6))
    raise typer.Exit(1 if failed else 0)


def eval_all_variants(settings: Settings, folder: Path, batch_size: int, threads: int) -> None:
    """Accuracy and speed of every model variant on FOLDER, as a Markdown table; a
    variant missing here is pulled from the store or built (the export extra)."""
    from imgrec.engine.evaluate import evaluate
    from imgrec.engine.variants import VARIANTS

    print("| variant | top-1 | top-5 | images/s | file MB | vs lite0 |\n|---|---|---|---|---|---|")
    base = None
    for key in VARIANTS:
        clf = local_classifier(settings.with_overrides(model=key), threads)
        report = evaluate(clf, folder, batch_size)
        base = base or report.images_per_second
        size = (clf.model_dir / clf.manifest.file).stat().st_size / 1e6
        print(
            f"| {key} | {report.top1 / report.total:.1%} | {report.top5 / report.total:.1%} "
            f"| {report.images_per_second:.1f} | {size:.1f} | {report.images_per_second / base:.2f}x |",
            flush=True,
        )


def evaluate(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(exists=True, file_okay=False)],
    batch_size: int = 16,
    threads: Threads = 0,
    all_variants: Annotated[bool, typer.Option("--all-variants", help="A table of every variant (built if missing)")] = False,
) -> None:
    """Top-1/top-5 accuracy on FOLDER/labels.csv (filename,class_index,...)."""
    from imgrec.engine.evaluate import evaluate as run_eval
    from imgrec.engine.evaluate import read_labels

    if all_variants:
        eval_all_variants(ctx.obj, folder, batch_size, threads)
        return
    clf = local_classifier(ctx.obj, threads)
    total = len(read_labels(folder))
    with Progress(console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task("classifying", total=total)
        report = run_eval(clf, folder, batch_size, lambda n: progress.advance(task, n))
    print(f"model: {clf.model_id}")
    print(f"images: {report.total}")
    print(f"top-1: {report.top1 / report.total:.4f}")
    print(f"top-5: {report.top5 / report.total:.4f}")
    print(f"images/s: {report.images_per_second:.1f}")
    if report.wrong:
        print(f"wrong ({len(report.wrong)}):")
        for name, expected, got in report.wrong:
            print(f"  {name}: expected {clf.manifest.labels[expected]['label']}, got {got}")
