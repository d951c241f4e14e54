"""Running the parts as processes: `web`, `autoscaler` and `up` (both, supervised).

Each part is its own process and meets the others only through the store and the
queue; `up` is a small supervisor that starts them and stops them together.
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

from imgrec.settings import Settings

log = logging.getLogger("imgrec")


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def run_web(settings: Settings) -> None:
    import setproctitle
    import uvicorn

    from imgrec.web.app import create_app

    setproctitle.setproctitle("imgrec web")
    if settings.host not in ("127.0.0.1", "localhost", "::1") and not settings.api_keys.strip():
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
        timeout_graceful_shutdown=int(settings.request_timeout), access_log=False,
    )


def worker_idle_timeout(settings: Settings) -> float:
    """Workers under an autoscaler outlive its scale-in delay, so that it, not they, decides;
    they still stop by themselves if the autoscaler is gone."""
    return settings.scale_in_delay + 10.0


def run_autoscaler(settings: Settings) -> None:
    import setproctitle

    from imgrec import connect
    from imgrec.actuator import open_actuator
    from imgrec.autoscaler.loop import Autoscaler
    from imgrec.autoscaler.policy import ScalingConfig
    from imgrec.outputs import Publisher

    setproctitle.setproctitle("imgrec autoscaler")
    queue = connect.request_queue(settings)
    actuator = open_actuator(settings.actuator, ["--idle-timeout", str(worker_idle_timeout(settings))])
    config = ScalingConfig(
        settings.min_workers, settings.max_workers, settings.target_per_worker, settings.scale_in_delay
    )
    publisher = Publisher(settings.queue_url, connect.store(settings))
    scaler = Autoscaler(queue, actuator, config, settings.poll_interval, publisher)
    signal.signal(signal.SIGTERM, scaler.stop)
    signal.signal(signal.SIGINT, scaler.stop)
    log.info("autoscaler: %d..%d workers, %d messages per worker", config.min_workers, config.max_workers, config.target_per_worker)
    try:
        scaler.run()
    finally:
        actuator.shutdown(timeout=settings.visibility_timeout)
        queue.close()


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "healthz", timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def run_up(settings: Settings, env_overrides: dict[str, str]) -> int:
    """Web tier + autoscaler as child processes; Ctrl-C or SIGTERM stops everything."""
    import setproctitle

    from imgrec import connect
    from imgrec.model import build

    setproctitle.setproctitle("imgrec up")
    build(settings.model_path)  # once, before any worker looks for it
    for line in connect.init(settings):
        log.info(line)
    env = {**os.environ, **env_overrides}
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
