"""The scaling policy: a pure function of a snapshot, the config and its own state.

    desired = clamp(ceil((backlog + in_flight) / target_per_worker), min, max)

Scale out at once (a single waiting message starts a worker); scale in only when
the lower target has held for `scale_in_delay` seconds. No clock is read here:
`now` comes in the snapshot, so tests step time tick by tick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from imgrec.errors import ConfigError

if TYPE_CHECKING:
    from imgrec.settings import Settings


@dataclass(frozen=True)
class ScalingConfig:
    """The policy's knobs; their defaults live in `Settings` only."""

    min_workers: int
    max_workers: int
    target_per_worker: int
    scale_in_delay: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ScalingConfig:
        return cls(settings.min_workers, settings.max_workers, settings.target_per_worker, settings.scale_in_delay)

    def __post_init__(self) -> None:
        if not 0 <= self.min_workers <= self.max_workers:
            raise ConfigError("need 0 <= min_workers <= max_workers")
        if self.target_per_worker < 1:
            raise ConfigError("target_per_worker must be at least 1")


@dataclass(frozen=True)
class Snapshot:
    now: float
    backlog: int  # messages waiting
    in_flight: int  # messages being processed


@dataclass(frozen=True)
class PolicyState:
    desired: int = 0
    lower_since: float | None = None  # when the target first fell below `desired`


def target(snapshot: Snapshot, config: ScalingConfig) -> int:
    work = snapshot.backlog + snapshot.in_flight
    return max(config.min_workers, min(config.max_workers, math.ceil(work / config.target_per_worker)))


def decide(snapshot: Snapshot, state: PolicyState, config: ScalingConfig) -> PolicyState:
    """The next state; its `desired` is the number of workers there should be now."""
    want = target(snapshot, config)
    desired = max(config.min_workers, min(config.max_workers, state.desired))  # config may have changed
    if want >= desired:
        return PolicyState(desired=want, lower_since=None)
    if state.lower_since is None:
        return replace(state, desired=desired, lower_since=snapshot.now)
    if snapshot.now - state.lower_since >= config.scale_in_delay:
        return PolicyState(desired=want, lower_since=None)
    return replace(state, desired=desired)
