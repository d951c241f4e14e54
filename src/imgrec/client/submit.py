"""`imgrec submit`: send files and folders to a running service and collect one row per
image, resumably.

The files are split into requests within the service's limits (`/api/v1/limits`),
sent to the async jobs API a few at a time, and each batch is polled until done.
A state file beside the output records every batch sent and every result received,
so a run that was interrupted sends only what is missing when it runs again.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from imgrec.client import AsyncClient
from imgrec.client.files import chunks, image_files
from imgrec.errors import BadInput
from imgrec.messages import csv_safe

COLUMNS = ("filename", "label", "class_index", "score", "error", "wnid", "job_id")


@dataclass
class State:
    """What a run has done, kept in a JSON file: per file, its batch and its result."""

    path: Path
    url: str
    files: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path, url: str) -> State:
        if path.is_file():
            data = json.loads(path.read_text())
            if data.get("url") == url:
                return cls(path, url, data.get("files", {}))
        return cls(path, url)

    def save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"url": self.url, "files": self.files}))
        os.replace(tmp, self.path)

    def done(self, key: str) -> bool:
        return "result" in self.files.get(key, {})


def state_path(csv_out: Path | None, json_out: Path | None, url: str, files: list[Path]) -> Path:
    beside = csv_out or json_out
    if beside:
        return beside.with_name(beside.name + ".imgrec-state.json")
    digest = hashlib.sha1("\0".join([url, *map(str, files)]).encode()).hexdigest()[:12]
    return Path(f".imgrec-submit-{digest}.json")


class Run:
    """One `imgrec submit`: `progress(done, failed)` is called as results arrive."""

    def __init__(self, client: AsyncClient, state: State, files: list[Path], concurrency: int, progress) -> None:
        self.client, self.state, self.files = client, state, files
        self.gate = asyncio.Semaphore(max(1, concurrency))
        self.progress = progress

    def _count(self) -> None:
        results = [self.state.files[str(f)]["result"] for f in self.files if self.state.done(str(f))]
        self.progress(len(results), sum(1 for r in results if r.get("error")))

    async def go(self) -> None:
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
            try:
                batch = await self.client.submit(group)
            except BadInput as exc:  # the service refused every file of this request
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
    """One row per file, in the order given: the file's own path as its name."""
    return [{**state.files[str(f)]["result"], "filename": str(f)} for f in files]


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


def submit(
    paths: list[str], url: str, *, api_key: str | None, concurrency: int, csv_out: Path | None,
    json_out: Path | None, progress,
) -> tuple[list[dict], Path, float]:
    """Send what is missing and wait for it; (rows, state file, seconds taken)."""
    files = image_files(paths)
    if not files:
        raise BadInput(f"no image files in {', '.join(paths)}")
    state = State.open(state_path(csv_out, json_out, url, files), url)
    progress(0, 0, total=len(files))
    started = time.monotonic()

    async def main() -> None:
        async with AsyncClient(url, api_key) as client:
            await Run(client, state, files, concurrency, progress).go()

    asyncio.run(main())
    table = rows(state, files)
    with RowWriter(csv_out, json_out) as out:
        for row in table:
            out.write(row)
    return table, state.path, time.monotonic() - started
