"""A multi-image upload (a batch): its manifest, written when it is accepted, and its
results merged in upload order once every job is done. Plain blocking functions
over the store (call them off the event loop)."""

from __future__ import annotations

import csv
import io
import json

from imgrec import jobs
from imgrec.errors import Expired, NotFound
from imgrec.messages import Output, batch_key, csv_safe, dumps
from imgrec.stores import ObjectStore, Staged
from imgrec.web.uploads import Upload

CSV_COLUMNS = Output.CSV_COLUMNS


def entry(job_id: str | None, up: Upload) -> dict:
    """A file of an upload: its job, or the reason it was refused."""
    e = {"job_id": job_id, "filename": up.filename}
    if up.error:
        e["error"] = up.error.message
    return e


def stage_manifest(store: ObjectStore, batch_id: str, entries: list[dict], created: float) -> Staged:
    """The batch's manifest, staged to be committed with its jobs (`jobs.Committer`): it
    is durable before the upload is answered with the batch's URL."""
    manifest = {"batch_id": batch_id, "created": created, "jobs": entries}
    return store.stage(batch_key(batch_id), io.BytesIO(dumps(manifest)), "application/json")


def write_results(store: ObjectStore, batch_id: str, results: list[dict]) -> None:
    """The merged results file of a batch (as the original design's outputfile.txt)."""
    store.put(batch_key(batch_id, "results.json"), dumps({"batch_id": batch_id, "results": results}), "application/json")
    store.put(batch_key(batch_id, "results.csv"), to_csv(results).encode(), "text/csv")


def batch_view(store: ObjectStore, batch_id: str, retention: float) -> dict:
    try:
        manifest = json.loads(store.get(batch_key(batch_id)))
    except NotFound:
        raise jobs.gone_or_never(batch_id, "batch", retention) from None
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
            state = jobs.status(store, e["job_id"], retention)
        except NotFound as exc:  # expired or swept on its own: say so in its row
            state = {"status": "expired" if isinstance(exc, Expired) else "missing", "result": {
                "job_id": e["job_id"], "filename": e["filename"], "error": str(exc)}}
        if "result" in state:
            done += 1
            results.append(state["result"])
        else:
            results.append({"job_id": e["job_id"], "filename": e["filename"], "status": state["status"]})
    if done == len(manifest["jobs"]):
        write_results(store, batch_id, results)  # merged once, then served as is
        return {"status": "done", "batch_id": batch_id, "results": results}
    return {"status": "running", "batch_id": batch_id, "done": done, "results": results}


def to_csv(results: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for r in results:
        writer.writerow({k: csv_safe(v) for k, v in r.items()})
    return buf.getvalue()
