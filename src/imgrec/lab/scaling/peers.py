"""Models of other autoscalers, in the shape of imgrec's policy: (snapshot, state,
config) -> state, where `state.desired` is the number of workers there should be;
and `open_policy`, which makes any of them, imgrec's own included, by name.

They are models, not the peers' code: each docstring says what is kept and what is
left out. Every one reads the same metric imgrec's does, backlog + in flight (what
KEDA's SQS scaler counts by default, and what Ray Serve calls ongoing requests), and
each reads it live when it syncs, with no scrape delay (kind to the peers).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from imgrec.autoscaler.policy import PolicyState, ScalingConfig, Snapshot, decide
from imgrec.errors import ConfigError

if TYPE_CHECKING:
    from imgrec.settings import Settings
PEER_TICK = 1.0  # seconds between a peer model's ticks; each keeps its own slower clocks


@dataclass(frozen=True)
class HpaConfig:
    """The Kubernetes HorizontalPodAutoscaler's documented defaults, on a queue metric
    as an external AverageValue target of `target` messages per pod."""

    max_replicas: int
    min_replicas: int = 1  # the HPA cannot go below 1 (scale to zero is an alpha gate)
    target: float = 5.0
    sync_period: float = 15.0  # --horizontal-pod-autoscaler-sync-period
    sync_offset: float = 0.0  # when, within a period, it syncs
    tolerance: float = 0.1  # no change while the metric is within 10 % of the target
    up_pods: int = 4  # default scale-up: the larger of +4 pods and +100 % per 15 s
    up_percent: float = 100.0
    down_window: float = 300.0  # scale-down stabilisation: the highest recommendation of 300 s


@dataclass(frozen=True)
class HpaState:
    desired: int
    next_sync: float | None = None
    recommendations: tuple[tuple[float, int], ...] = ()


def _next(at: float | None, now: float, period: float, offset: float) -> tuple[bool, float]:
    """Whether a periodic controller runs at `now`, and when it runs next."""
    if at is None:
        at = offset
    if now < at:
        return False, at
    return True, at + period * (math.floor((now - at) / period) + 1)


def hpa_decide(snapshot: Snapshot, state: HpaState, config: HpaConfig) -> HpaState:
    """Every `sync_period`: the recommendation ceil(metric / target) (unchanged within
    the tolerance), stabilised downwards by the highest one of the last `down_window`
    seconds, limited upwards to max(+4 pods, +100 %). Left out: pod readiness, the CPU
    metrics, scale-down rate policies (the default allows 100 % per 15 s anyway)."""
    due, next_sync = _next(state.next_sync, snapshot.now, config.sync_period, config.sync_offset)
    if not due:
        return state
    current = state.desired
    if current == 0:  # an HPA does nothing at zero replicas; KEDA wakes it
        return replace(state, next_sync=next_sync)
    metric = snapshot.backlog + snapshot.in_flight
    ratio = metric / (config.target * current)
    raw = current if abs(ratio - 1) <= config.tolerance else math.ceil(metric / config.target)
    raw = max(config.min_replicas, min(config.max_replicas, raw))
    window = tuple(r for r in state.recommendations if r[0] > snapshot.now - config.down_window)
    window += ((snapshot.now, raw),)
    desired = min(max(current, raw), max(r for _, r in window))
    if desired > current:
        limit = max(current + config.up_pods, math.ceil(current * (1 + config.up_percent / 100)))
        desired = min(desired, limit)
    return HpaState(desired, next_sync, window)


@dataclass(frozen=True)
class KedaConfig:
    """KEDA's documented defaults: the operator polls the queue every 30 s, takes the
    deployment from 0 to 1 when it sees a message and back to 0 once `cooldown` seconds
    have passed since it last saw one; between 1 and the maximum, the HPA it creates
    scales on ceil(queue / 5) with the HPA's default behaviour."""

    max_replicas: int
    polling_interval: float = 30.0
    cooldown: float = 300.0  # cooldownPeriod
    min_replicas: int = 0  # minReplicaCount
    target: float = 5.0  # the scaler's queue length per replica
    activation: int = 0  # activation threshold: active above this many messages
    # The HPA and the KEDA operator run on their own clocks: on average half a sync apart.
    hpa_offset: float = 7.5


@dataclass(frozen=True)
class KedaState:
    desired: int
    next_poll: float | None = None
    last_active: float | None = None
    hpa: HpaState = field(default_factory=lambda: HpaState(0))


def keda_decide(snapshot: Snapshot, state: KedaState, config: KedaConfig) -> KedaState:
    desired, last_active, next_poll = state.desired, state.last_active, state.next_poll
    due, next_poll = _next(next_poll, snapshot.now, config.polling_interval, 0.0)
    hpa = state.hpa
    if due:
        active = snapshot.backlog + snapshot.in_flight > config.activation
        last_active = snapshot.now if active else last_active
        if desired == 0 and active:
            desired = max(1, config.min_replicas)
        elif desired > 0 and config.min_replicas == 0 and not active and (
            last_active is None or snapshot.now - last_active >= config.cooldown
        ):
            desired, hpa = 0, replace(hpa, recommendations=())
    # The HPA keeps its own clock; at zero replicas it does nothing until KEDA wakes it.
    hpa_config = HpaConfig(config.max_replicas, max(1, config.min_replicas), config.target, sync_offset=config.hpa_offset)
    hpa = hpa_decide(snapshot, replace(hpa, desired=desired), hpa_config)
    return KedaState(hpa.desired, next_poll, last_active, hpa)


@dataclass(frozen=True)
class RayConfig:
    """Ray Serve's replica-queue-length policy with its `num_replicas="auto"` defaults:
    desired = ceil(ongoing / 2), bounded, and applied only after the same decision held
    for `upscale_delay` (up) or `downscale_delay` (down) seconds in a row; from zero
    replicas, one starts at once. Ongoing requests are averaged over the last
    `look_back` seconds. Decided every second here (Ray's loop runs every 0.1 s: the
    delays, counted in seconds, are the same)."""

    max_replicas: int
    min_replicas: int = 1
    target: float = 2.0  # target_ongoing_requests
    upscale_delay: float = 30.0
    downscale_delay: float = 600.0
    look_back: float = 30.0  # look_back_period_s
    interval: float = 1.0


@dataclass(frozen=True)
class RayState:
    desired: int
    counter: int = 0  # > 0: consecutive decisions to scale up; < 0: down
    samples: tuple[int, ...] = ()


def ray_decide(snapshot: Snapshot, state: RayState, config: RayConfig) -> RayState:
    keep = max(1, round(config.look_back / config.interval))
    samples = (state.samples + (snapshot.backlog + snapshot.in_flight,))[-keep:]
    ongoing = sum(samples) / len(samples)
    current = state.desired
    if current == 0:  # the cold-start fast path: no delay from zero
        return RayState(1 if ongoing > 0 else 0, 0, samples)
    want = max(config.min_replicas, min(config.max_replicas, math.ceil(ongoing / config.target)))
    counter = state.counter
    if want > current:
        counter = max(counter, 0) + 1
        if counter > int(config.upscale_delay / config.interval):
            return RayState(want, 0, samples)
    elif want < current:
        want = want if current == 1 else max(1, want)  # only 1 -> 0 reaches zero
        counter = min(counter, 0) - 1
        if counter < -int(config.downscale_delay / config.interval):
            return RayState(want, 0, samples)
    else:
        counter = 0
    return RayState(current, counter, samples)


@dataclass(frozen=True)
class FixedConfig:
    workers: int


@dataclass(frozen=True)
class FixedState:
    desired: int


def fixed_decide(snapshot: Snapshot, state: FixedState, config: FixedConfig) -> FixedState:
    """N workers from start to end, whatever the load: the baseline a policy must beat."""
    return FixedState(config.workers)


@dataclass(frozen=True)
class Policy:
    """A policy as the simulator runs it: `decide(Snapshot, state, config) -> state`, from
    `initial`, every `interval` seconds; `floor` is the number of workers it rests at."""

    name: str
    decide: Callable[[Snapshot, Any, Any], Any]
    config: Any
    initial: Any
    interval: float
    floor: int


POLICIES = ("imgrec", "keda", "hpa", "ray", "fixed:N")


def _configured(config: Any, values: dict[str, str]) -> Any:
    known = {f.name for f in fields(config)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"{type(config).__name__} has no {', '.join(sorted(unknown))}: it has {', '.join(sorted(known))}")
    return replace(config, **{k: type(getattr(config, k))(float(v)) for k, v in values.items()})


def open_policy(spec: str, settings: Settings) -> Policy:
    """`imgrec`, `keda`, `hpa`, `ray` or `fixed:N`, each with optional `:key=value,...`:
    settings for `imgrec` (`imgrec:target_per_worker=8`), a model's fields for a peer
    (`keda:cooldown=60`). Peers scale up to `settings.max_workers` too."""
    name, _, args = spec.partition(":")
    if name == "fixed":
        if not args.isdigit():
            raise ConfigError(f"{spec!r}: fixed:N takes a number of workers")
        return Policy(spec, fixed_decide, FixedConfig(int(args)), FixedState(0), PEER_TICK, int(args))
    try:
        values = dict(pair.split("=", 1) for pair in args.split(",") if pair)
    except ValueError:
        raise ConfigError(f"{spec!r}: options are key=value pairs after the name") from None
    if name == "imgrec":
        try:
            s = settings.with_overrides(**values)
        except (TypeError, ValueError) as exc:  # an unknown setting, or pydantic's ValidationError
            raise ConfigError(f"{spec!r}: {exc}") from None
        config = ScalingConfig.from_settings(s)
        return Policy(spec, decide, config, PolicyState(config.min_workers), s.poll_interval, config.min_workers)
    cap = settings.max_workers
    if name == "keda":
        keda = _configured(KedaConfig(cap), values)
        return Policy(spec, keda_decide, keda, KedaState(keda.min_replicas), PEER_TICK, keda.min_replicas)
    if name == "hpa":
        hpa = _configured(HpaConfig(cap), values)
        return Policy(spec, hpa_decide, hpa, HpaState(hpa.min_replicas), PEER_TICK, hpa.min_replicas)
    if name == "ray":
        ray = _configured(RayConfig(cap), values)
        return Policy(spec, ray_decide, ray, RayState(ray.min_replicas), ray.interval, ray.min_replicas)
    raise ConfigError(f"unknown policy {name!r}: one of {', '.join(POLICIES)}")
