"""The SQLite queue syncs to disk exactly the commits a power loss must not undo.

A send to a lasting queue (what the web tier accepted) is committed under
synchronous=FULL; receives, acks and sends to an ephemeral queue (replies) are not,
since losing one only means a redelivery or a reply nobody is left waiting for.
"""

from __future__ import annotations

from imgrec.queues.sqlite import SqliteQueue


def _statements(q: SqliteQueue) -> list[str]:
    seen: list[str] = []
    q._db.set_trace_callback(seen.append)
    return seen


def _synced_commits(statements: list[str]) -> tuple[int, int]:
    """(commits made under FULL, all commits)."""
    level, synced, commits = "NORMAL", 0, 0
    for s in statements:
        if s.startswith("PRAGMA synchronous="):
            level = s.split("=", 1)[1]
        elif s == "COMMIT":
            commits += 1
            synced += level == "FULL"
    return synced, commits


def test_sends_to_a_lasting_queue_are_synced_the_rest_not(tmp_path):
    q = SqliteQueue(f"sqlite://{tmp_path}/q.sqlite3", "requests", create=True)
    seen = _statements(q)
    q.send_many([{"n": 1}, {"n": 2}])
    assert _synced_commits(seen) == (1, 1)
    seen.clear()
    taken = q.receive(2)
    q.extend(taken[0], 5)
    q.ack_many(taken)
    assert _synced_commits(seen) == (0, 3)
    assert q._db.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL between commits
    q.close()


def test_sends_to_an_ephemeral_queue_are_not_synced(tmp_path):
    q = SqliteQueue(f"sqlite://{tmp_path}/q.sqlite3", "replies-x", create=True, ephemeral=True)
    seen = _statements(q)
    q.send({"n": 1})
    assert _synced_commits(seen) == (0, 1)
    q.close()
