"""The operator's commands (`imgrec model push|pull`, `imgrec status`), registered by
`imgrec.cli`; as there, they parse, build on the settings of the callback, delegate."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.console import Console

console = Console()


def model_push(ctx: typer.Context) -> None:
    """Put the model of this host (IMGREC_MODEL_DIR) in the store, for every host to pull."""
    from imgrec.engine.registry import file_key, push
    from imgrec.stores import open_store

    manifest, pushed = push(open_store(ctx.obj.store_url), ctx.obj.model_path)
    verb = "pushed" if pushed else "already in the store"
    console.print(f"{manifest.name} {verb}: {ctx.obj.store_url} {file_key(manifest)} sha256={manifest.sha256}")


def model_pull(ctx: typer.Context) -> None:
    """Fetch the model pushed to the store (IMGREC_MODEL's variant) into IMGREC_MODEL_DIR,
    checking its sha256.

    Workers and autoscalers do this by themselves when they have none."""
    from imgrec.engine.registry import pull
    from imgrec.stores import open_store

    manifest, pulled = pull(open_store(ctx.obj.store_url), ctx.obj.model_path, ctx.obj.model)
    verb = "pulled" if pulled else "already here"
    console.print(f"{manifest.name} {verb}: {ctx.obj.model_path / manifest.file} sha256={manifest.sha256}")


def status(
    ctx: typer.Context,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh until Ctrl-C")] = False,
    every: Annotated[float, typer.Option(help="Seconds between refreshes with --watch")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="The same as JSON, for scripts")] = False,
) -> None:
    """One view of the deployment: web replicas, workers, autoscalers, queue, model.

    From the queue and the heartbeats in the store: any host with the settings sees it."""
    from imgrec.errors import ConfigError, ImgrecError, QueueMissing
    from imgrec.ops.status import gather, render

    if not watch:
        try:
            view = gather(ctx.obj)
        except QueueMissing as exc:
            raise ConfigError(f"{exc}: is anything running with these settings? (imgrec init creates it)") from None
        except ImgrecError as exc:
            raise ConfigError(f"cannot read the deployment: {exc}") from None
        if as_json:
            print(json.dumps(view, indent=1))
        else:
            console.print(render(view))
        return
    from rich.live import Live
    from rich.text import Text

    def view():
        try:
            return render(gather(ctx.obj))
        except ImgrecError as exc:  # an outage is something to watch too, not the end of it
            return Text(f"cannot read the deployment now: {exc}", style="bold red")

    with Live(view(), console=console, auto_refresh=False) as live:
        try:
            while True:
                time.sleep(every)
                live.update(view(), refresh=True)
        except KeyboardInterrupt:
            pass
