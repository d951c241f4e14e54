"""`imgrec submit` (to a running service) and `imgrec classify` (here, with the model),
registered by `imgrec.cli`; they follow its rule: parse, then delegate."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from imgrec.settings import Settings

err = Console(stderr=True)
Paths = Annotated[list[Path], typer.Argument(exists=True, help="Image files and folders (searched recursively)")]
CsvOut = Annotated[Path | None, typer.Option("--csv", help="Write one row per image to this CSV file")]


def progress_bar(what: str) -> Progress:
    """Done/total, images/s, failures and the time left, on a terminal only."""
    return Progress(
        TextColumn(f"{what} "), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f} images/s"), TextColumn("[red]{task.fields[failed]} failed"),
        TimeRemainingColumn(), console=err, transient=False, disable=not err.is_terminal,
    )


def submit(
    ctx: typer.Context,
    paths: Paths,
    url: Annotated[str, typer.Option(help="The service, e.g. http://imgrec.internal:8000")] = "http://127.0.0.1:8000",
    csv_out: CsvOut = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON to this file")] = None,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once")] = 4,
    api_key: Annotated[str | None, typer.Option(help="The service's API key, if it needs one [IMGREC_API_KEY]",
                                                envvar="IMGREC_API_KEY")] = None,
) -> None:
    """Send images to a running service; prints name:label lines, or writes --csv/--json.
    Run it again after an interruption: it sends only what is missing."""
    from imgrec.client.submit import submit as run

    with progress_bar("classifying") as bar:
        task = bar.add_task("", total=None, rate=0.0, failed=0)
        first: list[tuple[float, int]] = []  # when this run's first count came, and what it was

        def progress(done: int, failed: int, total: int | None = None) -> None:
            first[:] = first or [(time.monotonic(), done)]
            rate = (done - first[0][1]) / max(time.monotonic() - first[0][0], 1e-6)
            bar.update(task, completed=done, failed=failed, rate=rate, **({"total": total} if total else {}))

        table, state, seconds = run(
            [str(p) for p in paths], url, api_key=api_key, concurrency=concurrency, csv_out=csv_out,
            json_out=json_out, progress=progress,
        )
    failed = [r for r in table if r.get("error")]
    if not (csv_out or json_out):
        for r in table:
            name = Path(r["filename"]).stem
            print(f"{name}:{r['label']}" if not r.get("error") else f"{name}: error: {r['error']}")
    err.print(f"{len(table) - len(failed)} classified, {len(failed)} failed, in {seconds:.1f} s "
              f"(state: {state}; run again to send only what is missing)")
    raise typer.Exit(1 if failed else 0)


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
