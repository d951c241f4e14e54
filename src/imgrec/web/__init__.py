"""The web tier: stores each upload, queues a request, returns the worker's answer.

`app` wires, `routes` answer, `intake` takes uploads in, `results` reads them
back, `replies` is the replica's reply channel, `errors` renders every error;
`limits`, `auth` and `metrics` are pure ASGI middleware.
"""

from __future__ import annotations

import logging
import signal
import sys

from imgrec.queues import request_queue
from imgrec.settings import Settings
from imgrec.stores import open_store

log = logging.getLogger("imgrec.web")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def run_web(settings: Settings) -> None:
    """Entry point of `imgrec web`: uvicorn serving `create_app(settings)`."""
    import setproctitle
    import uvicorn

    from imgrec.web.app import create_app
    from imgrec.web.protocol import with_header_timeout

    setproctitle.setproctitle("imgrec web")
    # A queue or store set up wrong is one clear line here, not a traceback from the app's start.
    open_store(settings.store_url)
    request_queue(settings).close()
    if settings.host not in LOOPBACK and not settings.keys:
        log.warning(
            "listening on %s without API keys: anyone who can reach this address can use the service "
            "(set IMGREC_API_KEYS to require keys)", settings.host,
        )
    # uvicorn shuts down gracefully on SIGTERM/SIGINT and then re-raises the signal
    # to the handler it found: make that a clean exit.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_level="warning",
        timeout_graceful_shutdown=int(settings.request_timeout), timeout_keep_alive=settings.keep_alive,
        access_log=False,
        http=with_header_timeout(settings.header_timeout), proxy_headers=True,
        forwarded_allow_ips=settings.trusted_proxies,
    )
