"""The actuator: its port (`base`) and the adapters: ``local`` worker processes,
``asg://group`` (EC2 Auto Scaling)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imgrec.actuators.base import Actuator

__all__ = ["Actuator", "open_actuator"]
from imgrec.errors import ConfigError

if TYPE_CHECKING:
    from imgrec.settings import Settings


def open_actuator(url: str, worker_env: dict[str, str] | None = None, settings: Settings | None = None) -> Actuator:
    """`local` (or empty): worker processes on this machine, started with `worker_env`;
    ``asg://group``: the desired capacity of an EC2 Auto Scaling group."""
    if url in ("", "local"):
        from imgrec.actuators.local import LocalActuator, host_capacity

        if settings is None:
            return LocalActuator(env=worker_env)
        return LocalActuator(worker_env, host_capacity(settings.intra_op_threads), settings.hung_after)
    if url.startswith("asg://"):
        from imgrec.actuators.asg import AsgActuator

        return AsgActuator(url)
    raise ConfigError(f"unknown actuator {url!r}: supported are local and asg://<group>")
