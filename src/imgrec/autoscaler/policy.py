"""The scaling policy: a pure function of a snapshot, the config and its own state.

    target  = clamp(ceil((backlog + in_flight) / target_per_worker), min, max)
    desired = the highest target of the last `scale_in_delay` seconds; where that is
              0 or 1: 1 until `scale_to_zero_delay` after the last request, then 0;
              falling by at most a `scale_in_step` share of the workers a second

So it scales out at once (a single waiting message starts a worker) and in only to
what the whole delay needed, step by step. Each rule comes from `imgrec simulate`:
- under light traffic the target flickers between 0 and 1 from tick to tick (a
  request takes a few milliseconds, a tick sees few of them), and scaling in to
  one tick's target stopped the last worker while requests still came;
- the step to zero is decided by the time since the last request, which the queue
  tells (`Snapshot.last_sent`): a tick sees a request only while it waits or is
  processed, a few milliseconds, and misses most of light traffic's. Where the queue
  cannot tell (SQS), work seen by a tick is all there is, and the last worker waits
  `blind_scale_to_zero_delay`, long enough not to stop between requests it missed;
- with many workers, the window's maximum can fall far in one tick (20 -> 4) below
  what the load needs, which then starts them all again: thrash. Smaller steps let
  the load show itself before too many workers go.
No clock is read here: `now` comes in the snapshot, so tests step time tick by tick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imgrec.errors import ConfigError

if TYPE_CHECKING:
    from imgrec.settings import Settings

STEP_SECONDS = 1.0  # scale_in_step is a share per this many seconds


@dataclass(frozen=True)
class ScalingConfig:
    """The policy's knobs; their defaults live in `Settings` only."""

    min_workers: int
    max_workers: int
    target_per_worker: int
    scale_in_delay: float
    scale_to_zero_delay: float
    scale_in_step: float
    blind_scale_to_zero_delay: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ScalingConfig:
        return cls(settings.min_workers, settings.max_workers, settings.target_per_worker, settings.scale_in_delay,
                   settings.scale_to_zero_delay, settings.scale_in_step, settings.blind_scale_to_zero_delay)

    def __post_init__(self) -> None:
        if not 0 <= self.min_workers <= self.max_workers:
            raise ConfigError("need 0 <= min_workers <= max_workers")
        if self.target_per_worker < 1:
            raise ConfigError("target_per_worker must be at least 1")
        if not 0 < self.scale_in_step <= 1:
            raise ConfigError("scale_in_step is a share of the workers: more than 0, at most 1")


@dataclass(frozen=True)
class Snapshot:
    now: float
    backlog: int  # messages waiting
    in_flight: int  # messages being processed
    last_sent: float | None = None  # when the newest message was sent; None: the queue cannot tell


@dataclass(frozen=True)
class PolicyState:
    desired: int = 0
    # The targets of the last `scale_in_delay` seconds that can still decide, each with
    # the time it held until: highest and oldest first (an older, lower one never will).
    recent: tuple[tuple[int, float], ...] = ()
    last_work: float | None = None  # until when the snapshots last showed any work
    last_in: float | None = None  # when it last scaled in
    last_sent: float | None = None  # the queue's time of its newest message, at the last tick


def target(snapshot: Snapshot, config: ScalingConfig) -> int:
    work = snapshot.backlog + snapshot.in_flight
    return max(config.min_workers, min(config.max_workers, math.ceil(work / config.target_per_worker)))


def decide(snapshot: Snapshot, state: PolicyState, config: ScalingConfig) -> PolicyState:
    """The next state; its `desired` is the number of workers there should be now."""
    now, work = snapshot.now, snapshot.backlog + snapshot.in_flight
    recent = _remember(state, target(snapshot, config), now, config.scale_in_delay)
    held = bool(state.recent) and state.recent[-1][0] > 0  # the last tick's work held until now
    last_work = now if work or held else state.last_work
    sent = snapshot.last_sent
    if sent is not None and sent != state.last_sent:  # a request came since the last tick
        # Counted from this tick, by this clock (the sender's may differ); at the first
        # tick, from the sender's time if it is not ahead of now.
        came = now if state.last_sent is not None else min(sent, now)
        last_work = came if last_work is None else max(last_work, came)
    desired = recent[0][0]  # the highest target of the delay
    if sent is not None:
        if desired <= 1:  # every request is seen: the time since the last one alone decides
            desired = int(work > 0 or (last_work is not None and now - last_work < config.scale_to_zero_delay))
    elif desired == 0 and last_work is not None and now - last_work < config.blind_scale_to_zero_delay:
        desired = 1
    current, desired = _bounded(state.desired, config), _bounded(desired, config)  # config may have changed
    last_in = state.last_in
    if desired < current:
        if last_in is not None and now - last_in < STEP_SECONDS:
            desired = current
        else:  # at least one fewer: floor, so that 2 -> 1 and 1 -> 0 are one step each
            desired, last_in = max(desired, math.floor(current * (1 - config.scale_in_step))), now
    return PolicyState(desired, recent, last_work, last_in, sent)


def _remember(state: PolicyState, want: int, now: float, delay: float) -> tuple[tuple[int, float], ...]:
    """The targets that can still decide, with `want` (now's) last."""
    recent = list(state.recent) or [(state.desired, now)]  # the first tick: `desired` held until now
    recent[-1] = (recent[-1][0], now)  # the last tick's target held until now
    return (*((w, until) for w, until in recent if w > want and until > now - delay), (want, now))


def _bounded(n: int, config: ScalingConfig) -> int:
    return max(config.min_workers, min(config.max_workers, n))


def share(desired: list[int], limit: int) -> list[int]:
    """The workers each model's pool gets when their policies together want more than the
    host's `limit`: first one each, in order, to every pool that wants any (no model waits
    for another's backlog to drain), then one at a time to the pool furthest from what it
    wants. Within the limit, each gets what it wants."""
    if sum(desired) <= limit:
        return list(desired)
    given = [0] * len(desired)
    left = limit
    for i, want in enumerate(desired):
        if want > 0 and left > 0:
            given[i], left = 1, left - 1
    while left > 0:
        i = max(range(len(desired)), key=lambda j: desired[j] - given[j])
        if desired[i] - given[i] <= 0:
            break
        given[i] += 1
        left -= 1
    return given
