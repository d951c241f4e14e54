"""Reading results back from the store: a job's status, a batch's merged results, the
service's status. Plain functions over the store and queue (blocking: call via `backend`)."""

from __future__ import annotations

import csv
import io
import json

from imgrec import jobs, registry
from imgrec.outputs import read_output
from imgrec.queue import Queue
from imgrec.store import ObjectNotFound, ObjectStore
from imgrec.web.uploads import Upload

CSV_COLUMNS = ("filename", "job_id", "label", "class_index", "wnid", "score", "error")


def public(output: dict) -> dict:
    """A result as the API shows it."""
    keys = ("job_id", "filename", "label", "class_index", "wnid", "score", "top", "error")
    return {k: output[k] for k in keys if k in output}


def entry(job_id: str | None, up: Upload) -> dict:
    """A file of an upload: its job, or the reason it was refused."""
    e = {"job_id": job_id, "filename": up.filename}
    if up.error:
        e["error"] = up.error.message
    return e


def job_status(store: ObjectStore, job_id: str) -> dict | None:
    output = read_output(store, job_id)
    if output is not None:
        return {"job_id": job_id, "status": "failed" if "error" in output else "done", "result": public(output)}
    if store.exists(jobs.running_key(job_id)):
        return {"job_id": job_id, "status": "running"}
    if next(iter(store.list(f"inputs/{job_id}/")), None):
        return {"job_id": job_id, "status": "queued"}
    return None


def write_batch_manifest(store: ObjectStore, batch_id: str, entries: list[dict], created: float) -> None:
    manifest = {"batch_id": batch_id, "created": created, "jobs": entries}
    store.put(jobs.batch_key(batch_id), jobs.dumps(manifest), "application/json")


def write_batch_results(store: ObjectStore, batch_id: str, results: list[dict]) -> None:
    """The merged results file of a batch (as the original design's outputfile.txt)."""
    store.put(jobs.batch_key(batch_id, "results.json"), jobs.dumps({"batch_id": batch_id, "results": results}), "application/json")
    store.put(jobs.batch_key(batch_id, "results.csv"), to_csv(results).encode(), "text/csv")


def batch_view(store: ObjectStore, batch_id: str) -> dict | None:
    try:
        manifest = json.loads(store.get(jobs.batch_key(batch_id)))
    except ObjectNotFound:
        return None
    try:
        return {"status": "done", **json.loads(store.get(jobs.batch_key(batch_id, "results.json")))}
    except ObjectNotFound:
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
    workers = registry.read_workers(store)
    sizes: dict[str, int] = {}
    for w in workers:
        for k, v in w.batch_sizes.items():
            sizes[k] = sizes.get(k, 0) + v
    return {
        "queue_depth": stats.depth,
        "in_flight": stats.in_flight,
        "dead_letter": stats.dead,
        "workers": sum(w.alive for w in workers),
        "completed": sum(w.completed for w in workers),
        "batch_sizes": sizes,
    }


def to_csv(results: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for r in results:
        writer.writerow(r)
    return buf.getvalue()
