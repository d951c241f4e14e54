"""The service's own commands, as a host runs them: `up` (everything), or each part
alone (`web`, `worker`, `autoscaler`), and `init` and `config`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from imgrec.cli.options import Host, MaxWorkers, MinWorkers, OldScaleInDelay, Port, ScaleInDelay

console = Console()
err = Console(stderr=True)


def _scale_in(delay: float | None, old: float | None) -> float | None:
    if old is not None:
        err.print("note: --idle-timeout is now --scale-in-delay here (it still works)")
    return delay if delay is not None else old


def up(
    ctx: typer.Context, host: Host = None, port: Port = None, min_workers: MinWorkers = None,
    max_workers: MaxWorkers = None, scale_in_delay: ScaleInDelay = None, idle_timeout: OldScaleInDelay = None,
) -> None:
    """Run the whole service: web tier + autoscaler (which runs the workers)."""
    from imgrec.supervisor import run_up

    settings = ctx.obj.with_overrides(
        host=host, port=port, min_workers=min_workers, max_workers=max_workers,
        scale_in_delay=_scale_in(scale_in_delay, idle_timeout),
    )
    raise typer.Exit(run_up(settings))


def web(ctx: typer.Context, host: Host = None, port: Port = None) -> None:
    """Run the web tier alone."""
    from imgrec.web import run_web

    run_web(ctx.obj.with_overrides(host=host, port=port))


def worker(
    ctx: typer.Context,
    idle_timeout: Annotated[
        float | None, typer.Option(help="Exit after this many seconds without work [IMGREC_WORKER_IDLE_TIMEOUT, default 30]")
    ] = None,
    ready_file: Annotated[str | None, typer.Option(help="Write this file once ready [IMGREC_READY_FILE]")] = None,
) -> None:
    """Run one worker process (it pulls the model from the store if it has none)."""
    from imgrec.worker import run_worker

    run_worker(ctx.obj.with_overrides(worker_idle_timeout=idle_timeout, ready_file=ready_file))


def autoscaler(
    ctx: typer.Context, min_workers: MinWorkers = None, max_workers: MaxWorkers = None,
    scale_in_delay: ScaleInDelay = None, idle_timeout: OldScaleInDelay = None,
) -> None:
    """Run the autoscaler alone; it starts and stops workers and does the housekeeping."""
    from imgrec.autoscaler.main import run_autoscaler

    run_autoscaler(ctx.obj.with_overrides(
        min_workers=min_workers, max_workers=max_workers, scale_in_delay=_scale_in(scale_in_delay, idle_timeout),
    ))


def init(ctx: typer.Context) -> None:
    """Create the bucket and queues the configured adapters need (idempotent)."""
    from imgrec.supervisor import init_backends

    for line in init_backends(ctx.obj):
        console.print(line)


def config(
    ctx: typer.Context,
    markdown: Annotated[bool, typer.Option("--markdown", help="The table of every setting and its default")] = False,
) -> None:
    """The settings this process sees (from IMGREC_* variables), or their documentation."""
    from imgrec.settings import markdown_table

    if markdown:
        print(markdown_table())
        return
    settings = ctx.obj
    for name, value in settings.model_dump().items():
        shown = "(set)" if name == "api_keys" and value else value
        print(f"IMGREC_{name.upper()}={shown}")
    print(f"# store: {settings.store_url}\n# queue: {settings.queue_url}\n# model: {settings.model_path}")
