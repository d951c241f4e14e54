"""`imgrec model ...`: build a built-in model here or add one of your own from its folder, look at
it, and move it through the store (`push` once anywhere, `pull` on each host that serves;
workers pull by themselves, and pick up a new version as it is pushed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from imgrec.cli.options import Variant

console = Console(soft_wrap=True)  # a line per version, however narrow the terminal


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
    data["labels"] = f"{len(data['labels'])} labels"
    console.print_json(json.dumps(data))


Tag = Annotated[str, typer.Option(help="A name for this version, shown beside its hash")]


def push(ctx: typer.Context, tag: Tag = "") -> None:
    """Make the model of this host (IMGREC_MODEL's folder) the version served under its name, for
    every host to pull; running workers switch to it between batches."""
    from imgrec.engine.registry import file_key
    from imgrec.engine.registry import push as push_model
    from imgrec.stores import open_store

    manifest, pushed = push_model(open_store(ctx.obj.store_url), ctx.obj.model_path, tag=tag)
    verb = "pushed" if pushed else "already in the store"
    console.print(f"{manifest.name} {verb}: {ctx.obj.store_url} {file_key(manifest)} sha256={manifest.sha256}")


def add(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="The folder: model.onnx, labels.txt, imgrec-model.toml (optional)")],
    name: Annotated[str, typer.Option(help="The name it is served under (IMGREC_MODEL=NAME)")],
    tag: Tag = "",
    push: Annotated[bool, typer.Option(help="Push it to the store as the version served")] = True,
    eval_dir: Annotated[Path | None, typer.Option(
        "--eval", help="Record top-1/top-5 on DIR/labels.csv (filename,class_index: the index in labels.txt)")] = None,
) -> None:
    """Check a model folder (the graph loads, takes what the manifest says, runs once, gives one
    score per label), install it in the data directory as NAME and push it to the store."""
    from imgrec.engine import folder as model_folder
    from imgrec.engine import registry
    from imgrec.stores import open_store

    settings = ctx.obj.with_overrides(model=name)
    # Its own folder of the data directory, whatever IMGREC_MODEL_DIR names (another model's, maybe)
    installed = settings.data_dir / f"model-{name}"
    try:
        manifest = model_folder.add(folder, name, installed, tag=tag)
    except model_folder.ModelRefused as exc:
        console.print(f"refused: {exc}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    if eval_dir is not None:
        from imgrec.engine.model import with_accuracy

        manifest = with_accuracy(installed, manifest, eval_dir)
        a = manifest.accuracy
        console.print(f"top-1 {a['top1']:.2%}, top-5 {a['top5']:.2%} on {a['images']} images of {a['on']}")
    labels = ", ".join(c["label"] for c in manifest.labels[:5]) + (", ..." if len(manifest.labels) > 5 else "")
    where = installed
    console.print(f"{name}@{manifest.version} added: {where}, {len(manifest.labels)} labels ({labels})", markup=False)
    if push:
        _, pushed = registry.push(open_store(settings.store_url), installed, tag=tag)
        verb = "pushed" if pushed else "already in the store"
        console.print(f"{name}@{manifest.version} {verb}; serve it with: IMGREC_MODEL={name} imgrec up")


def list_models(ctx: typer.Context) -> None:
    """The models in the store: each version (the served one marked *), its tag, size, when it was
    pushed and its top-1 where measured."""
    import time

    from imgrec.engine import registry
    from imgrec.stores import open_store

    store = open_store(ctx.obj.store_url)
    found = registry.names(store)
    if not found:
        console.print(f"no model in the store {ctx.obj.store_url}; add one: imgrec model add DIR --name NAME")
        return
    console.print(f"{'':2}{'name':<28}{'version':<14}{'tag':<12}{'MB':>8}  {'pushed':<17}{'top-1':>7}", markup=False)
    for name in found:
        current = registry.served(store, name)
        for v in reversed(registry.versions(store, name)):  # the newest first
            try:
                m = registry.version_manifest(store, name, v.sha256)
                top1 = f"{m.accuracy['top1']:.1%}" if m.accuracy.get("top1") is not None else "-"
            except Exception:  # noqa: BLE001 - one unreadable version spoils no listing
                top1 = "?"
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(v.pushed_at)) if v.pushed_at else "-"
            mark = "*" if current is not None and v.sha256 == current.sha256 else " "
            console.print(
                f"{mark} {name:<28}{v.sha256[:12]:<14}{v.tag or '-':<12}{v.size / 1e6:>8.1f}  {when:<17}{top1:>7}", markup=False
            )


def rollback(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The model's name (IMGREC_MODEL)")]) -> None:
    """Serve the version of NAME pushed before the one served now (again: further back); running
    workers switch back between batches. `imgrec model push` serves a newer one again."""
    from imgrec.engine import registry
    from imgrec.errors import ModelMissing
    from imgrec.stores import open_store

    try:
        manifest = registry.rollback(open_store(ctx.obj.store_url), registry.store_name(name))
    except ModelMissing as exc:
        console.print(f"cannot roll back: {exc}", markup=False)
        raise typer.Exit(1) from None
    console.print(f"{manifest.name} rolled back to {manifest.version}{f' ({manifest.tag})' if manifest.tag else ''}")


def pull(ctx: typer.Context) -> None:
    """Fetch the model pushed to the store (IMGREC_MODEL's variant) into IMGREC_MODEL_DIR,
    checking its sha256.

    Workers and autoscalers do this by themselves when they have none."""
    from imgrec.engine.registry import pull as pull_model
    from imgrec.stores import open_store

    manifest, pulled = pull_model(open_store(ctx.obj.store_url), ctx.obj.model_path, ctx.obj.model)
    verb = "pulled" if pulled else "already here"
    console.print(f"{manifest.name} {verb}: {ctx.obj.model_path / manifest.file} sha256={manifest.sha256}")
