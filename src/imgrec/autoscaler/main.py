"""`imgrec autoscaler`: the policy loop and its actuator in one process."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable

from imgrec import jobs, logs
from imgrec.actuators import open_actuator
from imgrec.autoscaler.housekeeping import Housekeeping
from imgrec.autoscaler.loop import Autoscaler, ModelCheck, Pool
from imgrec.autoscaler.policy import ScalingConfig
from imgrec.errors import ConfigError
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
    models = settings.served_models
    if len(models) > 1 and settings.actuator not in ("", "local"):
        raise ConfigError(f"several models (IMGREC_MODELS) need the local actuator, not {settings.actuator}")
    if len(models) > 1 and settings.model_dir:
        raise ConfigError("IMGREC_MODEL_DIR names one model's folder; unset it to serve several models (each has its own)")
    queues = {m: request_queue(settings, m) for m in models}
    config = ScalingConfig.from_settings(settings)
    results = jobs.Results(open_store(settings.store_url, settings.backend_timeout), settings.queue_url, settings.backend_timeout)
    chores = Housekeeping(
        queues[models[0]], results, every=max(5.0, settings.visibility_timeout), lost_after=2 * settings.visibility_timeout,
        retention=settings.retention, member_id=f"autoscaler-{socket.gethostname()}-{os.getpid()}",
        others={m: q for m, q in queues.items() if m != models[0]},
    )
    # Only workers started here need a model here; `--max-workers 0` (the housekeeping of
    # a deployment whose workers run elsewhere) starts none.
    local = settings.actuator in ("", "local") and settings.max_workers > 0
    pools = []
    for m in models:
        own = settings.for_model(m)  # each pool's workers serve their model, from its queue
        actuator = open_actuator(settings.actuator, child_env({**os.environ, **worker_settings(own).to_env()}), settings)
        model_check = ModelCheck(own.model_path, results.store, variant=m) if local else None
        pools.append(Pool(m, queues[m], actuator, model_check.problem if model_check else (lambda: ""), checks=model_check))
    first = pools[0]
    scaler = Autoscaler(first.queue, first.actuator, config, settings.poll_interval, chores, first.problem,
                        more=pools[1:], model=first.model)

    def problems() -> tuple[str, str]:
        said = [(p.problem(), p.checks.kind if p.checks else "") for p in pools]
        return "; ".join(x for x, _ in said if x), "; ".join(k for _, k in said if k)

    on_stop_signal(scaler.stop)
    stop_with_parent()
    beat = Presence(results.store, "autoscaler", f"{socket.gethostname()}-{os.getpid()}",
                    lambda: {"counters": _summed(p.actuator.counters for p in pools), "problem": problems()[0],
                             "problem_kind": problems()[1]}).start()
    with logs.lifetime(log, "autoscaler", workers=f"{config.min_workers}..{config.max_workers}",
                       per_worker=config.target_per_worker, actuator=settings.actuator) as said:
        try:
            scaler.run()
        finally:
            for p in pools:
                p.actuator.shutdown(timeout=settings.visibility_timeout)
            beat.stop("stopped")
            chores.clock.forget()
            results.close()
            for q in queues.values():
                q.close()
            said.update(_summed(p.actuator.counters for p in pools))


def _summed(counters: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for each in counters:
        for k, n in each.items():
            total[k] = total.get(k, 0) + n
    return total
