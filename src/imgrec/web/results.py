"""Reading results back from the store: a job's status, a batch's merged results, the
service's status. Plain blocking functions over the store and queue (call them off
the event loop)."""

from __future__ import annotations

import csv
import io
import json
import time

from imgrec import presence
from imgrec.errors import Expired, NotFound
from imgrec.messages import Pending, batch_key, csv_safe, dumps, id_time, input_prefix, pending_key, read_output
from imgrec.queues import Queue
from imgrec.stores import ObjectStore
from imgrec.web.uploads import Upload

CSV_COLUMNS = ("filename", "job_id", "label", "class_index", "wnid", "score", "error")


def entry(job_id: str | None, up: Upload) -> dict:
    """A file of an upload: its job, or the reason it was refused."""
    e = {"job_id": job_id, "filename": up.filename}
    if up.error:
        e["error"] = up.error.message
    return e


def job_status(store: ObjectStore, job_id: str, retention: float) -> dict:
    """Raises NotFound for a job that never was, Expired for one kept its time and deleted."""
    output = read_output(store, job_id)
    if output is not None:
        return {"job_id": job_id, "status": "failed" if output.failed else "done", "result": output.public()}
    try:
        pending = Pending.from_dict(store.get(pending_key(job_id)))
        return {"job_id": job_id, "status": "running" if pending.worker else "queued"}
    except NotFound:
        pass
    if next(iter(store.list(input_prefix(job_id))), None):  # accepted by an earlier version
        return {"job_id": job_id, "status": "queued"}
    raise gone_or_never(job_id, "job", retention)


def gone_or_never(some_id: str, what: str, retention: float) -> NotFound:
    made = id_time(some_id)
    if retention > 0 and made is not None and time.time() - made > retention:
        days = retention / 86400
        kept = f"{days:g} days" if days >= 1 else f"{retention / 3600:g} hours"
        return Expired(f"{what} {some_id} has expired: results are kept for {kept} (IMGREC_RETENTION)")
    return NotFound(f"no such {what}: {some_id}")


def write_batch_manifest(store: ObjectStore, batch_id: str, entries: list[dict], created: float) -> None:
    manifest = {"batch_id": batch_id, "created": created, "jobs": entries}
    store.put(batch_key(batch_id), dumps(manifest), "application/json")


def write_batch_results(store: ObjectStore, batch_id: str, results: list[dict]) -> None:
    """The merged results file of a batch (as the original design's outputfile.txt)."""
    store.put(batch_key(batch_id, "results.json"), dumps({"batch_id": batch_id, "results": results}), "application/json")
    store.put(batch_key(batch_id, "results.csv"), to_csv(results).encode(), "text/csv")


def batch_view(store: ObjectStore, batch_id: str, retention: float) -> dict:
    try:
        manifest = json.loads(store.get(batch_key(batch_id)))
    except NotFound:
        raise gone_or_never(batch_id, "batch", retention) from None
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
        try:
            state = job_status(store, e["job_id"], retention)
        except NotFound as exc:  # expired or swept on its own: say so in its row
            state = {"status": "expired" if isinstance(exc, Expired) else "missing", "result": {
                "job_id": e["job_id"], "filename": e["filename"], "error": str(exc)}}
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
    """The deployment at a glance, from the queue and the heartbeats in the store."""
    stats = queue.stats()
    workers = presence.read(store, "worker")
    overseers = [b for role in ("autoscaler", "supervisor") for b in presence.read(store, role)]
    sizes: dict[str, int] = {}
    stages: dict[str, float] = {}
    for w in workers:
        for k, v in w.batch_sizes.items():
            sizes[k] = sizes.get(k, 0) + v
        for k, v in w.stage_seconds.items():
            stages[k] = stages.get(k, 0.0) + v
    counts: dict[str, int] = {}
    for b in overseers:
        for k, v in b.counters.items():
            counts[k] = counts.get(k, 0) + v
    return {
        "queue_depth": stats.depth,
        "in_flight": stats.in_flight,
        "dead_letter": stats.dead,
        "workers": sum(presence.is_alive(w) for w in workers),
        "completed": sum(w.completed for w in workers),
        "batch_sizes": sizes,
        "stage_seconds": {k: round(v, 3) for k, v in stages.items()},  # summed over images, since the start
        "worker_crashes": counts.get("worker_crashes", 0),
        "hung_workers_replaced": counts.get("hung_workers_replaced", 0),
        "restarts": counts.get("web_restarts", 0) + counts.get("autoscaler_restarts", 0),
        "problems": presence.problems(overseers + workers),
    }


def to_csv(results: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for r in results:
        writer.writerow({k: csv_safe(v) for k, v in r.items()})
    return buf.getvalue()
