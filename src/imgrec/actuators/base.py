"""The actuator port: makes the number of running workers equal to the desired one.

It holds no policy. `reconcile` is called every tick; it also replaces workers
that died, since a crashed worker simply makes `running` fall below `desired`.
Adapters live beside it in `imgrec.actuators` (`open_actuator` picks one by URL).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from imgrec.messages import Heartbeat


class Actuator(ABC):
    # What it has done, for the autoscaler's heartbeat (e.g. workers started, crashes).
    counters: dict[str, int] = {}  # replaced per instance by the adapters that count

    @abstractmethod
    def running(self) -> int:
        """Workers alive now (reaping any that have exited)."""

    @abstractmethod
    def reconcile(self, desired: int) -> None:
        """Start or (gracefully) stop workers until `desired` are running."""

    @abstractmethod
    def shutdown(self, timeout: float) -> None:
        """Stop every worker, waiting up to `timeout` before killing."""

    def watch(self, beats: list[Heartbeat]) -> None:  # noqa: B027 - only actuators that own processes
        """Given the workers' heartbeats, replace those of its own that hang."""
