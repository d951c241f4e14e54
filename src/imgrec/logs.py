"""How every imgrec process logs: lines for a person, or one JSON object a line for a log
pipeline (IMGREC_LOG_FORMAT); the libraries' chatter kept down; and one line when a
process starts and one when it stops (`lifetime`), so that an operator can tell from the
log alone what ran, when, and for how long.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
# Libraries whose INFO lines say nothing an operator needs: httpx a line per request,
# botocore "Found credentials in environment variables" in every process.
QUIETED = ("httpx", "httpcore", "botocore", "boto3", "s3transfer", "urllib3")
# What a LogRecord has of its own: anything else on a record came as `extra=` and is a field.
_OWN = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, pid, the
    fields given as `extra=`, and the traceback of an exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        line.update((k, v) for k, v in vars(record).items() if k not in _OWN)
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class _Stderr(logging.StreamHandler):
    """Lines to sys.stderr as it is when each is written (a test harness may swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure(log_format: str = "text") -> None:
    """This process's logging: INFO and above on stderr, as text or JSON. Configured again
    (another command in the same process), it replaces its own handler and no other."""
    handler = _Stderr()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _Stderr)] + [handler]
    root.setLevel(logging.INFO)
    for name in QUIETED:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)  # Python's warnings as log lines too, in the same format


@contextmanager
def lifetime(log: logging.Logger, part: str, **facts: Any) -> Iterator[dict[str, Any]]:
    """One line as a process (`part`: up, web, worker, autoscaler) starts, with `facts`, and
    one as it stops, with how long it ran and what the caller put in the dict it is given
    (e.g. images done), or the exception that ended it."""
    started = time.monotonic()
    said: dict[str, Any] = {}
    log.info("%s started (pid %d): %s", part, os.getpid(), _facts(facts), extra={"event": "start", "part": part, **facts})
    ended = "stopped"
    try:
        yield said
    except BaseException as exc:
        ended = f"stopped by {type(exc).__name__}: {exc}" if not isinstance(exc, SystemExit | KeyboardInterrupt) else ended
        raise
    finally:
        seconds = round(time.monotonic() - started, 1)
        log.info("%s %s after %.1f s%s", part, ended, seconds, f": {_facts(said)}" if said else "",
                 extra={"event": "stop", "part": part, "seconds": seconds, **said})


def redact(url: str) -> str:
    """A URL without its password (redis://:secret@host -> redis://:***@host), to be shown."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


def _facts(facts: dict[str, Any]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in facts.items())
