"""The models of KEDA, the HPA, Ray Serve and a fixed fleet, tick by tick with a fake clock."""

from __future__ import annotations

import pytest

from imgrec.autoscaler.policy import Snapshot, decide
from imgrec.errors import ConfigError
from imgrec.lab.scaling.peers import (
    FixedConfig,
    FixedState,
    HpaConfig,
    HpaState,
    KedaConfig,
    KedaState,
    RayConfig,
    RayState,
    fixed_decide,
    hpa_decide,
    keda_decide,
    open_policy,
    ray_decide,
)
from imgrec.settings import Settings


def run(step, state, config, ticks):
    """ticks: (now, work) with work all waiting -> desired after each tick."""
    out = []
    for now, work in ticks:
        state = step(Snapshot(now, work, 0), state, config)
        out.append(state.desired)
    return out


# --- the HPA -------------------------------------------------------------------------------

HPA = HpaConfig(max_replicas=100)


def test_hpa_syncs_every_15_seconds_only():
    assert run(hpa_decide, HpaState(1), HPA, [(0, 50), (1, 500), (14.9, 500), (15, 500)]) == [5, 5, 5, 10]


def test_hpa_scale_up_is_limited_to_4_pods_or_double_per_sync():
    ticks = [(15 * k, 1000) for k in range(6)]
    assert run(hpa_decide, HpaState(1), HPA, ticks) == [5, 10, 20, 40, 80, 100]


def test_hpa_holds_within_the_tolerance():
    # 4 pods, target 5: 21 messages is 5 % over, 23 is 15 % over.
    assert run(hpa_decide, HpaState(4), HPA, [(0, 21)]) == [4]
    assert run(hpa_decide, HpaState(4), HPA, [(0, 23)]) == [5]


def test_hpa_scales_down_only_to_the_highest_recommendation_of_the_last_300_seconds():
    ticks = [(0, 50)] + [(15 * k, 0) for k in range(1, 23)]
    out = run(hpa_decide, HpaState(10), HPA, ticks)
    assert out[0] == 10 and set(out[1:20]) == {10}  # 15 .. 285 s: the 10 of t=0 is in the window
    assert out[20:] == [1, 1, 1]  # 300 s on: the window holds only 1s; the HPA never goes below 1


def test_hpa_phase_is_its_offset():
    config = HpaConfig(max_replicas=10, sync_offset=7.5)
    assert run(hpa_decide, HpaState(1), config, [(0, 50), (7, 50), (7.5, 50), (20, 50), (22.5, 50)]) == [1, 1, 5, 5, 10]


# --- KEDA ----------------------------------------------------------------------------------

KEDA = KedaConfig(max_replicas=100)


def test_keda_activates_at_its_next_30_second_poll_then_the_hpa_takes_over():
    ticks = [(0, 0), (1, 100), (29, 100), (30, 100), (37.5, 100), (52.5, 100)]
    # 30 s: 0 -> 1; the HPA's next sync (7.5 s into its period) takes 1 -> 5 -> 10.
    assert run(keda_decide, KedaState(0), KEDA, ticks) == [0, 0, 0, 1, 5, 10]


def test_keda_returns_to_zero_300_seconds_after_it_last_saw_a_message():
    ticks = [(0, 3)] + [(t, 0) for t in range(30, 331, 30)]
    out = run(keda_decide, KedaState(0), KEDA, ticks)
    assert out[0] == 1 and set(out[1:10]) == {1}  # 30 .. 270 s
    assert out[10:] == [0, 0]  # at the poll of 300 s, cooldown has passed


def test_keda_cooldown_restarts_with_each_message_seen():
    ticks = [(0, 3), (150, 0), (270, 1), (300, 0), (540, 0), (570, 0)]
    assert run(keda_decide, KedaState(0), KEDA, ticks) == [1, 1, 1, 1, 1, 0]


# --- Ray Serve -----------------------------------------------------------------------------

RAY = RayConfig(max_replicas=100, min_replicas=0, look_back=1)


def test_ray_starts_one_replica_from_zero_at_once():
    assert run(ray_decide, RayState(0), RAY, [(0, 0), (1, 40)]) == [0, 1]


def test_ray_scales_up_after_30_seconds_of_the_same_decision():
    ticks = [(t, 40) for t in range(0, 33)]
    out = run(ray_decide, RayState(1), RAY, ticks)
    assert set(out[:30]) == {1} and out[30:] == [20, 20, 20]  # 31 consecutive decisions: > 30 s / 1 s


def test_ray_scale_down_waits_600_seconds_and_a_change_of_mind_resets_it():
    ticks = [(t, 0) for t in range(300)] + [(300, 20)] + [(t, 0) for t in range(301, 903)]
    out = run(ray_decide, RayState(10), RAY, ticks)
    # The change of mind at 300 s resets the count: 601 more decisions, so 901 s; 10 -> 1, never 0 from above 1.
    assert set(out[:901]) == {10} and out[901:] == [1, 1]


def test_ray_averages_ongoing_requests_over_its_look_back():
    config = RayConfig(max_replicas=100, upscale_delay=0, look_back=4)
    assert run(ray_decide, RayState(1), config, [(0, 0), (1, 0), (2, 0), (3, 40)]) == [1, 1, 1, 5]


# --- fixed and the factory -----------------------------------------------------------------


def test_fixed_is_fixed():
    assert run(fixed_decide, FixedState(0), FixedConfig(3), [(0, 0), (1, 999)]) == [3, 3]


def test_open_policy_by_name_with_options():
    s = Settings(max_workers=7, target_per_worker=4, poll_interval=0.5)
    imgrec = open_policy("imgrec:target_per_worker=8", s)
    assert imgrec.decide is decide and imgrec.config.target_per_worker == 8 and imgrec.interval == 0.5
    assert imgrec.config.max_workers == 7 and imgrec.floor == 0
    keda = open_policy("keda:cooldown=60", s)
    assert keda.config.cooldown == 60 and keda.config.max_replicas == 7 and keda.floor == 0
    assert open_policy("hpa", s).floor == 1 and open_policy("ray", s).config.target == 2
    fixed = open_policy("fixed:3", s)
    assert fixed.floor == 3 and fixed.config.workers == 3


@pytest.mark.parametrize("spec", ["kubernetes", "fixed:x", "keda:nope=1", "ray:target", "imgrec:nope=1",
                                  "imgrec:target_per_worker=many"])
def test_open_policy_refuses_what_it_does_not_know(spec):
    with pytest.raises(ConfigError):
        open_policy(spec, Settings())
