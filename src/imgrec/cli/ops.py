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


def gc(
    ctx: typer.Context,
    retention: Annotated[
        str | None, typer.Option(help="Delete what is older than this: 7d, 12h, 30m, seconds [IMGREC_RETENTION, default 7d]")
    ] = None,
) -> None:
    """Delete inputs, results and records older than the retention time, now (the
    autoscaler does it every hour)."""
    from imgrec.jobs import sweep_expired
    from imgrec.stores import open_store

    settings = ctx.obj.with_overrides(retention=retention)
    if settings.retention <= 0:
        console.print("retention is 0: everything is kept for ever, nothing to do")
        return
    deleted = sweep_expired(open_store(settings.store_url), settings.retention)
    for prefix, n in deleted.items():
        console.print(f"deleted {n} objects under {prefix}")
    console.print(f"done: {sum(deleted.values())} objects older than {settings.retention:g} s deleted")
