"""Actuator adapters: ``local`` worker processes, ``asg://group`` (EC2 Auto Scaling)."""

from __future__ import annotations

from imgrec.actuator import Actuator
from imgrec.errors import ConfigError


def open_actuator(url: str, worker_env: dict[str, str] | None = None) -> Actuator:
    """`local` (or empty): worker processes on this machine, started with `worker_env`;
    ``asg://group``: the desired capacity of an EC2 Auto Scaling group."""
    if url in ("", "local"):
        from imgrec.actuators.local import LocalActuator

        return LocalActuator(env=worker_env)
    if url.startswith("asg://"):
        from imgrec.actuators.asg import AsgActuator

        return AsgActuator(url)
    raise ConfigError(f"unknown actuator {url!r}: supported are local and asg://<group>")
