"""`/api/v1/status` says which problem keeps the service from its work, and where only to
callers with a key: a path or an address is for the operator, not for anyone who asks."""

from __future__ import annotations

import time

from imgrec.messages import Heartbeat, dumps

DETAIL = "workers cannot start: no model in /srv/imgrec/secret/model; pull a pushed one with: imgrec model pull"


def _beats(store) -> None:
    now = time.time()
    for beat in (
        Heartbeat("a1", "autoscaler", last_seen=now, problem=DETAIL, problem_kind="workers cannot start: no model"),
        Heartbeat("w1", "worker", "waiting", last_seen=now, problem="no model in /srv/imgrec/secret/model"),  # an older one
    ):
        store.put(beat.key, dumps(beat.to_dict()))


def test_without_keys_the_problems_name_no_path(make_web):
    web = make_web(worker=False)
    _beats(web.store)
    problems = web.client.get("/api/v1/status").json()["problems"]
    assert problems == ["a worker reports a problem (see imgrec status)", "workers cannot start: no model"]
    assert "/srv" not in web.client.get("/api/v1/status").text and "/srv" not in web.client.get("/metrics").text


def test_callers_with_a_key_see_where(make_web):
    web = make_web(worker=False, api_keys="k1")
    _beats(web.store)
    assert web.client.get("/api/v1/status").status_code == 401
    problems = web.client.get("/api/v1/status", headers={"X-API-Key": "k1"}).json()["problems"]
    assert DETAIL in problems
