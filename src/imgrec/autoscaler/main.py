"""`imgrec autoscaler`: the policy loop and its actuator in one process."""

from __future__ import annotations

import logging
import os
import socket

from imgrec import jobs, logs
from imgrec.actuators import open_actuator
from imgrec.autoscaler.housekeeping import Housekeeping
from imgrec.autoscaler.loop import Autoscaler, ModelCheck
from imgrec.autoscaler.policy import ScalingConfig
from imgrec.presence import Presence
from imgrec.queues import request_queue
from imgrec.settings import Settings
from imgrec.stopping import child_env, on_stop_signal, stop_with_parent
from imgrec.stores import open_store

log = logging.getLogger("imgrec.autoscaler")
# Workers under an autoscaler outlive its scale-in delays, so that it, not they, decides;
# they still stop by themselves if the autoscaler is gone. It watches them itself (their
# heartbeats and loops): they touch no live file, which is for a worker a probe watches.
WORKER_IDLE_MARGIN = 10.0


def worker_settings(settings: Settings) -> Settings:
    longest = max(settings.scale_in_delay, settings.scale_to_zero_delay)
    return settings.with_overrides(worker_idle_timeout=longest + WORKER_IDLE_MARGIN, live_file="")


def run_autoscaler(settings: Settings) -> None:
    import setproctitle

    setproctitle.setproctitle("imgrec autoscaler")
    queue = request_queue(settings)
    actuator = open_actuator(settings.actuator, child_env({**os.environ, **worker_settings(settings).to_env()}), settings)
    config = ScalingConfig.from_settings(settings)
    results = jobs.Results(open_store(settings.store_url, settings.backend_timeout), settings.queue_url, settings.backend_timeout)
    chores = Housekeeping(
        queue, results, every=max(5.0, settings.visibility_timeout), lost_after=2 * settings.visibility_timeout,
        retention=settings.retention, member_id=f"autoscaler-{socket.gethostname()}-{os.getpid()}",
    )
    # Only workers started here need a model here; `--max-workers 0` (the housekeeping of
    # a deployment whose workers run elsewhere) starts none.
    local = settings.actuator in ("", "local") and settings.max_workers > 0
    model_check = ModelCheck(settings.model_path, results.store, variant=settings.model) if local else None
    check = model_check.problem if model_check else (lambda: "")
    scaler = Autoscaler(queue, actuator, config, settings.poll_interval, chores, check)
    on_stop_signal(scaler.stop)
    stop_with_parent()
    beat = Presence(results.store, "autoscaler", f"{socket.gethostname()}-{os.getpid()}",
                    lambda: {"counters": dict(actuator.counters), "problem": check(),
                             "problem_kind": model_check.kind if model_check else ""}).start()
    with logs.lifetime(log, "autoscaler", workers=f"{config.min_workers}..{config.max_workers}",
                       per_worker=config.target_per_worker, actuator=settings.actuator) as said:
        try:
            scaler.run()
        finally:
            actuator.shutdown(timeout=settings.visibility_timeout)
            beat.stop("stopped")
            chores.clock.forget()
            results.close()
            queue.close()
            said.update(actuator.counters)
