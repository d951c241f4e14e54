"""A running service, from anywhere: `imgrec submit` images to its URL; `imgrec status`
of every part and `imgrec gc` of old data, from its settings (the store and the queue)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from imgrec.cli.options import ApiKey, CsvOut, Paths
from imgrec.cli.progress import err, progress_bar

console = Console()


GIVE_UP_EXIT, INTERRUPTED_EXIT = 3, 130  # and 1 when an image failed, 2 for a usage or key problem


def submit(
    ctx: typer.Context,
    paths: Paths,
    url: Annotated[str, typer.Option(help="The service, e.g. http://imgrec.internal:8000")] = "http://127.0.0.1:8000",
    csv_out: CsvOut = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON to this file")] = None,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once")] = 4,
    api_key: ApiKey = None,
    give_up_after: Annotated[float, typer.Option(
        help="Seconds to keep retrying a call the service does not answer (unreachable, 429, 503) before stopping")
    ] = 300.0,  # imgrec.client.submit.GIVE_UP_AFTER (not imported here: `imgrec status` needs no httpx)
    verbose: Annotated[bool, typer.Option("--verbose", help="List the files skipped for not being images")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an error, not one line")] = False,
) -> None:
    """Send images to a running service; prints name:label lines, or writes --csv/--json.
    Stopped early (Ctrl-C, the service out of reach), it writes what was answered; run
    the same command again and it sends only what is missing."""
    from imgrec.client.submit import submit as run

    def trouble(why: str | None) -> None:
        _say(f"{why}; retrying for up to {give_up_after:g} s (--give-up-after)" if why
             else "the service answers again; carrying on")

    try:
        with progress_bar("classifying") as bar:
            task = bar.add_task("", total=None, rate=0.0, failed=0)
            report = run(
                [str(p) for p in paths], url, api_key=api_key, concurrency=concurrency, csv_out=csv_out,
                json_out=json_out, give_up_after=give_up_after, on_trouble=trouble,
                progress=lambda t: bar.update(task, total=t.total, completed=t.done, failed=t.failed, rate=t.rate()),
            )
    except Exception as exc:  # before anything was sent (no images, an unreadable file): one line
        if debug:
            raise
        _one_line(exc, 2)
    if report.stopped is not None and debug and not isinstance(report.stopped, KeyboardInterrupt):
        raise report.stopped
    _tell(report, verbose, printed=not (csv_out or json_out), written=[p for p in (csv_out, json_out) if p])


def _tell(report, verbose: bool, printed: bool, written: list[Path]) -> NoReturn:
    """The results and what the run did, for a person; then the exit status."""
    if printed:
        for r in report.rows:
            name = Path(r["filename"]).stem
            print(f"{name}:{r['label']}" if not r.get("error") else f"{name}: error: {r['error']}")
    if report.skipped:
        listed = "" if verbose else "; --verbose lists them"
        _say(f"skipped {len(report.skipped)} files (not images by their extension){listed}")
        for f in report.skipped if verbose else ():
            _say(f"  skipped: {f}")
    t = report.tally
    state = f"; state: {report.state}" if report.state.exists() else ""
    _say(f"{len(report.rows) - len(report.failed)} classified, {len(report.failed)} failed, in {report.seconds:.1f} s "
         f"({t.this_run} sent and answered in this run, {t.rate():.1f} images/s{state})")
    if report.stopped is None:
        raise typer.Exit(1 if report.failed else 0)
    where = f" (written to {', '.join(map(str, written))})" if written else " (printed above)" if report.rows else ""
    resume = f"{len(report.rows)} of {t.total} answered{where}; run the same command again to send only what is missing"
    if isinstance(report.stopped, KeyboardInterrupt):
        _say(f"interrupted: {resume}")
        raise typer.Exit(INTERRUPTED_EXIT)
    _say_why(report.stopped)
    _say(f"stopped: {resume}")
    raise typer.Exit(_stopped_status(report.stopped))


def _say(line: str) -> None:
    """One line on stderr as it is: never wrapped, no markup ([Errno 111] is text)."""
    err.print(line, markup=False, highlight=False, soft_wrap=True)


def _one_line(exc: BaseException, status: int) -> NoReturn:
    _say_why(exc)
    raise typer.Exit(status)


def _say_why(exc: BaseException) -> None:
    _say(f"imgrec submit: {_why(exc)}")


def _why(exc: BaseException) -> str:
    from imgrec.client import ServiceError
    from imgrec.errors import ImgrecError

    if isinstance(exc, ServiceError) and exc.status == 401:
        mixed_up = " (IMGREC_API_KEYS is the service's list of keys, not the client's)" if "IMGREC_API_KEYS" in os.environ else ""
        return f"the service wants an API key ({exc.message}): give it with --api-key or IMGREC_CLIENT_KEY{mixed_up}"
    if isinstance(exc, ImgrecError | OSError):
        return str(exc)
    return f"{type(exc).__name__}: {exc} (--debug shows where)"


def _stopped_status(exc: BaseException) -> int:
    """2 when the service refused the run for good (a key, a bad request), else 3."""
    from imgrec.client import ServiceError

    return 2 if isinstance(exc, ServiceError) else GIVE_UP_EXIT


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
    from imgrec import jobs
    from imgrec.queues import REQUEST_QUEUE, request_queue
    from imgrec.queues.sqlite import job_ids, salvage
    from imgrec.stores import open_store

    settings = ctx.obj
    saved, lost, kept = salvage(_sqlite_only(settings))
    console.print(f"saved {saved} messages into a new {settings.queue_url}; {lost} could not be read; the damaged file "
                  f"is kept as {kept}.")
    # The queue was its jobs' only record: the inputs in the store tell which it lost.
    queue = request_queue(settings)
    try:
        resent = jobs.resend_unqueued(
            open_store(settings.store_url, settings.backend_timeout), queue, job_ids(settings.queue_url, REQUEST_QUEUE)
        )
    finally:
        queue.close()
    console.print(f"sent again {resent} accepted jobs whose messages were lost (found by their inputs in the store).")
