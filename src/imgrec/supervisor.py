"""`imgrec up`: the web tier and the autoscaler (which runs the workers) as child
processes of one small supervisor, started and stopped together.

Each part is its own process and meets the others only through the store and the
queue; the children get this process's settings through their environment.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO

from imgrec import logs, presence
from imgrec.errors import BackendError, ModelMissing
from imgrec.messages import Heartbeat, request_queue_name
from imgrec.presence import Presence
from imgrec.queues import request_queue
from imgrec.settings import Settings
from imgrec.stopping import child_env, on_stop_signal
from imgrec.stores import ObjectStore, open_store

log = logging.getLogger("imgrec")


def init_backends(settings: Settings) -> list[str]:
    """Create what a deployment needs and does not have yet (bucket, queues); idempotent."""
    open_store(settings.store_url).create()
    names = []
    for model in settings.served_models:
        request_queue(settings, model).close()
        names.append(request_queue_name(model, settings.default_model))
    return [
        f"store ready: {settings.store_url}",
        f"queue ready: {settings.queue_url} ({', '.join(names)} and {'its' if len(names) == 1 else 'their'} dead-letter queue"
        f"{'' if len(names) == 1 else 's'})",
    ]


def answers(url: str, path: str = "/healthz") -> bool:
    """Whether the web tier at `url` answers `path` with a 2xx now."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + path, timeout=1):
            return True
    except OSError:  # refused, timed out, or an error status
        return False


def cannot_listen(host: str, port: int) -> OSError | None:
    """Why the web tier could not listen on host:port now, or None. Each address the host
    names is tried, as uvicorn's server binds them all (e.g. 127.0.0.1 and ::1)."""
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                                  flags=socket.AI_PASSIVE):
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as asyncio binds
                probe.bind(address)
    except OSError as exc:
        return exc
    return None


def another_up_here(store) -> Heartbeat | None:
    """A live `imgrec up` on this host over the same store: a second one would run a second
    set of workers on the same cores (and, on the embedded parts, the same queue)."""
    host, now = socket.gethostname(), time.time()
    for beat in presence.read(store, "supervisor"):
        if beat.host == host and beat.pid != os.getpid() and presence.is_alive(beat, now) and presence.process_alive(beat.pid):
            return beat
    return None


def lock_up_here(store_url: str) -> tuple[IO | None, str]:
    """A lock on this host for `imgrec up` over this store, held until the process ends
    (the kernel lets go even on SIGKILL): two started at the same moment cannot both
    pass, as they could by heartbeats alone (one is written once the first is running).
    Returns the open lock file, or None and the pid that holds it ("" where the lock
    cannot be made, e.g. a /tmp file of another user: the heartbeats then decide)."""
    name = f"imgrec-up-{hashlib.sha256(store_url.encode()).hexdigest()[:16]}.lock"
    try:
        lock = open(Path(tempfile.gettempdir()) / name, "a+")  # noqa: SIM115 (held while `up` runs)
    except OSError:
        return None, ""
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        return None, holder
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock, ""


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if answers(url):
            return True
        time.sleep(0.1)
    return False


def _model(settings: Settings) -> None:
    """The model here, pulled from the store, or built (with the export extra). Without one,
    the service still starts: the autoscaler says what is missing, and starts workers once
    a model is pushed."""
    from imgrec.engine import registry
    from imgrec.engine.model import build

    for model in settings.served_models:
        own = settings.for_model(model)
        try:
            registry.obtain(own.model_path, open_store(settings.store_url), model)
        except (ModelMissing, BackendError):
            try:
                build(own.model_path, variant=model)
            except ModelMissing as exc:
                log.error("no model: %s", exc)


RESTART_MAX_DELAY = 30.0
STEADY = 30.0  # a child that ran this long before it died was not crash-looping


class Child:
    """One supervised part: restarted when it dies, after a delay that doubles while it
    keeps dying soon after its start."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name, self.env = name, env
        self.restarts, self._quick = 0, 0
        self._restart_at: float | None = None
        self.proc = self._start()

    def _start(self) -> subprocess.Popen:
        self.started = time.monotonic()
        return subprocess.Popen([sys.executable, "-m", "imgrec", self.name], env=self.env)

    def look_after(self) -> None:
        now = time.monotonic()
        if self._restart_at is not None:
            if now >= self._restart_at:
                self._restart_at, self.restarts = None, self.restarts + 1
                self.proc = self._start()
                log.warning("restarted %s (pid %d)", self.name, self.proc.pid)
            return
        if self.proc.poll() is None:
            return
        self._quick = self._quick + 1 if now - self.started < STEADY else 0
        delay = min(RESTART_MAX_DELAY, 2.0 ** (self._quick - 1)) if self._quick else 0.5
        log.error("%s exited (status %s); restarting it in %.1fs", self.name, self.proc.returncode, delay)
        self._restart_at = now + delay

    def stop(self) -> None:
        self._restart_at = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)


def _port_taken(settings: Settings) -> str:
    """Why the web tier cannot listen where it should ("" if it can)."""
    if (why := cannot_listen(settings.host, settings.port)) is None:
        return ""
    # Not a web tier restarted in a loop beside whatever holds the port (e.g. the
    # children of an `imgrec up` killed with SIGKILL, until they notice).
    hint = (
        "Is another imgrec up, or another program, using it? Stop it, or choose another port (--port, IMGREC_PORT)."
        if why.errno == errno.EADDRINUSE else "Check IMGREC_HOST (--host)."
    )
    return f"cannot listen on {settings.host}:{settings.port}: {why.strerror or why}. {hint}"


def _another_up(settings: Settings, store: ObjectStore) -> tuple[str, IO | None]:
    """Why a second `imgrec up` must not start here ("" if none runs), and the host lock
    this one then holds until it ends."""
    lock, holder = lock_up_here(settings.store_url)
    if not holder and (other := another_up_here(store)) is not None:  # the store spelt another way, another /tmp
        holder = str(other.pid)
    if not holder:
        return "", lock
    return (
        f"another imgrec up (pid {holder}) already runs on this host with the store {settings.store_url}: a "
        "second one would start a second set of workers on the same cores. Stop it first; to add a web replica "
        "to it, run `imgrec web --port <another port>` with the same settings; for a separate service, another "
        "IMGREC_DATA_DIR."
    ), lock


def run_up(settings: Settings) -> int:
    """Web tier + autoscaler as child processes, each restarted if it dies; Ctrl-C or
    SIGTERM stops everything."""
    import setproctitle

    setproctitle.setproctitle("imgrec up")
    if refusal := _port_taken(settings):
        log.error("%s", refusal)
        return 1
    init_backends(settings)
    store = open_store(settings.store_url)
    refusal, lock = _another_up(settings, store)  # the lock is held until this function returns
    if refusal:
        log.error("%s", refusal)
        return 1
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    url = f"http://{host}:{settings.port}/"
    with logs.lifetime(log, "up", url=url, store=logs.redact(settings.store_url), queue=logs.redact(settings.queue_url),
                       workers=f"{settings.min_workers}..{settings.max_workers}") as said:
        said["restarts"] = _supervise(settings, store, url)
    return 0


def _supervise(settings: Settings, store: ObjectStore, url: str) -> int:
    """The children, looked after until a stop signal; how many times they were restarted."""
    _model(settings)  # once, before any worker looks for it
    env = child_env({**os.environ, **settings.to_env()})
    children = [Child("web", env), Child("autoscaler", env)]

    def counters() -> dict:
        return {"counters": {f"{c.name}_restarts": c.restarts for c in children}}

    beat = Presence(store, "supervisor", f"{socket.gethostname()}-{os.getpid()}", counters)
    beat.start()
    stop = threading.Event()
    on_stop_signal(stop.set)
    # For a person at a terminal; a log pipeline (IMGREC_LOG_FORMAT=json) has the start line.
    person = settings.log_format == "text"
    if _wait_healthy(url, children[0].proc) and person:
        print(f"imgrec is up: open {url}  (store {settings.store_url}, queue {settings.queue_url}; Ctrl-C stops)",
              flush=True)
    while not stop.wait(0.5):
        for child in children:
            child.look_after()
    _stop_all(children, settings.visibility_timeout + 5)
    beat.stop("stopped")
    if person:
        print("imgrec stopped", flush=True)
    return sum(c.restarts for c in children)


def _stop_all(children: list[Child], timeout: float) -> None:
    """SIGTERM to each, then SIGKILL to any still running after `timeout` seconds."""
    for child in children:
        child.stop()
    deadline = time.monotonic() + timeout
    for child in children:
        try:
            child.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait()
