"""`imgrec model ...`: build the model here, look at it, and move it through the store
(`push` once anywhere, `pull` on each host that serves; workers pull by themselves)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from imgrec.cli.options import Variant

console = Console()


def build(
    ctx: typer.Context,
    variant: Variant = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if present")] = False,
    calibration: Annotated[int, typer.Option(help="Images an int8 variant is calibrated on [default 256]")] = 0,
    eval_dir: Annotated[Path | None, typer.Option("--eval", help="Record top-1/top-5 on DIR/labels.csv in the manifest")] = None,
) -> None:
    """Export a model variant to ONNX in the data directory (idempotent)."""
    from imgrec.engine.model import build as build_model

    settings = ctx.obj.with_overrides(model=variant)
    path = settings.model_path
    manifest, built = build_model(path, force=force, variant=settings.model, calibration=calibration, eval_dir=eval_dir)
    verb = "built" if built else "already built"
    console.print(f"{manifest.name} {verb}: {path / manifest.file} sha256={manifest.sha256}")
    if manifest.accuracy:
        console.print(
            f"top-1 {manifest.accuracy['top1']:.2%}, top-5 {manifest.accuracy['top5']:.2%} "
            f"on {manifest.accuracy['images']} images of {manifest.accuracy['on']}"
        )


def info(ctx: typer.Context) -> None:
    """Print the model manifest (without the label list)."""
    from dataclasses import asdict

    from imgrec.engine.model import load_manifest

    data = asdict(load_manifest(ctx.obj.model_path, verify=True))
    data["labels"] = f"{len(data['labels'])} ImageNet classes"
    console.print_json(json.dumps(data))


def push(ctx: typer.Context) -> None:
    """Put the model of this host (IMGREC_MODEL_DIR) in the store, for every host to pull."""
    from imgrec.engine.registry import file_key
    from imgrec.engine.registry import push as push_model
    from imgrec.stores import open_store

    manifest, pushed = push_model(open_store(ctx.obj.store_url), ctx.obj.model_path)
    verb = "pushed" if pushed else "already in the store"
    console.print(f"{manifest.name} {verb}: {ctx.obj.store_url} {file_key(manifest)} sha256={manifest.sha256}")


def pull(ctx: typer.Context) -> None:
    """Fetch the model pushed to the store (IMGREC_MODEL's variant) into IMGREC_MODEL_DIR,
    checking its sha256.

    Workers and autoscalers do this by themselves when they have none."""
    from imgrec.engine.registry import pull as pull_model
    from imgrec.stores import open_store

    manifest, pulled = pull_model(open_store(ctx.obj.store_url), ctx.obj.model_path, ctx.obj.model)
    verb = "pulled" if pulled else "already here"
    console.print(f"{manifest.name} {verb}: {ctx.obj.model_path / manifest.file} sha256={manifest.sha256}")
