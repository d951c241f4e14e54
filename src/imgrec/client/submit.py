"""`imgrec submit`: send files and folders to a running service and collect one row per
image, resumably.

The files are split into requests within the service's limits (`/api/v1/limits`),
sent to the async jobs API a few at a time, and each batch is polled until done.
A state file in the user's state directory (`state_dir`), one per command (its URL,
paths and output files), records every batch sent and every result received, so a
run that was stopped (Ctrl-C, kill -9, a service out of reach for longer than it
waits) sends only what is missing when the same command runs again.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from imgrec.client import AsyncClient, TroubleReport
from imgrec.client.files import chunks, find_images
from imgrec.errors import BadInput, ImgrecError
from imgrec.messages import Output, csv_safe

COLUMNS = Output.CSV_COLUMNS  # the service's own order (a batch's ?format=csv)
GIVE_UP_AFTER = 300.0  # seconds `imgrec submit` retries a call before it stops (--give-up-after)


def state_dir() -> Path:
    """Where runs keep their state: $XDG_STATE_HOME/imgrec/submit (~/.local/state/imgrec/submit)."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "imgrec" / "submit"


def state_path(url: str, paths: list[str], csv_out: Path | None, json_out: Path | None, model: str | None = None) -> Path:
    """One state file per command: the same URL, paths, output files (and model) find it again."""
    named = [url, *(str(Path(p).resolve()) for p in paths), f"csv={_resolved(csv_out)}", f"json={_resolved(json_out)}"]
    if model:  # another model's answers are another run's
        named.append(f"model={model}")
    return state_dir() / f"{hashlib.sha256(chr(0).join(named).encode()).hexdigest()[:16]}.json"


def _resolved(path: Path | None) -> str:
    return str(path.resolve()) if path else ""


@dataclass
class State:
    """What a run has done, kept in a JSON file: per file, its batch and its result; and
    the command it belongs to, for a person who looks."""

    path: Path
    url: str
    files: dict[str, dict] = field(default_factory=dict)
    command: dict = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path, url: str, command: dict | None = None) -> State:
        if path.is_file():
            data = json.loads(path.read_text())
            if data.get("url") == url:
                return cls(path, url, data.get("files", {}), command or {})
        return cls(path, url, command=command or {})

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"url": self.url, "command": self.command, "files": self.files}))
        os.replace(tmp, self.path)

    def done(self, key: str) -> bool:
        return "result" in self.files.get(key, {})


@dataclass
class Tally:
    """Where a run is: files answered of `total` (an earlier run's answers included) and
    failures; and this run's own: the files it sent that were answered, and their speed.
    A resumed run's speed never counts what an earlier run sent."""

    total: int
    done: int = 0
    failed: int = 0
    this_run: int = 0  # files this run sent, answered
    started: float = field(default_factory=time.monotonic)

    def rate(self, now: float | None = None) -> float:
        """This run's own answers per second since it began."""
        seconds = (time.monotonic() if now is None else now) - self.started
        return self.this_run / seconds if seconds > 0 else 0.0


Progress = Callable[[Tally], None]


class Run:
    """One `imgrec submit`: `progress(tally)` is called as results arrive."""

    def __init__(self, state: State, files: list[Path], concurrency: int, progress: Progress) -> None:
        self.state, self.files = state, files
        self.gate = asyncio.Semaphore(max(1, concurrency))
        self.progress = progress
        self.tally = Tally(len(files))
        self.sent: set[str] = set()  # the files this run sent

    def _count(self) -> None:
        results = [self.state.files[str(f)]["result"] for f in self.files if self.state.done(str(f))]
        self.tally.done, self.tally.failed = len(results), sum(1 for r in results if r.get("error"))
        self.tally.this_run = sum(1 for f in self.sent if self.state.done(f))
        self.progress(self.tally)

    async def go(self, client: AsyncClient) -> None:
        self.client = client
        limits = await self.client.limits()
        # Batches sent by an earlier run: each file at its place in its batch.
        fresh: list[Path] = []
        sent: dict[str, list[tuple[int, Path]]] = {}
        for f in self.files:
            entry = self.state.files.get(str(f), {})
            if "batch_id" in entry:
                sent.setdefault(entry["batch_id"], []).append((entry["index"], f))
            elif "result" not in entry:
                fresh.append(f)
        waiting = {
            batch_id: [f for _, f in sorted(members)] for batch_id, members in sent.items()
            if any(not self.state.done(str(f)) for _, f in members)
        }
        groups, too_large = chunks(fresh, limits["max_files_per_request"], limits["max_upload_bytes"])
        for f in too_large:
            self._record(f, {"filename": f.name, "error": f"over the upload limit of {limits['max_upload_bytes']:,} bytes"})
        self._count()
        await asyncio.gather(
            *(self._collect(batch_id, files) for batch_id, files in waiting.items()),
            *(self._send(group) for group in groups),
        )

    async def _send(self, group: list[Path]) -> None:
        async with self.gate:
            self.sent.update(map(str, group))
            try:
                batch = await self.client.submit(group)
            except BadInput as exc:  # the service refused every file of this request
                if exc.status in (401, 403):  # ... for a key, not for the files: the run stops, and says why
                    raise
                by_name = {e["filename"]: e["error"] for e in exc.extra.get("files", [])}
                for f in group:
                    self._record(f, {"filename": f.name, "error": by_name.get(f.name, exc.message)})
                self._count()
                return
            for i, (f, job) in enumerate(zip(group, batch["jobs"], strict=True)):
                self.state.files[str(f)] = {"batch_id": batch["batch_id"], "index": i, "job_id": job.get("job_id")}
            self.state.save()
        await self._collect(batch["batch_id"], group)

    async def _collect(self, batch_id: str, group: list[Path]) -> None:
        every = 0.2
        while (view := await self.client.batch(batch_id))["status"] != "done":
            for f, row in zip(group, view["results"], strict=False):
                if row.get("label") or row.get("error"):
                    self._record(f, row, save=False)
            self._count()
            await asyncio.sleep(every)
            every = min(2.0, every * 1.3)
        for f, row in zip(group, view["results"], strict=True):
            self._record(f, row, save=False)
        self.state.save()
        self._count()

    def _record(self, f: Path, row: dict, save: bool = True) -> None:
        keep = {k: row[k] for k in (*COLUMNS, "top") if k in row}
        self.state.files.setdefault(str(f), {})["result"] = keep
        if save:
            self.state.save()


def rows(state: State, files: list[Path]) -> list[dict]:
    """One row per file answered, in the order given: the file's own path as its name."""
    return [{**state.files[str(f)]["result"], "filename": str(f)} for f in files if state.done(str(f))]


class RowWriter:
    """Rows to a CSV file and/or a JSON file as they come (nothing held in memory); false
    when it writes to neither."""

    def __init__(self, csv_path: Path | None, json_path: Path | None) -> None:
        self._csv = csv_path.open("w", newline="") if csv_path else None
        self._json = json_path.open("w") if json_path else None
        self._writer = csv.DictWriter(self._csv, COLUMNS, extrasaction="ignore") if self._csv else None
        if self._writer:
            self._writer.writeheader()
        self._first = True

    def __bool__(self) -> bool:
        return bool(self._csv or self._json)

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc) -> None:
        if self._json:
            self._json.write("\n]\n" if not self._first else "[]\n")
            self._json.close()
        if self._csv:
            self._csv.close()

    def write(self, row: dict) -> None:
        row = {k: row[k] for k in (*COLUMNS, "top") if k in row}
        if self._writer:
            self._writer.writerow({k: csv_safe(v) for k, v in row.items()})
        if self._json:
            self._json.write(("[\n" if self._first else ",\n") + json.dumps(row))
            self._first = False


@dataclass
class Report:
    """What a run did: the rows of every file answered (earlier runs' too), in the order
    given; and, when it ended before all were, why (`stopped`): Ctrl-C (KeyboardInterrupt),
    a call given up on (GaveUp), or the service refusing one for good (e.g. a 401)."""

    rows: list[dict]
    tally: Tally
    skipped: list[Path]  # files under the folders named, left out for their extension
    state: Path
    seconds: float
    stopped: BaseException | None = None

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r.get("error")]


def submit(
    paths: list[str], url: str, *, api_key: str | None, concurrency: int, csv_out: Path | None,
    json_out: Path | None, progress: Progress, give_up_after: float = GIVE_UP_AFTER,
    on_trouble: TroubleReport | None = None, model: str | None = None,
) -> Report:
    """Send what is missing and wait for it. Stopped early, it still writes the rows of
    what was answered, and its state, so that the same command sends only the rest."""
    files, skipped = find_images(paths)
    if not files:
        left_out = f" ({len(skipped)} other files, not images by their extension)" if skipped else ""
        raise BadInput(f"no image files in {', '.join(paths)}{left_out}")
    command = {"paths": [str(Path(p).resolve()) for p in paths], "csv": _resolved(csv_out), "json": _resolved(json_out)}
    if model:
        command["model"] = model
    state = State.open(state_path(url, paths, csv_out, json_out, model), url, command)
    run = Run(state, files, concurrency, progress)

    async def main() -> None:
        async with AsyncClient(url, api_key, give_up_after=give_up_after, on_trouble=on_trouble, model=model) as client:
            await run.go(client)

    stopped: BaseException | None = None
    try:
        asyncio.run(main())
    except (KeyboardInterrupt, ImgrecError, OSError) as exc:  # GaveUp, ServiceError, a file that cannot be read
        stopped = exc
    if state.files:
        state.save()
    table = rows(state, files)
    with RowWriter(csv_out, json_out) as out:
        for row in table:
            out.write(row)
    return Report(table, run.tally, skipped, state.path, time.monotonic() - run.tally.started, stopped)

