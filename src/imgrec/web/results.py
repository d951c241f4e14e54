"""Reading results back from the store: a job's status, a batch's merged results, the
service's status. Plain blocking functions over the store and queue (call them off
the event loop)."""

from __future__ import annotations

import csv
import io
import json

from imgrec import presence
from imgrec.errors import NotFound
from imgrec.messages import batch_key, dumps, input_prefix, read_output, running_key
from imgrec.queue import Queue
from imgrec.store import ObjectStore
from imgrec.web.uploads import Upload

CSV_COLUMNS = ("filename", "job_id", "label", "class_index", "wnid", "score", "error")


def entry(job_id: str | None, up: Upload) -> dict:
    """A file of an upload: its job, or the reason it was refused."""
    e = {"job_id": job_id, "filename": up.filename}
    if up.error:
        e["error"] = up.error.message
    return e


def job_status(store: ObjectStore, job_id: str) -> dict | None:
    output = read_output(store, job_id)
    if output is not None:
        return {"job_id": job_id, "status": "failed" if output.failed else "done", "result": output.public()}
    if store.exists(running_key(job_id)):
        return {"job_id": job_id, "status": "running"}
    if next(iter(store.list(input_prefix(job_id))), None):
        return {"job_id": job_id, "status": "queued"}
    return None


def write_batch_manifest(store: ObjectStore, batch_id: str, entries: list[dict], created: float) -> None:
    manifest = {"batch_id": batch_id, "created": created, "jobs": entries}
    store.put(batch_key(batch_id), dumps(manifest), "application/json")


def write_batch_results(store: ObjectStore, batch_id: str, results: list[dict]) -> None:
    """The merged results file of a batch (as the original design's outputfile.txt)."""
    store.put(batch_key(batch_id, "results.json"), dumps({"batch_id": batch_id, "results": results}), "application/json")
    store.put(batch_key(batch_id, "results.csv"), to_csv(results).encode(), "text/csv")


def batch_view(store: ObjectStore, batch_id: str) -> dict | None:
    try:
        manifest = json.loads(store.get(batch_key(batch_id)))
    except NotFound:
        return None
    try:
        return {"status": "done", **json.loads(store.get(batch_key(batch_id, "results.json")))}
    except NotFound:
        pass
    results, done = [], 0
    for e in manifest["jobs"]:
        if e.get("error"):  # refused at upload
            done += 1
            results.append(e)
            continue
        state = job_status(store, e["job_id"]) or {"status": "queued"}
        if "result" in state:
            done += 1
            results.append(state["result"])
        else:
            results.append({"job_id": e["job_id"], "filename": e["filename"], "status": state["status"]})
    if done == len(manifest["jobs"]):
        write_batch_results(store, batch_id, results)  # merged once, then served as is
        return {"status": "done", "batch_id": batch_id, "results": results}
    return {"status": "running", "batch_id": batch_id, "done": done, "results": results}


def status_snapshot(queue: Queue, store: ObjectStore) -> dict:
    stats = queue.stats()
    workers = presence.read(store, "worker")
    sizes: dict[str, int] = {}
    for w in workers:
        for k, v in w.batch_sizes.items():
            sizes[k] = sizes.get(k, 0) + v
    return {
        "queue_depth": stats.depth,
        "in_flight": stats.in_flight,
        "dead_letter": stats.dead,
        "workers": sum(presence.is_alive(w) for w in workers),
        "completed": sum(w.completed for w in workers),
        "batch_sizes": sizes,
    }


# A cell starting with one of these is a formula to a spreadsheet (CSV injection):
# OWASP's advice is to make it text with a leading single quote.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def to_csv(results: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for r in results:
        writer.writerow({k: csv_cell(v) for k, v in r.items()})
    return buf.getvalue()
