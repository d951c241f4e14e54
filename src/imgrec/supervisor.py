"""`imgrec up`: the web tier and the autoscaler (which runs the workers) as child
processes of one small supervisor, started and stopped together.

Each part is its own process and meets the others only through the store and the
queue; the children get this process's settings through their environment.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

from imgrec.engine.model import build
from imgrec.messages import REQUEST_QUEUE
from imgrec.queues import request_queue
from imgrec.settings import Settings
from imgrec.stores import open_store

log = logging.getLogger("imgrec")


def init_backends(settings: Settings) -> list[str]:
    """Create what a deployment needs and does not have yet (bucket, queues); idempotent."""
    open_store(settings.store_url).create()
    request_queue(settings).close()
    return [
        f"store ready: {settings.store_url}",
        f"queue ready: {settings.queue_url} ({REQUEST_QUEUE} and its dead-letter queue)",
    ]


def answers(url: str, path: str = "/healthz") -> bool:
    """Whether the web tier at `url` answers `path` with a 2xx now."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + path, timeout=1):
            return True
    except OSError:  # refused, timed out, or an error status
        return False


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if answers(url):
            return True
        time.sleep(0.1)
    return False


def run_up(settings: Settings) -> int:
    """Web tier + autoscaler as child processes; Ctrl-C or SIGTERM stops everything."""
    import setproctitle

    setproctitle.setproctitle("imgrec up")
    build(settings.model_path)  # once, before any worker looks for it
    for line in init_backends(settings):
        log.info(line)
    env = {**os.environ, **settings.to_env()}
    python = [sys.executable, "-m", "imgrec"]
    children = {
        "web": subprocess.Popen([*python, "web"], env=env),
        "autoscaler": subprocess.Popen([*python, "autoscaler"], env=env),
    }
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    url = f"http://{host}:{settings.port}/"
    if _wait_healthy(url, children["web"]):
        print(f"imgrec is up: open {url}  (data in {settings.data_dir}; Ctrl-C stops)", flush=True)
    code = 0
    while not stop.wait(0.5):
        dead = [name for name, p in children.items() if p.poll() is not None]
        if dead:
            log.error("%s exited (status %s); stopping", dead[0], children[dead[0]].returncode)
            code = 1
            break
    for p in children.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + settings.visibility_timeout + 5
    for p in children.values():
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    print("imgrec stopped", flush=True)
    return code
