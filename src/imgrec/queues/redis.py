"""`RedisQueue`: a Redis stream with one consumer group.

URL ``redis://host:port/db?prefix=imgrec`` (``rediss://`` for TLS). Queue `name`
is the stream ``<prefix>:<name>``. A received message is pending for its
consumer; once it has been idle longer than the visibility timeout any consumer
takes it over with XAUTOCLAIM (its delivery count grows). After `max_receives`
deliveries it moves to the stream ``<prefix>:<name>:dead``. Depth is the group's
lag, in-flight its pending entries. Needs Redis 6.2 or newer.
"""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import parse_qs, urlparse, urlunparse

from imgrec.errors import BackendError, BackendUnavailable, QueueMissing, require, translating
from imgrec.queues.base import Message, Queue, QueueStats

GROUP = "imgrec"
# A blocked reader wakes at least this often to take over messages whose consumer died.
_MAX_BLOCK = 1.0
# Replies that mean "not now" rather than "never": out of memory, persistence failing,
# a replica, loading its data set, a cluster moving slots.
_TRANSIENT = ("OOM", "MISCONF", "READONLY", "LOADING", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "BUSY ")


def _translate(exc: Exception):
    import redis

    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return BackendUnavailable(f"Redis queue: {exc}")
    if isinstance(exc, redis.ResponseError) and str(exc).startswith(_TRANSIENT):
        return BackendUnavailable(f"Redis queue: {exc}")
    if isinstance(exc, redis.RedisError):
        return BackendError(f"Redis queue: {exc}")
    return None


_guard = translating(_translate)


class RedisQueue(Queue):
    def __init__(self, url: str, name: str, *, create: bool = False, client=None, **options) -> None:
        super().__init__(name, **options)
        redis = require("redis", "redis", "the Redis queue")
        parsed = urlparse(url)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        prefix = query.pop("prefix", "imgrec")
        self.key = f"{prefix}:{name}"
        self.dead_key = f"{self.key}:dead"
        self._consumer = uuid.uuid4().hex
        # Timeouts, so that a Redis that stops answering is an outage within `timeout`
        # seconds (beyond the longest block of a receive), never a hang.
        self._redis = client or redis.Redis.from_url(
            urlunparse(parsed._replace(query="")), decode_responses=True,
            socket_timeout=_MAX_BLOCK + self.timeout, socket_connect_timeout=self.timeout,
        )
        self._response_error = redis.ResponseError
        self._creates = create
        if create:
            self.create()

    @_guard
    def volatile(self) -> str | None:
        try:
            appendonly = self._redis.config_get("appendonly").get("appendonly")
            save = self._redis.config_get("save").get("save")
        except self._response_error:
            return None  # CONFIG is disabled (a managed Redis): it cannot be told
        if appendonly == "yes" or (save or "").strip():
            return None
        return "this Redis keeps nothing on disk (appendonly no, no save points): a restart loses every queued job"

    @_guard
    def durable(self) -> bool:
        # Only the append-only file keeps every send; snapshots (save points) lose the
        # last minutes' sends on a crash, and a managed Redis that hides CONFIG cannot tell.
        try:
            return self._redis.config_get("appendonly").get("appendonly") == "yes"
        except self._response_error:
            return False

    @_guard
    def create(self) -> None:
        """The streams and their consumer group; without this a queue is only written to
        if it exists (a stopped replica's reply queue is not brought back)."""
        for key in (self.key, self.dead_key):
            try:
                self._redis.xgroup_create(key, GROUP, id="0", mkstream=True)
            except self._response_error as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    @_guard
    def send(self, body: dict) -> str:
        # NOMKSTREAM: a deleted queue (a stopped replica's replies) is not brought back to life.
        entry_id = self._redis.xadd(self.key, {"body": json.dumps(body)}, nomkstream=not self._creates)
        if entry_id is None:
            raise QueueMissing(f"queue {self.key} does not exist (deleted)")
        return entry_id

    @_guard
    def send_many(self, bodies: list[dict]) -> list[str]:
        pipe = self._redis.pipeline(transaction=False)
        for b in bodies:
            pipe.xadd(self.key, {"body": json.dumps(b)}, nomkstream=not self._creates)
        ids = pipe.execute()
        if any(i is None for i in ids):
            raise QueueMissing(f"queue {self.key} does not exist (deleted)")
        return ids

    @_guard
    def ack_many(self, messages: list[Message]) -> None:
        ids = [m.id for m in messages if not m.receipt.startswith("dead:")]
        if len(ids) < len(messages):
            return super().ack_many(messages)
        if ids:
            pipe = self._redis.pipeline()
            pipe.xack(self.key, GROUP, *ids)
            pipe.xdel(self.key, *ids)
            pipe.execute()

    def _message(self, entry_id: str, fields: dict, count: int) -> Message:
        return Message(entry_id, json.loads(fields["body"]), f"{entry_id}/{self._consumer}/{count}", count)

    def _reclaim(self, key: str, max_messages: int, min_idle_ms: int) -> list[tuple[str, dict, int]]:
        """Take over messages idle past the visibility timeout, with their delivery counts."""
        _, entries, _deleted = self._redis.xautoclaim(
            key, GROUP, self._consumer, min_idle_time=min_idle_ms, start_id="0-0", count=max_messages
        )
        if not entries:
            return []
        pending = self._redis.xpending_range(
            key, GROUP, min=entries[0][0], max=entries[-1][0], count=len(entries) * 4, consumername=self._consumer
        )
        counts = {p["message_id"]: p["times_delivered"] for p in pending}
        return [(eid, fields, counts.get(eid, 1)) for eid, fields in entries if fields]

    @_guard
    def receive(self, max_messages: int = 1, wait: float = 0.0) -> list[Message]:
        try:
            return self._receive(max_messages, wait)
        except self._response_error as exc:
            if "NOGROUP" not in str(exc) or not self._creates:
                raise
            # Redis lost the stream (restarted without persistence): make it again.
            self.create()
            return self._receive(max_messages, wait)

    def _receive(self, max_messages: int, wait: float) -> list[Message]:
        deadline = time.monotonic() + wait
        vt_ms = int(self.visibility_timeout * 1000)
        while True:
            messages = []
            for eid, fields, count in self._reclaim(self.key, max_messages, vt_ms):
                if count > self.max_receives:
                    self._to_dead_letter(eid, fields)
                else:
                    messages.append(self._message(eid, fields, count))
            if len(messages) < max_messages:
                remaining = deadline - time.monotonic()
                block = None if messages or remaining <= 0 else max(1, int(1000 * min(remaining, _MAX_BLOCK)))
                streams = self._redis.xreadgroup(
                    GROUP, self._consumer, {self.key: ">"}, count=max_messages - len(messages), block=block
                )
                for _, entries in streams or []:
                    messages += [self._message(eid, fields, 1) for eid, fields in entries]
            if messages or time.monotonic() >= deadline:
                return messages

    def _to_dead_letter(self, entry_id: str, fields: dict) -> None:
        pipe = self._redis.pipeline()
        pipe.xadd(self.dead_key, fields)
        pipe.xack(self.key, GROUP, entry_id)
        pipe.xdel(self.key, entry_id)
        pipe.execute()

    @_guard
    def ack(self, message: Message) -> bool:
        key = self.dead_key if message.receipt.startswith("dead:") else self.key
        pipe = self._redis.pipeline()
        pipe.xack(key, GROUP, message.id)
        pipe.xdel(key, message.id)
        acked, _ = pipe.execute()
        return bool(acked)

    @_guard
    def extend(self, message: Message, seconds: float) -> bool:
        # XCLAIM can set a pending entry's idle time: idle = vt - seconds makes it
        # reclaimable `seconds` from now (0: at once). JUSTID keeps the delivery count.
        idle = max(0, int((self.visibility_timeout - seconds) * 1000))
        claimed = self._redis.xclaim(
            self.key, GROUP, self._consumer, min_idle_time=0, message_ids=[message.id], idle=idle, justid=True
        )
        return bool(claimed)

    @_guard
    def stats(self) -> QueueStats:
        try:
            group = next(g for g in self._redis.xinfo_groups(self.key) if g["name"] == GROUP)
        except (self._response_error, StopIteration):  # deleted
            return QueueStats(0, 0, int(self._redis.xlen(self.dead_key)))
        lag = group.get("lag")
        if lag is None:  # Redis could not compute it (e.g. deletions): count past the last delivered id
            lag = len(self._redis.xrange(self.key, min="(" + group["last-delivered-id"], max="+"))
        # An entry's id is the milliseconds of the Redis server's clock when it was added.
        sent_ms = int(self._redis.xinfo_stream(self.key)["last-generated-id"].split("-")[0])
        return QueueStats(int(lag), int(group["pending"]), int(self._redis.xlen(self.dead_key)), sent_ms / 1000)

    @_guard
    def receive_dead(self, max_messages: int = 10) -> list[Message]:
        vt_ms = int(self.visibility_timeout * 1000)
        entries = [(eid, f) for eid, f, _ in self._reclaim(self.dead_key, max_messages, vt_ms)]
        if len(entries) < max_messages:
            streams = self._redis.xreadgroup(GROUP, self._consumer, {self.dead_key: ">"}, count=max_messages - len(entries))
            entries += [e for _, es in streams or [] for e in es]
        return [Message(eid, json.loads(f["body"]), f"dead:{eid}/{self._consumer}", self.max_receives) for eid, f in entries]

    @_guard
    def delete(self) -> None:
        self._creates = False  # a deleted queue stays deleted, even for this handle
        self._redis.delete(self.key, self.dead_key)

    def close(self) -> None:
        self._redis.close()
