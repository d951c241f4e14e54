"""Where a job's objects live in the store, and what its messages carry.

A request message holds the job id, the input key and a reply address, never
the image bytes. Results are one JSON object per job at `outputs/<job_id>.json`.
"""

from __future__ import annotations

import json
import re
import unicodedata
import uuid

REQUEST_QUEUE = "requests"
SAFE_NAME_MAX = 100


def new_id() -> str:
    return uuid.uuid4().hex


def is_id(value: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-f]{32}", value))


def safe_filename(name: str | None) -> str:
    """A file name that is one harmless path segment, keeping what a person would recognise.

    Strips directories (`../`, `C:\\`), NUL and control characters, and non-ASCII
    letters are folded to ASCII; the result is never empty and never starts with a dot.
    """
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "upload"
    if len(name) > SAFE_NAME_MAX:
        stem, dot, ext = name.rpartition(".")
        ext = ext[:10] if dot else ""
        name = (stem if dot else name)[: SAFE_NAME_MAX - len(ext) - 1] + ("." + ext if ext else "")
    return name


def display_name(filename: str | None) -> str:
    """The classic format's `name`: the uploaded file name without directories or extension."""
    base = (filename or "upload").replace("\\", "/").rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    return stem or "upload"


def input_key(job_id: str, filename: str) -> str:
    return f"inputs/{job_id}/{safe_filename(filename)}"


def output_key(job_id: str) -> str:
    return f"outputs/{job_id}.json"


def running_key(job_id: str) -> str:
    return f"running/{job_id}.json"


def batch_key(batch_id: str, name: str = "manifest.json") -> str:
    return f"batches/{batch_id}/{name}"


def dumps(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()
