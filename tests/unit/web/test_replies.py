"""The reply listener of a replica: it survives errors nobody expected, and the replica
says it is not ready while its listener cannot listen."""

from __future__ import annotations

import threading

import pytest

from images import chelsea, encode
from imgrec.lab.harness import wait_until
from imgrec.web.replies import ReplyListener


@pytest.fixture
def failing_listener(monkeypatch):
    """Every look of the reply listener at its queue raises RuntimeError until `release` is set."""
    release = threading.Event()
    listen = ReplyListener._listen_once

    def broken(self) -> None:
        if not release.is_set():
            raise RuntimeError("a bug nobody expected")
        listen(self)

    monkeypatch.setattr(ReplyListener, "_listen_once", broken)
    return release


def test_not_ready_while_the_reply_listener_fails_then_it_listens_again(failing_listener, make_web, caplog):
    web = make_web()
    wait_until(lambda: web.client.get("/readyz").status_code == 503, 10, 0.02, "not ready")
    assert "reply listener is not running" in web.client.get("/readyz").json()["detail"]
    failing_listener.set()
    wait_until(lambda: web.client.get("/readyz").status_code == 200, 30, 0.05, "ready again")
    r = web.client.post("/", files={"myfile": ("cat.png", encode(chelsea(), "PNG"), "image/png")})
    assert (r.status_code, r.text) == (200, "cat:tiger cat")
    assert 'imgrec_replies_total{source="queue"} 1.0' in web.client.get("/metrics").text, "through the reply queue"
    assert any("failed unexpectedly" in rec.getMessage() and rec.exc_info for rec in caplog.records)
