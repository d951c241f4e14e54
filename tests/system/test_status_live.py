"""`imgrec status` of a live deployment, as an operator runs it while things happen: a web
replica killed outright shows as silent within seconds, and a live one never does."""

from __future__ import annotations

import os
import signal
import time

from imgrec.lab.harness import WebPart, service_env, wait_until
from imgrec.ops.status import gather
from imgrec.settings import Settings

SILENT_WITHIN = 8.0  # seconds after the kill (the replica beats every 2 s; silent after 3 missed beats)


def test_a_killed_web_replica_is_silent_within_seconds_and_a_live_one_never(tmp_path, model_dir):
    web = WebPart(tmp_path / "web.log", service_env(tmp_path, model_dir))
    settings = Settings(data_dir=tmp_path)

    def replica() -> dict:
        (member,) = gather(settings)["web"]
        return member

    try:
        seen = [replica()]
        # Two beats more (a second or more apart: each look measures the store's clock
        # afresh, by milliseconds), looked at by status as they come: running all along.
        for _ in range(2):
            seen.append(wait_until(lambda: (m := replica())["last_seen"] > seen[-1]["last_seen"] + 1 and m, 30, 0.2,
                                   "the replica's next heartbeat"))
        assert {m["state"] for m in seen} == {"running"}
        os.kill(web.proc.pid, signal.SIGKILL)  # no goodbye: its heartbeat just stops
        killed = time.monotonic()
        wait_until(lambda: replica()["state"] == "silent", SILENT_WITHIN, 0.2, "status to call the killed replica silent")
        assert time.monotonic() - killed < SILENT_WITHIN
    finally:
        web.stop()
