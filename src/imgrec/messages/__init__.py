"""What the tiers say to each other, and where it lives in the store.

The parts meet only through the queue and the store. Every message and every
stored record is one of the frozen dataclasses below, with one (de)serialiser
each; every store key is built in `keys`, so no other module spells a prefix.

    queue  requests    Request   job id, input key, reply address (never the image)
    queue  replies-*   Reply     a job's Output, to the web replica that waits for it
    store  inputs/<job>/<file>   the uploaded bytes
    store  outputs/<job>.json    Output: the prediction or the error, once per job
    store  pending/<job>.json    Pending: an accepted job without its output yet (the
                                 request, to send again should its message be lost)
    store  batches/<batch>/...   a multi-image upload's manifest and merged results
    store  workers/<id>.json     Heartbeat of a worker
    store  replicas/<id>.json    Heartbeat of a web replica (its id is its reply queue)
    store  autoscalers/<id>.json, supervisors/<id>.json   theirs, with counters and problems
    store  health/<id>           a web replica's readiness canary
    store  models/<name>/...     a pushed model: manifest.json and <sha256>/<file>, never swept
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from imgrec.errors import BadInput
from imgrec.messages.keys import (
    BATCHES,
    HEALTH,
    HEARTBEATS,
    INPUTS,
    MODEL_KEYS,
    MODELS,
    OUTPUTS,
    PENDING,
    REPLY_QUEUE_PREFIX,
    REQUEST_QUEUE,
    RUNNING,
    SAFE_NAME_MAX,
    SWEPT,
    batch_key,
    canary_key,
    csv_safe,
    display_name,
    heartbeat_key,
    id_time,
    input_key,
    input_prefix,
    is_id,
    new_id,
    output_key,
    pending_key,
    request_queue_name,
    safe_filename,
)

JsonObject = dict[str, Any]  # a message or record as JSON gives it
M = TypeVar("M")


class BadMessage(BadInput):
    """A queue message or stored record that is not what it should be."""


def dumps(obj: JsonObject) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _loads(data: bytes | str | JsonObject, what: str) -> JsonObject:
    try:
        obj = data if isinstance(data, dict) else json.loads(data)
    except ValueError:
        raise BadMessage(f"{what} is not JSON") from None
    if not isinstance(obj, dict):
        raise BadMessage(f"{what} is not a JSON object")
    return obj


_NAMES: dict[type, tuple[str, ...]] = {}


def _names(cls: type) -> tuple[str, ...]:
    """A message class's field names (looked up once per class: on every request's path)."""
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


def _shallow(obj: Any) -> JsonObject:
    """A message's fields as a dict, not copied: `asdict`'s deep copy cost the web tier
    more CPU per request than the whole of FastAPI's routing. Messages are frozen, and
    nothing mutates their lists or dicts once they are made."""
    return {k: getattr(obj, k) for k in _names(type(obj))}


def _build(cls: type[M], obj: JsonObject, what: str) -> M:
    """The dataclass from a dict, ignoring keys it does not know (written by a newer version)."""
    known = _names(cls)
    try:
        return cls(**{k: v for k, v in obj.items() if k in known})
    except TypeError as exc:
        raise BadMessage(f"{what}: {exc}") from None


# --- messages -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """Classify the image at `input_key`. `reply_to` names the web replica's reply queue
    when a client waits; an async job (no one waiting) has none.

    `crashes` counts the attempts that crashed or hung the classifier; `requeued` the
    times a worker gave the request back for a reason of its own (stopping, a backend
    outage), which must not count against the image."""

    job_id: str
    input_key: str
    filename: str | None = None
    batch_id: str | None = None
    reply_to: str | None = None
    sent_at: float = 0.0
    crashes: int = 0
    requeued: int = 0
    model: str | None = None  # the model asked for, where several are served (None: the default)

    def __post_init__(self) -> None:
        if not is_id(self.job_id) or not isinstance(self.input_key, str):
            raise BadMessage(f"not a request: job_id={self.job_id!r}, input_key={self.input_key!r}")

    @property
    def waited_for(self) -> bool:
        return self.reply_to is not None

    def to_dict(self) -> JsonObject:
        return _shallow(self)

    @classmethod
    def from_dict(cls, data: bytes | str | JsonObject) -> Request:
        return _build(cls, _loads(data, "request"), "request")


@dataclass(frozen=True, slots=True)
class Output:
    """A job's result: a prediction (`label` ... `top`) or an `error`, never both.

    Written once per job id to the store; also what a Reply carries."""

    job_id: str
    filename: str | None = None
    input_key: str | None = None
    label: str | None = None
    class_index: int | None = None
    wnid: str | None = None
    score: float | None = None
    top: list[JsonObject] | None = None
    error: str | None = None
    model: str | None = None
    worker: str | None = None
    attempt: int = 0
    completed_at: float = field(default_factory=time.time)
    timings_ms: dict[str, float] = field(default_factory=dict)

    # `model` is `name@version` (the version: the ONNX file's sha256 prefix): which model, and
    # which of its versions, made the result (a rollout shows in the results).
    PUBLIC = ("job_id", "filename", "label", "class_index", "wnid", "score", "top", "error", "model")
    # A result as a CSV row, one order wherever CSV is written (a batch's results,
    # `imgrec submit --csv`): what a person reads first, then the identifiers.
    CSV_COLUMNS = ("filename", "label", "score", "class_index", "wnid", "error", "job_id", "model")

    @property
    def failed(self) -> bool:
        return self.error is not None

    def to_dict(self) -> JsonObject:
        return {k: v for k, v in _shallow(self).items() if v is not None}

    def public(self) -> JsonObject:
        """The result as the API shows it."""
        return {k: v for k in self.PUBLIC if (v := getattr(self, k)) is not None}

    @classmethod
    def from_dict(cls, data: bytes | str | JsonObject) -> Output:
        return _build(cls, _loads(data, "output"), "output")


@dataclass(frozen=True, slots=True)
class Reply:
    job_id: str
    output: Output

    def to_dict(self) -> JsonObject:
        return {"job_id": self.job_id, "result": self.output.to_dict()}

    @classmethod
    def from_dict(cls, data: bytes | str | JsonObject) -> Reply:
        obj = _loads(data, "reply")
        if not is_id(obj.get("job_id")):
            raise BadMessage("a reply without a job id")
        return cls(obj["job_id"], Output.from_dict(obj.get("result") or {"job_id": obj["job_id"]}))


@dataclass(frozen=True, slots=True)
class Pending:
    """An accepted job whose output is not written yet: its request (to send it again
    should its message be lost) and, once a worker took an async job, who and when."""

    request: Request
    accepted_at: float
    worker: str | None = None
    started_at: float | None = None
    resent_at: float | None = None

    @property
    def key(self) -> str:
        return pending_key(self.request.job_id)

    def to_dict(self) -> JsonObject:
        return {**_shallow(self), "request": self.request.to_dict()}

    @classmethod
    def from_dict(cls, data: bytes | str | JsonObject) -> Pending:
        obj = _loads(data, "pending record")
        return _build(cls, {**obj, "request": Request.from_dict(obj.get("request") or {})}, "pending record")


# The upper bounds, in seconds, of the buckets in which a worker counts each image's decode
# and inference times (its heartbeat's `stage_histograms`); the web tier sums them over
# workers into Prometheus histograms.
IMAGE_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def seconds_bucket(seconds: float) -> str:
    """The bucket of IMAGE_SECONDS_BUCKETS a time falls in, as a heartbeat names it: its
    upper bound ("0.005"), or "+Inf"."""
    return next((f"{bound:g}" for bound in IMAGE_SECONDS_BUCKETS if seconds <= bound), "+Inf")


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A live part's record in the store, rewritten every few seconds while it runs.

    `role` is "worker" or "web"; a web replica's id is the name of its reply queue."""

    id: str
    role: str = "worker"
    state: str = "running"  # "running", "stopped" or "retired" (the folded record of many)
    host: str = ""
    pid: int = 0
    started: float = 0.0
    last_seen: float = 0.0
    completed: int = 0
    batch_sizes: dict[str, int] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # A worker's per-image seconds by stage ("decode", "inference"): images per bucket (not
    # cumulative; see seconds_bucket), and their "sum".
    stage_histograms: dict[str, dict[str, float]] = field(default_factory=dict)
    progress_at: float = 0.0  # a worker's loop last went round (a hung one stops it)
    counters: dict[str, int] = field(default_factory=dict)  # e.g. an autoscaler's worker crashes
    problem: str = ""  # what keeps this member from its work, for a person (its operator: paths and all)
    problem_kind: str = ""  # the same in a few words naming no path or address: what anyone may be told
    model: str = ""  # a worker's model, name@sha256 (first 12 digits)
    model_variant: str = ""  # ... and its variant (IMGREC_MODEL: lite0, lite0-int8, ...)

    @property
    def key(self) -> str:
        return heartbeat_key(self.role, self.id)

    def to_dict(self) -> JsonObject:
        return _shallow(self)

    @classmethod
    def from_dict(cls, data: bytes | str | JsonObject, role: str = "worker") -> Heartbeat:
        obj = _loads(data, "heartbeat")
        if "id" not in obj and "queue" in obj:  # a web replica's record before roles existed
            obj = {"id": obj["queue"], "last_seen": obj.get("last_seen", 0.0)}
        return _build(cls, {"role": role, **obj}, "heartbeat")


# The names, ids and keys of `keys` are part of this module's face.
__all__ = [
    "BadMessage",
    "Heartbeat",
    "JsonObject",
    "Output",
    "Pending",
    "Reply",
    "Request",
    "dumps",
    "BATCHES",
    "HEALTH",
    "HEARTBEATS",
    "IMAGE_SECONDS_BUCKETS",
    "INPUTS",
    "MODEL_KEYS",
    "MODELS",
    "OUTPUTS",
    "PENDING",
    "REPLY_QUEUE_PREFIX",
    "REQUEST_QUEUE",
    "request_queue_name",
    "RUNNING",
    "SAFE_NAME_MAX",
    "SWEPT",
    "batch_key",
    "canary_key",
    "csv_safe",
    "display_name",
    "heartbeat_key",
    "id_time",
    "input_key",
    "input_prefix",
    "is_id",
    "new_id",
    "output_key",
    "pending_key",
    "safe_filename",
    "seconds_bucket",
]
