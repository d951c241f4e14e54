"""A running service, from anywhere: `imgrec submit` images to its URL; `imgrec status`
of every part and `imgrec gc` of old data, from its settings (the store and the queue)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from imgrec.cli.options import CsvOut, Paths
from imgrec.cli.progress import err, progress_bar

console = Console()


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
            bar.update(task, total=total, completed=done, failed=failed, rate=rate)

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
    from rich.console import Group
    from rich.live import Live
    from rich.text import Text

    def redrawn() -> Group | Text:
        try:
            return render(gather(ctx.obj))
        except ImgrecError as exc:  # an outage is something to watch too, not the end of it
            return Text(f"cannot read the deployment now: {exc}", style="bold red")

    with Live(redrawn(), console=console, auto_refresh=False) as live:
        try:
            while True:
                time.sleep(every)
                live.update(redrawn(), refresh=True)
        except KeyboardInterrupt:
            pass


def health(
    ctx: typer.Context,
    role: Annotated[
        str | None,
        typer.Argument(help="web, worker or autoscaler; without it, the role of this container's imgrec process"),
    ] = None,
) -> None:
    """Whether this container's (or host's) imgrec process of a role does its work: exit 0
    or 1, with one line saying why. A container's health check, a Kubernetes probe."""
    from imgrec.errors import ConfigError
    from imgrec.ops.health import ROLES, check

    if role is not None and role not in ROLES:
        raise ConfigError(f"no health check for {role!r}: it is one of {', '.join(ROLES)}, or none")
    healthy, why = check(ctx.obj, role or "")
    (console if healthy else err).print(why, markup=False, soft_wrap=True)
    raise typer.Exit(0 if healthy else 1)


def gc(
    ctx: typer.Context,
    retention: Annotated[
        str | None, typer.Option(help="Delete what is older than this: 7d, 12h, 30m, seconds [IMGREC_RETENTION, default 7d]")
    ] = None,
) -> None:
    """Delete inputs, results and records older than the retention time, now (the
    autoscaler does it every hour)."""
    import os
    import socket

    from imgrec.jobs import sweep_expired
    from imgrec.presence import StoreClock
    from imgrec.stores import open_store

    settings = ctx.obj.with_overrides(retention=retention)
    if settings.retention <= 0:
        console.print("retention is 0: everything is kept for ever, nothing to do")
        return
    store = open_store(settings.store_url)
    clock = StoreClock(store, f"gc-{socket.gethostname()}-{os.getpid()}")  # ages by the store's clock
    try:
        deleted = sweep_expired(store, settings.retention, clock.now())
    finally:
        clock.forget()
    for prefix, n in deleted.items():
        console.print(f"deleted {n} objects under {prefix}")
    console.print(f"done: {sum(deleted.values())} objects older than {settings.retention:g} s deleted")


def _sqlite_only(settings) -> str:
    from imgrec.errors import ConfigError

    if not settings.queue_url.startswith("sqlite://"):
        raise ConfigError(
            f"{settings.queue_url.split(':', 1)[0]} keeps its queue on its server: check it with the server's own tools"
        )
    return settings.queue_url


def queue_check(ctx: typer.Context) -> None:
    """Check the SQLite queue's file for damage (run it any time: it only reads)."""
    import sqlite3

    from imgrec.queues.sqlite import _path_from_url, problems

    path = _path_from_url(_sqlite_only(ctx.obj))
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            found = problems(db, most=100)
    except sqlite3.DatabaseError as exc:
        found = [str(exc)]
    if not found:
        console.print(f"{path}: no damage found")
        return
    console.print(f"{path} is damaged:", *found, sep="\n  ")
    console.print("stop imgrec, then run: imgrec queue salvage")
    raise typer.Exit(1)


def queue_salvage(ctx: typer.Context) -> None:
    """Keep a damaged SQLite queue file beside it and copy what it can read into a new one
    (run it with imgrec stopped)."""
    from imgrec.queues.sqlite import salvage

    saved, lost, kept = salvage(_sqlite_only(ctx.obj))
    console.print(f"saved {saved} messages into a new {ctx.obj.queue_url}; {lost} could not be read; the damaged file "
                  f"is kept as {kept}. Accepted jobs whose messages were lost are sent again from their pending "
                  "records by the autoscaler's housekeeping once imgrec runs.")
