"""Names, ids and store keys: every store key prefix is here and nowhere else."""

from __future__ import annotations

import re
import time
import unicodedata
import uuid

REQUEST_QUEUE = "requests"  # the default model's; another served model's is REQUEST_QUEUE-<model>


def request_queue_name(model: str, default: str) -> str:
    """The request queue of `model` where `default` is the deployment's default model."""
    return REQUEST_QUEUE if model == default else f"{REQUEST_QUEUE}-{model.replace('.', '_')}"
REPLY_QUEUE_PREFIX = "replies-"  # + a random id: each web replica's own
SAFE_NAME_MAX = 100

INPUTS, OUTPUTS, PENDING, BATCHES, HEALTH = "inputs/", "outputs/", "pending/", "batches/", "health/"
RUNNING = "running/"  # async jobs' markers of earlier versions: swept by retention only
# Everything the retention sweep may delete when it is old enough.
SWEPT = (INPUTS, OUTPUTS, PENDING, BATCHES, HEALTH, RUNNING)
MODELS = "models/"  # + MODEL_KEYS, formatted with a model's name (and its file's sha256 and name)
MODEL_KEYS = {
    "manifest": MODELS + "{name}/manifest.json",  # the version served now
    "versions": MODELS + "{name}/versions.json",  # the versions kept, in push order (rollback: the one before)
    "file": MODELS + "{name}/{sha256}/{file}",
    "version": MODELS + "{name}/{sha256}/manifest.json",  # each version's own manifest
}
HEARTBEATS = {"worker": "workers/", "web": "replicas/", "autoscaler": "autoscalers/", "supervisor": "supervisors/"}


def new_id(now: float | None = None) -> str:
    """32 hex digits, ordered by time (a UUIDv7's layout: milliseconds since 1970, the
    version digit 7, then random), so an id tells when it was made."""
    ms = int((time.time() if now is None else now) * 1000)
    return f"{ms:012x}7{uuid.uuid4().hex[:19]}"


def is_id(value: object) -> bool:
    return isinstance(value, str) and bool(re.fullmatch(r"[0-9a-f]{32}", value))


def id_time(value: str) -> float | None:
    """When an id from `new_id` was made (None for an id of an earlier, random kind)."""
    return int(value[:12], 16) / 1000 if is_id(value) and value[12] == "7" else None


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


def input_prefix(job_id: str) -> str:
    return f"{INPUTS}{job_id}/"


def input_key(job_id: str, filename: str | None) -> str:
    return input_prefix(job_id) + safe_filename(filename)


def output_key(job_id: str) -> str:
    return f"{OUTPUTS}{job_id}.json"


def pending_key(job_id: str) -> str:
    return f"{PENDING}{job_id}.json"


def batch_key(batch_id: str, name: str = "manifest.json") -> str:
    return f"{BATCHES}{batch_id}/{name}"


def canary_key(member_id: str) -> str:
    """A tiny object a web replica writes to prove the store takes writes (readiness)."""
    return f"{HEALTH}{member_id}"


def heartbeat_key(role: str, member_id: str) -> str:
    return f"{HEARTBEATS[role]}{member_id}.json"


# A cell starting with one of these is a formula to a spreadsheet (CSV injection):
# OWASP's advice is to make it text with a leading single quote.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: object) -> object:
    """A value for a CSV cell that a spreadsheet shows and never runs."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
