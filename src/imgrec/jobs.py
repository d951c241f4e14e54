"""A job's life, in one place: every record of a job in the store and the queue is
written, read and removed here, whichever part does it.

    stage and    its input in the store (and a pending record where the queue is not
    commit       durable), then its request on the queue, a group of uploads at once
                 (the web tier); the client is answered only after both
    start        an async job's pending record names the worker that took it
    finish       outputs written, replies sent to the waiting replicas, pending records
                 removed, requests acked, in that order (a worker)
    status       done, failed, running, queued, expired, or never was (the web tier)
    dead letters answered with an error result, so no client waits in vain
    resend       the requests of accepted jobs whose messages a queue lost
    sweep        what is older than the retention time
                 (the last three: the autoscaler's housekeeping, and `imgrec gc`)

Where the queue is durable (SQLite, SQS, Redis with its append-only file), the queue's
message is the job's only record until a worker takes it. Where it is not (a Redis
without persistence, allowed with IMGREC_ALLOW_VOLATILE_QUEUE), a pending record is
written beside the input so that the job survives the queue losing its messages:
housekeeping finds it and sends the request again. An async job's pending record also
says which worker runs it. Every function here is safe to run from several processes at once:
at worst a request is sent twice, and workers answer it once, because a result is
written once per job id and a redelivered job is answered from the store.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import IO

from imgrec.errors import BackendError, BackendUnavailable, BadInput, Expired, NotFound, QueueMissing
from imgrec.messages import (
    INPUTS,
    PENDING,
    SWEPT,
    JsonObject,
    Output,
    Pending,
    Reply,
    Request,
    dumps,
    id_time,
    input_prefix,
    output_key,
    pending_key,
)
from imgrec.queues import Message, Queue, open_queue
from imgrec.queues.base import DEFAULT_TIMEOUT
from imgrec.stores import ObjectStore, Staged

log = logging.getLogger("imgrec.jobs")
JSON = "application/json"


def read_output(store: ObjectStore, job_id: str) -> Output | None:
    """A job's result, or None while it has none."""
    try:
        return Output.from_dict(store.get(output_key(job_id)))
    except NotFound:
        return None


# --- accepted: the web tier -------------------------------------------------------------


def stage(store: ObjectStore, request: Request, data: IO[bytes], keep_pending: bool) -> list[Staged]:
    """The first half of accepting a job (blocking; several at once overlap their
    flushes): its input, and its pending record where the queue is not durable, written
    but not yet visible. `Committer.commit` finishes it."""
    staged = [store.stage(request.input_key, data)]
    if keep_pending:
        pending = Pending(request, accepted_at=request.sent_at or time.time())
        try:
            staged.append(store.stage(pending.key, io.BytesIO(dumps(pending.to_dict())), JSON))
        except BaseException:
            store.discard(staged)
            raise
    return staged


@dataclass
class _Group:
    staged: list[Staged]
    requests: list[Request]
    done: Future[None]


class Committer:
    """Accepted jobs made durable in groups, as databases do with their logs: one thread
    takes every group staged while it was busy, makes all their objects visible and
    durable in one commit (a local disk flushes each folder once), sends all their
    requests in one call (SQLite: one synced transaction), then answers each group.

    An idle service pays what it paid one job at a time; a busy one pays one commit
    for all the uploads that arrived during the last. A client is answered only after
    its group's commit and send returned: the order the Guarantees name (stored, then
    queued, then answered) holds for every job of a group."""

    def __init__(self, store: ObjectStore, requests: Queue) -> None:
        self.store, self.requests = store, requests
        self._waiting: list[_Group] = []
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="committer", daemon=True)
        self._thread.start()

    def commit(self, staged: list[Staged], requests: list[Request]) -> Future[None]:
        """Queue a staged group; the future completes once its objects are durable and its
        requests are sent, or fails with the BackendError that stopped it (what the group
        staged is then discarded, and no request of it was sent)."""
        group = _Group(staged, requests, Future())
        with self._wake:
            if self._stopping:
                raise BackendUnavailable("the web tier is stopping")
            self._waiting.append(group)
            self._wake.notify()
        return group.done

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._waiting and not self._stopping:
                    self._wake.wait()
                groups, self._waiting = self._waiting, []
                if not groups and self._stopping:
                    return
            # An upload that stopped waiting (its request cancelled) is not committed: nobody
            # was told it was accepted. The others can no longer be cancelled from now on.
            live = [g for g in groups if g.done.set_running_or_notify_cancel()]
            self.store.discard([s for g in groups if g not in live for s in g.staged])
            try:
                if live:
                    self._commit_groups(live)
            except Exception:  # noqa: BLE001 - the one thread every upload needs never dies
                log.exception("the committer met an unexpected error; it goes on")

    def _commit_groups(self, groups: list[_Group]) -> None:
        staged = [s for g in groups for s in g.staged]
        try:
            try:
                self.store.commit(staged)
            except BaseException:
                self.store.discard(staged)
                raise
            try:
                self.requests.send_many([r.to_dict() for g in groups for r in g.requests])
            except BaseException:
                # The clients are told their uploads failed: housekeeping must not send
                # them after all (an input alone is swept with its job).
                with contextlib.suppress(BackendError):
                    self.store.delete_many([s.key for s in staged if s.key.startswith(PENDING)])
                raise
        except Exception as exc:  # noqa: BLE001 - handed to every waiting upload, which answers it
            for g in groups:
                g.done.set_exception(exc)
            if not isinstance(exc, BackendError):
                log.exception("a group commit failed unexpectedly")
            return
        for g in groups:
            g.done.set_result(None)

    def close(self) -> None:
        """Commit what is already queued, then stop."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout=30)


def status(store: ObjectStore, job_id: str, retention: float) -> JsonObject:
    """What the API says of a job. Raises NotFound for a job that never was, Expired for
    one kept its time and deleted."""
    output = read_output(store, job_id)
    if output is not None:
        return {"job_id": job_id, "status": "failed" if output.failed else "done", "result": output.public()}
    try:
        pending = Pending.from_dict(store.get(pending_key(job_id)))
        return {"job_id": job_id, "status": "running" if pending.worker else "queued"}
    except NotFound:
        pass
    if next(iter(store.keys(input_prefix(job_id))), None):  # accepted by an earlier version
        return {"job_id": job_id, "status": "queued"}
    raise gone_or_never(job_id, "job", retention)


def gone_or_never(some_id: str, what: str, retention: float) -> NotFound:
    """Expired for an id older than the retention time (ids tell when they were made),
    else NotFound."""
    made = id_time(some_id)
    if retention > 0 and made is not None and time.time() - made > retention:
        days = retention / 86400
        kept = f"{days:g} days" if days >= 1 else f"{retention / 3600:g} hours"
        return Expired(f"{what} {some_id} has expired: results are kept for {kept} (IMGREC_RETENTION)")
    return NotFound(f"no such {what}: {some_id}")


# --- taken and finished: the workers ----------------------------------------------------


def start(store: ObjectStore, request: Request, worker: str, when: float) -> None:
    """An async job's status says "running" from now (a waited-for one is not asked)."""
    pending = Pending(request, request.sent_at or when, worker, when)
    store.put(pending.key, dumps(pending.to_dict()), JSON)


@dataclass(frozen=True)
class Done:
    """A received request and its output; `stored`: the output was in the store already
    (a redelivery), so it is not written again."""

    message: Message
    request: Request
    output: Output
    stored: bool = False


class Results:
    """Writes jobs' outputs and hands them to the web replicas that wait for them."""

    def __init__(self, store: ObjectStore, queue_url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.store, self.queue_url, self.timeout = store, queue_url, timeout
        self._reply_queues: dict[str, Queue] = {}

    def finish(self, requests: Queue, done: list[Done]) -> tuple[float, float]:
        """Write the new outputs, reply, then ack: an ack never precedes a durable result.
        The pending records go after the reply, off the waiting client's path (one left by
        a crash meanwhile is swept: its job's output exists). Returns the seconds spent
        writing, and replying and acking."""
        t0 = time.perf_counter()
        self.write([d.output for d in done if not d.stored])
        t1 = time.perf_counter()
        self.reply([(d.request, d.output) for d in done])
        self.store.delete_many([pending_key(d.request.job_id) for d in done])
        requests.ack_many([d.message for d in done])
        return t1 - t0, time.perf_counter() - t1

    def write(self, outputs: list[Output]) -> None:
        if outputs:  # a batch's outputs in one call: the local store syncs their folder once
            self.store.put_many([(output_key(o.job_id), dumps(o.to_dict()), JSON) for o in outputs])

    def reply(self, answered: list[tuple[Request, Output]]) -> None:
        """One message batch per waiting replica; async jobs have none (the store is the answer)."""
        by_replica: dict[str, list[JsonObject]] = {}
        for request, output in answered:
            if request.reply_to:
                by_replica.setdefault(request.reply_to, []).append(Reply(request.job_id, output).to_dict())
        for reply_to, replies in by_replica.items():
            try:
                q = self._reply_queues.get(reply_to)
                if q is None:
                    # Not create=True: a stopped replica's deleted queue stays deleted.
                    q = open_queue(self.queue_url, reply_to, ephemeral=True, timeout=self.timeout)
                    self._reply_queues[reply_to] = q
                q.send_many(replies)
            except QueueMissing:
                # The replica stopped and deleted its queue: nobody waits for these.
                log.info("%d replies to %s dropped: that web replica is gone", len(replies), reply_to)
                if (gone := self._reply_queues.pop(reply_to, None)) is not None:
                    gone.close()
            except BackendError as exc:
                # The waiting web tier, if there is one, recovers the results from the store.
                log.warning("%d replies to %s not sent (%s)", len(replies), reply_to, exc)

    def close(self) -> None:
        for q in self._reply_queues.values():
            q.close()


# --- what no single request owns: housekeeping -----------------------------------------


def answer_dead_letters(queue: Queue, results: Results, limit: int = 50) -> int:
    """Give every dead-lettered request an error result (or its result, if one was written
    after all), reply to whoever waits, and remove it; returns how many were taken."""
    taken = 0
    while taken < limit and (messages := queue.receive_dead(10)):
        for m in messages:
            try:
                request = Request.from_dict(m.body)
            except BadInput:
                log.error("dropping a malformed dead letter: %r", m.body)
            else:
                output = read_output(results.store, request.job_id)
                if output is None:
                    output = Output(
                        request.job_id, request.filename, request.input_key, attempt=m.receive_count,
                        error=f"the image could not be processed: it was delivered {queue.max_receives} times "
                        "and each time the worker holding it ended (it may crash or hang the classifier)",
                    )
                    results.write([output])
                results.store.delete(pending_key(request.job_id))
                results.reply([(request, output)])
                log.warning("job %s was dead-lettered after %d deliveries", request.job_id, queue.max_receives)
            queue.ack(m)
            taken += 1
    return taken


def resend_lost(
    store: ObjectStore, queue: Queue, older_than: float, store_now: float | None = None,
    others: Mapping[str, Queue] | None = None,
) -> int:
    """Send again the requests of jobs whose pending records were last written more than
    `older_than` seconds ago and whose messages the queue no longer has; returns how many.
    Ages are by the store's clock (`store_now`: its time now), never by another host's.

    A queue cannot be asked for a job's message, so this counts: jobs pending in the
    store beyond what the queue holds (waiting, in flight, dead) were lost; the oldest of
    those pending long enough are sent again. A guess that picks one still queued makes
    a duplicate, which is answered once. Where several models are served, `others` are the
    other models' request queues: each job goes back to its own model's."""
    others = others or {}
    every = [queue.stats(), *(q.stats() for q in others.values())]
    queued = sum(st.depth + st.in_flight + st.dead for st in every)
    now, unfinished, candidates = time.time() if store_now is None else store_now, 0, []
    for key, written in store.scan(PENDING):
        try:
            pending = Pending.from_dict(store.get(key))
        except (NotFound, BadInput):
            continue
        if store.exists(output_key(pending.request.job_id)):
            store.delete(key)  # its worker wrote the output but did not get to remove this
            continue
        unfinished += 1
        if now - written > older_than:
            candidates.append(pending)
    lost = min(len(candidates), unfinished - queued)
    if lost <= 0:
        return 0
    resend = sorted(candidates, key=lambda p: p.accepted_at)[:lost]
    requests = [replace(p.request, requeued=p.request.requeued + 1) for p in resend]
    by_queue: dict[int, tuple[Queue, list[Request]]] = {}
    for r in requests:
        target = others.get(r.model or "", queue)
        by_queue.setdefault(id(target), (target, []))[1].append(r)
    for target, sent in by_queue.values():
        target.send_many([r.to_dict() for r in sent])
    for p, r in zip(resend, requests, strict=True):
        store.put(p.key, dumps(replace(p, request=r, resent_at=now).to_dict()), JSON)
    log.warning("sent again %d accepted jobs whose messages were lost (the queue lost its data?)", lost)
    return lost


def resend_unqueued(
    store: ObjectStore, queue: Queue, queued: set[str], others: Mapping[str, Queue] | None = None
) -> int:
    """After a queue lost messages it had promised to keep (a damaged SQLite file,
    salvaged): send again the request of every job whose input is in the store, whose
    result is not, and whose id is not in `queued` (the jobs the queues still hold).
    Reads every input in the store: for an operator's command, not for housekeeping.
    A job with a pending record (a queue that is not durable, or several models served)
    is sent as it was, to its own model's queue among `others`; any other job to
    `queue`. Returns how many were sent. (A durable queue is its jobs' only record, so
    the inputs are what is left to find them by; a job whose upload was refused after
    its input was written is answered too, and nobody waits for that answer.)"""
    others = others or {}
    by_queue: dict[int, tuple[Queue, list[Request]]] = {}
    for key in store.keys(INPUTS):
        job_id, _, name = key[len(INPUTS):].partition("/")
        if job_id in queued or not name or store.exists(output_key(job_id)):
            continue
        try:
            request = replace(Pending.from_dict(store.get(pending_key(job_id))).request, reply_to=None)
        except (NotFound, BadInput):
            request = Request(job_id, key, name, sent_at=time.time())
        request = replace(request, requeued=request.requeued + 1)
        target = others.get(request.model or "", queue)
        by_queue.setdefault(id(target), (target, []))[1].append(request)
    for target, requests in by_queue.values():
        for start_at in range(0, len(requests), 100):
            target.send_many([r.to_dict() for r in requests[start_at : start_at + 100]])
    sent = sum(len(requests) for _, requests in by_queue.values())
    if sent:
        log.warning("sent again %d accepted jobs the queue no longer held", sent)
    return sent


def sweep_expired(store: ObjectStore, retention: float, store_now: float | None = None) -> dict[str, int]:
    """Delete inputs, results, batches and records older than `retention` seconds (0 keeps
    everything) by the store's clock (`store_now`: its time now); returns how many were
    deleted under each prefix."""
    if retention <= 0:
        return {}
    cutoff, deleted = (time.time() if store_now is None else store_now) - retention, {}
    for prefix in SWEPT:
        old = [key for key, modified in store.scan(prefix) if modified < cutoff]
        for start_at in range(0, len(old), 1000):
            store.delete_many(old[start_at : start_at + 1000])
        if old:
            deleted[prefix] = len(old)
    if deleted:
        log.info("retention: deleted %s", ", ".join(f"{n} under {p}" for p, n in deleted.items()))
    return deleted


__all__ = [
    "Committer", "Done", "Results", "answer_dead_letters", "gone_or_never", "read_output", "resend_lost",
    "resend_unqueued", "stage", "start", "status", "sweep_expired",
]
