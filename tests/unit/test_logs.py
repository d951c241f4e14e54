"""How processes log: text or one JSON object a line, the libraries' INFO chatter kept
down, one line as a process starts and one as it stops."""

from __future__ import annotations

import json
import logging

import pytest

from imgrec import logs


@pytest.fixture
def restored():
    """The root logger as it was before a test configures it."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:], level = saved
    root.setLevel(level)


def test_json_lines_carry_the_message_its_fields_and_the_traceback(restored, capsys):
    logs.configure("json")
    log = logging.getLogger("imgrec.test")
    log.info("GET %s 200", "/healthz", extra={"route": "/healthz", "status": 200, "job_ids": ["a" * 32]})
    try:
        raise ZeroDivisionError("a bug")
    except ZeroDivisionError:
        log.exception("it failed")
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert {k: first[k] for k in ("level", "logger", "message", "route", "status", "job_ids")} == {
        "level": "info", "logger": "imgrec.test", "message": "GET /healthz 200", "route": "/healthz", "status": 200,
        "job_ids": ["a" * 32],
    }
    assert first["time"].endswith("+00:00") and isinstance(first["pid"], int)
    assert second["level"] == "error" and "ZeroDivisionError: a bug" in second["traceback"]


def test_text_stays_text(restored, capsys):
    logs.configure("text")
    logging.getLogger("imgrec.test").info("hello", extra={"route": "/"})
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith(" imgrec.test INFO hello")


def test_botocore_and_httpx_say_only_warnings(restored):
    logs.configure("text")
    for name in ("botocore.credentials", "boto3", "httpx", "urllib3.connectionpool"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert logging.getLogger(name).isEnabledFor(logging.WARNING), name


def test_a_process_s_life_is_two_lines(caplog):
    caplog.set_level(logging.INFO)
    log = logging.getLogger("imgrec.test")
    with logs.lifetime(log, "worker", id="w-1") as said:
        said["images"] = 12
    start, stop = caplog.records
    assert (start.event, start.part, start.id) == ("start", "worker", "w-1") and "worker started (pid" in start.getMessage()
    assert (stop.event, stop.part, stop.images) == ("stop", "worker", 12) and "worker stopped after" in stop.getMessage()
    with pytest.raises(RuntimeError), logs.lifetime(log, "web"):
        raise RuntimeError("no store")
    assert "web stopped by RuntimeError: no store after" in caplog.records[-1].getMessage()


def test_passwords_are_not_shown():
    assert logs.redact("redis://:s3cret@redis.internal:6379/0?prefix=x") == "redis://:***@redis.internal:6379/0?prefix=x"
    assert logs.redact("s3://bucket/prefix") == "s3://bucket/prefix"
