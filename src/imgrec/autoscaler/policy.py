"""The scaling policy: a pure function of a snapshot, the config and its own state.

    target  = clamp(ceil((backlog + in_flight) / target_per_worker), min, max)
    desired = the highest target of the last `scale_in_delay` seconds,
              and at least 1 until no work was seen for `scale_to_zero_delay`

So it scales out at once (a single waiting message starts a worker) and in only to
what the whole delay needed. Both rules come from `imgrec simulate`: under light
traffic the target flickers between 0 and 1 from tick to tick (a request takes a
few milliseconds, a tick sees few of them), and scaling in to one tick's target
stopped the last worker while requests still came, a cold start every half minute;
and the step to zero, the one the next request pays a cold start for, is worth
waiting longer for than the others. No clock is read here: `now` comes in the
snapshot, so tests step time tick by tick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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
    scale_to_zero_delay: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ScalingConfig:
        return cls(settings.min_workers, settings.max_workers, settings.target_per_worker, settings.scale_in_delay,
                   settings.scale_to_zero_delay)

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
    # The targets of the last `scale_in_delay` seconds that can still decide, each with
    # the time it held until: highest and oldest first (an older, lower one never will).
    recent: tuple[tuple[int, float], ...] = ()
    last_work: float | None = None  # until when the snapshots last showed any work


def target(snapshot: Snapshot, config: ScalingConfig) -> int:
    work = snapshot.backlog + snapshot.in_flight
    return max(config.min_workers, min(config.max_workers, math.ceil(work / config.target_per_worker)))


def decide(snapshot: Snapshot, state: PolicyState, config: ScalingConfig) -> PolicyState:
    """The next state; its `desired` is the number of workers there should be now."""
    now, want = snapshot.now, target(snapshot, config)
    # The last target held until now; a state without one (the first tick) holds its `desired`.
    recent = list(state.recent) or [(state.desired, now)]
    recent[-1] = (recent[-1][0], now)
    cutoff = now - config.scale_in_delay
    kept = [(w, until) for w, until in recent if w > want and until > cutoff]
    kept.append((want, now))
    held = bool(state.recent) and state.recent[-1][0] > 0  # the last tick's work held until now
    last_work = now if snapshot.backlog + snapshot.in_flight or held else state.last_work
    desired = kept[0][0]
    if desired == 0 and last_work is not None and now - last_work < config.scale_to_zero_delay:
        desired = 1
    desired = max(config.min_workers, min(config.max_workers, desired))  # config may have changed
    return PolicyState(desired, tuple(kept), last_work)
