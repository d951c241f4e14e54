"""Heartbeats in the store: who runs, who stopped, and the retired record."""

from __future__ import annotations

import os
import subprocess
import time
import uuid

from imgrec import presence
from imgrec.lab.harness import wait_until
from imgrec.messages import Heartbeat, dumps, heartbeat_key
from imgrec.stores import open_store


def _store():
    return open_store(f"memory://{uuid.uuid4().hex}")


def test_a_member_beats_and_stops():
    store = _store()
    p = presence.Presence(store, "worker", "w1", lambda: {"completed": 7}).start()
    (beat,) = presence.read(store, "worker")
    assert beat.id == "w1" and beat.pid > 0 and beat.host and presence.is_alive(beat)
    p.stop("stopped")
    (beat,) = presence.read(store, "worker")
    assert beat.state == "stopped" and beat.completed == 7 and not presence.is_alive(beat)
    web = presence.Presence(store, "web", "replies-abc").start()
    web.stop(None)
    assert presence.read(store, "web") == []


def test_a_silent_member_is_not_alive():
    beat = Heartbeat("w", "worker", last_seen=time.time() - 60)
    assert not presence.is_alive(beat)


def test_stopped_workers_are_folded_into_one_record():
    store = _store()
    old = time.time() - 3600
    for i, state in enumerate(["stopped", "stopped", "running"]):
        beat = Heartbeat(f"w{i}", "worker", state, last_seen=old if i < 2 else time.time(), completed=10 * (i + 1),
                         batch_sizes={"4": i + 1}, stage_seconds={"inference": 1.0},
                         stage_histograms={"inference": {"0.01": 2, "+Inf": 1, "sum": 1.0}})
        store.put(beat.key, dumps(beat.to_dict()))
    before = sum(w.completed for w in presence.read(store, "worker"))
    assert presence.compact(store) == 2
    after = presence.read(store, "worker")
    assert sorted(w.id for w in after) == ["_retired", "w2"]
    assert sum(w.completed for w in after) == before == 60
    assert sum(presence.is_alive(w) for w in after) == 1
    retired = next(w for w in after if w.id == "_retired")
    assert retired.batch_sizes == {"4": 3} and retired.stage_seconds == {"inference": 2.0}
    assert retired.stage_histograms == {"inference": {"0.01": 4, "+Inf": 2, "sum": 2.0}}, "histograms survive too"
    assert presence.compact(store) == 0


def test_a_replica_record_of_the_previous_version_is_read():
    store = _store()
    store.put(heartbeat_key("web", "replies-old"), dumps({"queue": "replies-old", "last_seen": 5.0}))
    (beat,) = presence.read(store, "web")
    assert beat.id == "replies-old" and beat.role == "web" and beat.last_seen == 5.0


def test_process_alive_says_no_for_a_zombie_or_no_process():
    child = subprocess.Popen(["sleep", "0"])
    wait_until(lambda: not presence.process_alive(child.pid), 10, 0.02, "the child to exit (a zombie until reaped)")
    assert child.poll() == 0 and not presence.process_alive(child.pid)
    assert presence.process_alive(os.getpid()) and not presence.process_alive(2**22 + 1)


def test_totals_sum_the_workers_histograms_and_name_their_models():
    now = time.time()
    beats = [
        Heartbeat("w1", last_seen=now, model="efficientnet-lite0@abc", model_variant="lite0",
                  stage_histograms={"decode": {"0.005": 3, "0.01": 1, "sum": 0.02}}),
        Heartbeat("w2", last_seen=now, model="efficientnet-lite0@abc", model_variant="lite0",
                  stage_histograms={"decode": {"0.005": 1, "+Inf": 1, "sum": 12.0}, "inference": {"0.05": 2, "sum": 0.06}}),
        Heartbeat("w3", state="stopped", last_seen=now, model="efficientnet-lite0-int8@def", model_variant="lite0-int8"),
    ]
    assert presence.totals(beats).stage_histograms == {
        "decode": {"0.005": 4, "0.01": 1, "+Inf": 1, "sum": 12.02}, "inference": {"0.05": 2, "sum": 0.06},
    }
    assert presence.models(beats) == [{"name": "efficientnet-lite0", "version": "abc", "variant": "lite0", "workers": 2}]
