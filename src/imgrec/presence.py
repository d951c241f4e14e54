"""Who is running: each worker and web replica keeps a heartbeat in the store.

Any process can see the others without talking to them: the web tier counts
live workers for `/api/v1/status`, the autoscaler's housekeeping removes the
reply queue of a web replica that died without cleaning up, on any host. The
deployment's status (`deployment_status`) is the queue's counts beside the
workers' totals (`totals`), summed here once for every reader.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from imgrec.background import Loop
from imgrec.errors import BackendError, BadInput, NotFound
from imgrec.messages import HEARTBEATS, Heartbeat, canary_key, dumps, heartbeat_key
from imgrec.queues import Queue
from imgrec.stores import ObjectStore

log = logging.getLogger("imgrec.presence")
# A web replica beats as often as a worker, so that one killed outright is seen silent
# within seconds (3 missed beats), not half a minute: one small PUT every 2 s, the cost
# of one worker's beats, a fraction of what its status history already reads.
BEAT_SECONDS = {"worker": 2.0, "web": 2.0, "autoscaler": 5.0, "supervisor": 5.0}
STALE_BEATS = 3  # a member silent for this many beats is taken for dead
RETIRED_ID = "_retired"


class Presence:
    """One member's heartbeat, rewritten every few seconds by a thread of its own.

    `stats` gives the counters to publish with each beat (a worker's completed
    images, batch sizes and stage times)."""

    def __init__(
        self, store: ObjectStore, role: str, member_id: str, stats: Callable[[], dict] | None = None,
        started: float | None = None, every: float | None = None,
    ) -> None:
        self.store, self.every, self._stats = store, every or BEAT_SECONDS[role], stats or dict
        started = time.time() if started is None else started  # a worker's counts its model's loading
        self.beat = Heartbeat(member_id, role, host=socket.gethostname(), pid=os.getpid(), started=started)
        self.state = "running"  # or "waiting" (e.g. a worker for its model), which each beat says
        self._beating = Loop(f"{role} heartbeat", lambda: self.write(self.state), every=self.every, log=log)

    def write(self, state: str = "running") -> None:
        beat = replace(self.beat, state=state, last_seen=time.time(), **self._stats())
        try:
            self.store.put(beat.key, dumps(beat.to_dict()), "application/json")
        except BackendError as exc:
            log.warning("heartbeat of %s not written (%s)", beat.id, exc)

    def start(self, state: str = "running") -> Presence:
        self.state = state
        self.write(state)
        self._beating.start()
        return self

    def stop(self, state: str | None = "stopped") -> None:
        """Stop beating and leave a last record in `state`, or none at all (None)."""
        self._beating.stop()
        if state is not None:
            self.write(state)
            return
        try:
            self.store.delete(self.beat.key)
        except BackendError as exc:
            log.warning("heartbeat of %s not removed (%s)", self.beat.id, exc)


def is_alive(beat: Heartbeat, now: float | None = None, states: tuple[str, ...] = ("running",)) -> bool:
    now = time.time() if now is None else now
    return beat.state in states and now - beat.last_seen < STALE_BEATS * BEAT_SECONDS[beat.role]


def process_alive(pid: int) -> bool:
    """Whether a process of this host runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return False
        try:  # no /proc (not Linux): ask the kernel
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's
            return True
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def problems(beats: list[Heartbeat], detail: bool = True) -> list[str]:
    """What live members say keeps them from their work: an autoscaler that can start no
    worker, a worker waiting for its model. Without `detail`, each in a few words that
    name no path or address (what a caller without a key may be told)."""
    now = time.time()
    live = [b for b in beats if b.problem and is_alive(b, now, ("running", "waiting"))]
    if detail:
        return sorted({b.problem for b in live})
    return sorted({b.problem_kind or f"a {b.role} reports a problem (see imgrec status)" for b in live})


class StoreClock:
    """The store's clock as this host reads it, so that members on hosts whose clocks
    differ judge each other by one clock: how far the store's time is from this host's,
    found by writing a tiny object and listing when the store says it got it (again every
    `every` seconds). With the autoscaler's clock five minutes ahead, a live replica's
    reply queue was deleted every 30 s, and ahead by more than the retention, every result."""

    def __init__(self, store: ObjectStore, member_id: str, every: float = 60.0) -> None:
        self.store, self.key, self.every = store, canary_key(f"clock-{member_id}"), every
        self._offset: tuple[float, float] | None = None  # (store time - this host's, when found)

    def offset(self) -> float:
        """The store's time less this host's, in seconds (BackendError if it cannot tell)."""
        if self._offset is None or time.monotonic() - self._offset[1] >= self.every:
            before = time.time()
            self.store.put(self.key, b"", "text/plain")
            after = time.time()
            stored = next((at for key, at in self.store.scan(self.key) if key == self.key), None)
            if stored is None:  # gone meanwhile (a sweep): this host's clock is all there is
                return self._offset[0] if self._offset else 0.0
            self._offset = (stored - (before + after) / 2, time.monotonic())
        return self._offset[0]

    def now(self) -> float:
        """The store's time now."""
        return time.time() + self.offset()

    def forget(self) -> None:
        """Remove its object (what is left of a process that stopped is swept by retention)."""
        try:
            self.store.delete(self.key)
        except BackendError as exc:
            log.warning("clock object %s not removed (%s)", self.key, exc)


def read(store: ObjectStore, role: str, clock: StoreClock | None = None) -> list[Heartbeat]:
    """Every heartbeat of a role (live, stopped, and a worker's retired record). With
    `clock`, each beat's `last_seen` is when the store got it, on this host's clock: the
    member's own clock then never counts."""
    offset = clock.offset() if clock is not None else None
    beats = []
    for key, stored in store.scan(HEARTBEATS[role]):
        try:
            beat = Heartbeat.from_dict(store.get(key), role)
        except (NotFound, BadInput):
            continue  # removed or being replaced right now, or not ours
        beats.append(beat if offset is None else replace(beat, last_seen=stored - offset))
    return beats


@dataclass
class Totals:
    """What workers did, summed over their heartbeats: images completed, batches by size,
    seconds per stage (summed over images), and the per-image histograms of the stages
    (images per bucket, and "sum"; see Heartbeat.stage_histograms)."""

    completed: int = 0
    batch_sizes: dict[str, int] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    stage_histograms: dict[str, dict[str, float]] = field(default_factory=dict)


def totals(beats: list[Heartbeat]) -> Totals:
    out = Totals()
    for b in beats:
        out.completed += b.completed
        _add(out.batch_sizes, b.batch_sizes)
        _add(out.stage_seconds, b.stage_seconds)
        for stage, histogram in b.stage_histograms.items():
            _add(out.stage_histograms.setdefault(stage, {}), histogram)
    return out


def _add(into: dict, counts: dict) -> None:
    for k, n in counts.items():
        into[k] = into.get(k, 0) + n


def models(beats: list[Heartbeat], now: float | None = None) -> list[dict]:
    """The models live workers run, from their heartbeats: name, version (the model's
    sha256 prefix), variant, and how many workers run it."""
    running: dict[tuple[str, str], int] = {}
    for b in beats:
        if b.model and is_alive(b, now):
            running[(b.model, b.model_variant)] = running.get((b.model, b.model_variant), 0) + 1
    return [
        {"name": model.partition("@")[0], "version": model.partition("@")[2], "variant": variant, "workers": n}
        for (model, variant), n in sorted(running.items())
    ]


def counters(beats: list[Heartbeat]) -> dict[str, int]:
    """The members' counters (e.g. autoscalers' worker crashes), summed by name."""
    out: dict[str, int] = {}
    for b in beats:
        for k, n in b.counters.items():
            out[k] = out.get(k, 0) + n
    return out


def compact(store: ObjectStore, older_than: float = 300.0, clock: StoreClock | None = None) -> int:
    """Fold the heartbeats of workers stopped (or silent) for `older_than` seconds into one
    retired record, so the counts survive and the listing stays short; returns how many."""
    now = time.time()
    beats = read(store, "worker", clock)
    retired = next((b for b in beats if b.id == RETIRED_ID), Heartbeat(RETIRED_ID, "worker", "retired"))
    gone = [b for b in beats if b.id != RETIRED_ID and not is_alive(b, now) and now - b.last_seen > older_than]
    if not gone:
        return 0
    folded = totals([retired, *gone])
    retired = replace(
        retired, completed=folded.completed, batch_sizes=folded.batch_sizes, stage_seconds=folded.stage_seconds,
        stage_histograms=folded.stage_histograms,
    )
    store.put(retired.key, dumps(retired.to_dict()), "application/json")
    for b in gone:
        store.delete(b.key)
    return len(gone)


def deployment_status(
    queue: Queue, store: ObjectStore, clock: StoreClock | None = None, detail: bool = True,
    per_model: Mapping[str, Queue] | None = None,
) -> dict:
    """The deployment at a glance, from the queue and the heartbeats in the store (what
    `/api/v1/status`, `/metrics` and `imgrec status` show); `detail`: the problems as the
    members wrote them (paths and all), else in a few words. With `per_model` (the request
    queues of several models served side by side) also each one's queue, under "queues"."""
    stats = queue.stats()
    workers = read(store, "worker", clock)
    overseers = [b for role in ("autoscaler", "supervisor") for b in read(store, role, clock)]
    done, counts = totals(workers), counters(overseers)
    return {
        "queue_depth": stats.depth,
        "in_flight": stats.in_flight,
        "dead_letter": stats.dead,
        "workers": sum(is_alive(w) for w in workers),
        "completed": done.completed,
        "batch_sizes": done.batch_sizes,
        "stage_seconds": {k: round(v, 3) for k, v in done.stage_seconds.items()},  # summed over images, since the start
        "stage_histograms": done.stage_histograms,  # per image, since the start (/metrics' worker histograms)
        "models": models(workers),
        "worker_crashes": counts.get("worker_crashes", 0),
        "hung_workers_replaced": counts.get("hung_workers_replaced", 0),
        "restarts": counts.get("web_restarts", 0) + counts.get("autoscaler_restarts", 0),
        "problems": problems(overseers + workers, detail),
        **({"queues": _queues(per_model)} if per_model and len(per_model) > 1 else {}),
    }


def _queues(per_model: Mapping[str, Queue]) -> dict[str, dict[str, int]]:
    out = {}
    for model, q in per_model.items():
        st = q.stats()
        out[model] = {"queue_depth": st.depth, "in_flight": st.in_flight, "dead_letter": st.dead}
    return out


def silent_replicas(store: ObjectStore, silent_for: float, clock: StoreClock | None = None) -> list[Heartbeat]:
    """Web replicas whose last heartbeat is older than `silent_for` seconds."""
    beats = read(store, "web", clock)
    now = time.time()
    return [b for b in beats if now - b.last_seen >= silent_for]


def forget(store: ObjectStore, beat: Heartbeat) -> None:
    store.delete(heartbeat_key(beat.role, beat.id))
