"""The actuator port: makes the number of running workers equal to the desired one.

It holds no policy. `reconcile` is called every tick; it also replaces workers
that died, since a crashed worker simply makes `running` fall below `desired`.
Adapters live in `imgrec.actuators` (`open_actuator` picks one by URL).
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class Actuator(ABC):
    @abstractmethod
    def running(self) -> int:
        """Workers alive now (reaping any that have exited)."""

    @abstractmethod
    def reconcile(self, desired: int) -> None:
        """Start or (gracefully) stop workers until `desired` are running."""

    @abstractmethod
    def shutdown(self, timeout: float) -> None:
        """Stop every worker, waiting up to `timeout` before killing."""
