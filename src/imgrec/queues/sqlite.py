"""`SqliteQueue`: a durable queue in one SQLite file (WAL), safe across processes."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

from imgrec.errors import BackendError, BackendUnavailable, ConfigError, QueueDamaged, QueueMissing, translating
from imgrec.queues._wake import Waiter, wake_all
from imgrec.queues.base import Message, Queue, QueueStats

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    visible_at REAL NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, visible_at, seq);
CREATE TABLE IF NOT EXISTS queues (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS sent (queue TEXT PRIMARY KEY, at REAL NOT NULL);
"""
# Waiting consumers re-check at least this often, e.g. for a message whose
# visibility ran out (that makes no wake-up) or a wake-up lost to a full buffer.
_MAX_SLEEP = 1.0


def _translate(exc: Exception):
    if isinstance(exc, sqlite3.OperationalError | OSError):
        # locked past the timeout, disk full, I/O error, read-only, cannot open
        return BackendUnavailable(f"SQLite queue: {exc}")
    if isinstance(exc, sqlite3.DatabaseError):
        return BackendError(f"SQLite queue: {exc}")
    return None


_guard = translating(_translate)


def _path_from_url(url: str) -> Path:
    parsed = urlparse(url)
    path = Path(parsed.netloc + parsed.path)
    if not str(path) or str(path) == ".":
        raise ConfigError(f"no file in queue URL {url!r}; e.g. sqlite:///var/lib/imgrec/queue.sqlite3")
    return path


def problems(db: sqlite3.Connection, most: int = 5) -> list[str]:
    """What SQLite's quick check finds wrong with the file ([] if nothing), one line each."""
    found = [line.strip() for row in db.execute(f"PRAGMA quick_check({most})") for line in str(row[0]).splitlines()]
    found = [line for line in found if line and not line.startswith("***")]
    return [] if found == ["ok"] else found


def damaged(path: Path, exc: Exception) -> QueueDamaged:
    return QueueDamaged(
        f"the queue file {path} is damaged ({exc}). Stop imgrec, then run `imgrec queue salvage` with the same "
        "settings: it keeps the damaged file beside it, copies every message it can read into a new one, and says "
        "how many; accepted jobs whose messages are lost are sent again from their pending records"
    )


class SqliteQueue(Queue):
    """All queues share one table of messages; a table of names says which exist."""

    @_guard
    def __init__(self, url: str, name: str, *, create: bool = False, **options) -> None:
        super().__init__(name, **options)
        self.path = _path_from_url(url)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._dead_name = f"{name}.dead"
        self._wake_dir = self.path.with_name(self.path.name + ".wake") / name
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            # Every commit survives a process crash. A send to a lasting queue is also synced
            # (FULL), so what the web tier accepted survives a power loss. Receives, acks and
            # extensions are not (NORMAL): one lost to a power loss only means a redelivery,
            # which workers answer from the store. A later synced commit carries them anyway.
            self._db.execute("PRAGMA synchronous=NORMAL")
            if self.check and (found := problems(self._db, most=2)):
                raise sqlite3.DatabaseError("; ".join(found[:2]))
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            if isinstance(exc, sqlite3.OperationalError):
                raise  # locked, full, unreadable: an outage, not damage
            raise damaged(self.path, exc) from None
        self._waiter: Waiter | None = None
        if create:
            self.create()
        elif not self._exists():
            self._db.close()
            raise QueueMissing(f"queue {name} does not exist (deleted, or never created)")

    def _transaction(self, fn, *, synced: bool = False):
        with self._lock:
            if synced:
                self._db.execute("PRAGMA synchronous=FULL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(self._db)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
                return result
            finally:
                if synced:
                    self._db.execute("PRAGMA synchronous=NORMAL")

    def _exists(self) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM queues WHERE name = ?", (self.name,)).fetchone() is not None

    def durable(self) -> bool:
        return not self.ephemeral  # a lasting queue's sends are committed with synchronous=FULL

    @_guard
    def create(self) -> None:
        self._transaction(
            lambda db: db.execute("INSERT OR IGNORE INTO queues (name) VALUES (?)", (self.name,)), synced=True
        )

    @_guard
    def send(self, body: dict) -> str:
        return self.send_many([body])[0]

    @_guard
    def send_many(self, bodies: list[dict]) -> list[str]:
        rows = [(self.name, json.dumps(b)) for b in bodies]

        def insert(db):
            if db.execute("SELECT 1 FROM queues WHERE name = ?", (self.name,)).fetchone() is None:
                raise QueueMissing(f"queue {self.name} does not exist (deleted)")
            db.execute("INSERT OR REPLACE INTO sent (queue, at) VALUES (?, ?)", (self.name, time.time()))
            return [
                str(db.execute("INSERT INTO messages (queue, body, visible_at) VALUES (?, ?, 0)", row).lastrowid)
                for row in rows
            ]

        ids = self._transaction(insert, synced=not self.ephemeral)
        wake_all(self._wake_dir)
        return ids

    def _take(self, max_messages: int) -> tuple[list[Message], float | None]:
        """Claim up to max_messages; also return when the next in-flight one reappears."""

        def claim(db):
            now = time.time()
            rows = db.execute(
                "SELECT seq, body, receive_count FROM messages "
                "WHERE queue = ? AND visible_at <= ? ORDER BY seq LIMIT ?",
                (self.name, now, max_messages),
            ).fetchall()
            taken = []
            for seq, body, count in rows:
                if count >= self.max_receives:
                    db.execute(
                        "UPDATE messages SET queue = ?, visible_at = 0, receipt = NULL WHERE seq = ?",
                        (self._dead_name, seq),
                    )
                    continue
                receipt = uuid.uuid4().hex
                db.execute(
                    "UPDATE messages SET visible_at = ?, receive_count = ?, receipt = ? WHERE seq = ?",
                    (now + self.visibility_timeout, count + 1, receipt, seq),
                )
                taken.append(Message(str(seq), json.loads(body), receipt, count + 1))
            if taken:
                return taken, None
            (next_visible,) = db.execute(
                "SELECT MIN(visible_at) FROM messages WHERE queue = ?", (self.name,)
            ).fetchone()
            return taken, next_visible

        return self._transaction(claim)

    @_guard
    def receive(self, max_messages: int = 1, wait: float = 0.0) -> list[Message]:
        deadline = time.monotonic() + wait
        if wait > 0 and self._waiter is None:
            self._waiter = Waiter(self._wake_dir)
        while True:
            if self._waiter:
                self._waiter.drain()
            messages, next_visible = self._take(max_messages)
            remaining = deadline - time.monotonic()
            if messages or remaining <= 0 or self._waiter is None:
                return messages
            sleep = min(remaining, _MAX_SLEEP)
            if next_visible is not None:
                sleep = min(sleep, max(0.0, next_visible - time.time()) + 0.001)
            self._waiter.wait(sleep)

    @_guard
    def ack(self, message: Message) -> bool:
        return self._delete([message]) == 1

    @_guard
    def ack_many(self, messages: list[Message]) -> None:
        self._delete(messages)

    def _delete(self, messages: list[Message]) -> int:
        rows = [(int(m.id), m.receipt) for m in messages]
        return self._transaction(
            lambda db: sum(db.execute("DELETE FROM messages WHERE seq = ? AND receipt = ?", r).rowcount for r in rows)
        )

    @_guard
    def extend(self, message: Message, seconds: float) -> bool:
        def update(db):
            return db.execute(
                "UPDATE messages SET visible_at = ? WHERE seq = ? AND receipt = ? AND queue = ?",
                (time.time() + seconds, int(message.id), message.receipt, self.name),
            ).rowcount

        changed = bool(self._transaction(update))
        if changed and seconds <= 0:
            wake_all(self._wake_dir)
        return changed

    @_guard
    def stats(self) -> QueueStats:
        with self._lock:
            now = time.time()
            depth, in_flight = self._db.execute(
                "SELECT COALESCE(SUM(visible_at <= ?), 0), COALESCE(SUM(visible_at > ?), 0) "
                "FROM messages WHERE queue = ?",
                (now, now, self.name),
            ).fetchone()
            (dead,) = self._db.execute("SELECT COUNT(*) FROM messages WHERE queue = ?", (self._dead_name,)).fetchone()
            sent = self._db.execute("SELECT at FROM sent WHERE queue = ?", (self.name,)).fetchone()
        return QueueStats(depth, in_flight, dead, sent[0] if sent else 0.0)

    @_guard
    def receive_dead(self, max_messages: int = 10) -> list[Message]:
        def claim(db):
            rows = db.execute(
                "SELECT seq, body, receive_count FROM messages WHERE queue = ? AND visible_at <= ? "
                "ORDER BY seq LIMIT ?",
                (self._dead_name, time.time(), max_messages),
            ).fetchall()
            taken = []
            for seq, body, count in rows:
                receipt = uuid.uuid4().hex
                db.execute(
                    "UPDATE messages SET visible_at = ?, receipt = ? WHERE seq = ?",
                    (time.time() + self.visibility_timeout, receipt, seq),
                )
                taken.append(Message(str(seq), json.loads(body), receipt, count))
            return taken

        return self._transaction(claim)

    @_guard
    def delete(self) -> None:
        def drop(db):
            db.execute("DELETE FROM messages WHERE queue IN (?, ?)", (self.name, self._dead_name))
            db.execute("DELETE FROM queues WHERE name = ?", (self.name,))
            db.execute("DELETE FROM sent WHERE queue = ?", (self.name,))

        self._transaction(drop)

    def close(self) -> None:
        if self._waiter:
            self._waiter.close()
            self._waiter = None
        with self._lock:
            self._db.close()


# --- a damaged file ---------------------------------------------------------------------


def salvage(url: str) -> tuple[int, int, Path]:
    """Keep the queue file of `url` (and its WAL) beside it as `<name>.damaged-<time>` and
    copy every message it can still read into a new file at its place; returns (messages
    saved, ranges of messages lost, where the damaged file is). Run it with imgrec stopped."""
    path = _path_from_url(url)
    kept = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{path}{suffix}").exists():
            os.replace(f"{path}{suffix}", f"{kept}{suffix}")
    old = sqlite3.connect(f"file:{kept}?mode=ro", uri=True, isolation_level=None)
    new = sqlite3.connect(path, isolation_level=None)
    new.execute("PRAGMA journal_mode=WAL")
    new.executescript(_SCHEMA)
    try:
        for table, columns in (("queues", "name"), ("sent", "queue, at")):
            rows = _readable(old, f"SELECT {columns} FROM {table}")
            marks = ", ".join("?" * len(columns.split(",")))
            new.executemany(f"INSERT OR IGNORE INTO {table} ({columns}) VALUES ({marks})", rows)
        saved, lost = _copy_messages(old, new)
    finally:
        old.close()
        new.close()
    return saved, lost, kept


def job_ids(url: str, name: str) -> set[str]:
    """The job ids named by the messages of queue `name` in the file of `url`, waiting,
    in flight or dead-lettered (after a salvage: which accepted jobs it still holds)."""
    db = sqlite3.connect(f"file:{_path_from_url(url)}?mode=ro", uri=True, isolation_level=None)
    try:
        found = set()
        for queue in (name, f"{name}.dead"):
            for (body,) in _readable(db, "SELECT body FROM messages WHERE queue = ?", (queue,)):
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    found.add(json.loads(body)["job_id"])
        return found
    finally:
        db.close()


def _readable(db: sqlite3.Connection, query: str, args: tuple = ()) -> list[tuple]:
    try:
        return db.execute(query, args).fetchall()
    except sqlite3.DatabaseError:
        return []


_MESSAGE_COLUMNS = "seq, queue, body, visible_at, receive_count, receipt"


def _copy_messages(old: sqlite3.Connection, new: sqlite3.Connection) -> tuple[int, int]:
    """Messages by ranges of their numbers, each range halved where reading it fails, until
    single messages: (copied, unreadable ranges)."""
    highest = max([r[0] or 0 for r in _readable(old, "SELECT MAX(seq) FROM messages")]
                  + [r[0] or 0 for r in _readable(old, "SELECT seq FROM sqlite_sequence WHERE name = 'messages'")]
                  + [0])
    copied = lost = 0
    ranges = [(1, highest)] if highest else []
    while ranges:
        low, high = ranges.pop()
        try:
            rows = old.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE seq BETWEEN ? AND ?", (low, high)).fetchall()
        except sqlite3.DatabaseError:
            if low == high:
                lost += 1
            else:
                middle = (low + high) // 2
                ranges += [(middle + 1, high), (low, middle)]
            continue
        new.executemany(f"INSERT OR IGNORE INTO messages ({_MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", rows)
        copied += len(rows)
    return copied, lost
