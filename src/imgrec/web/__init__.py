"""The web tier: stores each upload, queues a request, returns the worker's answer.

`app` wires, `routes` answer, `intake` takes uploads in, `results` reads them
back, `replies` is the replica's reply channel, `errors` renders every error;
`limits`, `auth` and `metrics` are pure ASGI middleware.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Mapping

from imgrec.queues import request_queue
from imgrec.settings import Settings
from imgrec.stopping import stop_with_parent
from imgrec.stores import open_store

log = logging.getLogger("imgrec.web")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _take_the_open_files_limit() -> None:
    """Each kept connection holds a file descriptor for up to `keep_alive` seconds: raise
    the soft limit (often 1024) to the hard one, so that a thousand idle clients do not
    lock new ones out (as nginx's worker_rlimit_nofile, or Go's runtime, do)."""
    try:
        import resource
    except ImportError:  # not a Unix
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # e.g. an unlimited hard limit the kernel caps lower
            log.warning("open files stay limited to %d (raising it to %s failed: %s)", soft, hard, exc)


def key_warnings(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """What an operator should hear about the service's keys as it starts."""
    said = []
    if environ.get("IMGREC_API_KEY") and not settings.keys:  # one letter from the service's own variable
        said.append("IMGREC_API_KEY is a client's key: this service reads its keys from IMGREC_API_KEYS, which is not "
                    "set, so it asks for none")
    if settings.host not in LOOPBACK and not settings.keys:
        said.append(f"listening on {settings.host} without API keys: anyone who can reach this address can use the "
                    "service (set IMGREC_API_KEYS to require keys)")
    return said


def run_web(settings: Settings) -> None:
    """Entry point of `imgrec web`: uvicorn serving `create_app(settings)`."""
    import setproctitle
    import uvicorn

    from imgrec.web.app import create_app
    from imgrec.web.protocol import with_header_limits

    setproctitle.setproctitle("imgrec web")
    _take_the_open_files_limit()
    # A queue or store set up wrong is one clear line here, not a traceback from the app's start.
    open_store(settings.store_url)
    for model in settings.served_models:
        request_queue(settings, model).close()
    for warning in key_warnings(settings, os.environ):
        log.warning("%s", warning)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT and then re-raises the signal
    # to the handler it found: make that a clean exit.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    stop_with_parent()
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_level="warning",
        timeout_graceful_shutdown=int(settings.request_timeout), timeout_keep_alive=settings.keep_alive,
        access_log=False,  # imgrec's own access lines (web.metrics) name the route, not the raw path
        log_config=None,  # uvicorn's lines through this process's own logging (IMGREC_LOG_FORMAT)
        http=with_header_limits(settings.header_timeout, settings.max_header_bytes), proxy_headers=True,
        forwarded_allow_ips=settings.trusted_proxies,
    )
