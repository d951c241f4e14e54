"""The scaling policy, tick by tick with a fake clock (it reads no clock itself)."""

from __future__ import annotations

import pytest

from imgrec.autoscaler.policy import PolicyState, ScalingConfig, Snapshot, decide, share, target
from imgrec.errors import ConfigError

CFG = ScalingConfig(min_workers=0, max_workers=4, target_per_worker=10, scale_in_delay=30.0, scale_to_zero_delay=0.0,
                    scale_in_step=1.0, blind_scale_to_zero_delay=0.0)


def run(ticks, config=CFG, state=PolicyState()):
    """ticks: (now, backlog, in_flight) -> list of desired after each tick."""
    out = []
    for now, backlog, in_flight in ticks:
        state = decide(Snapshot(now, backlog, in_flight), state, config)
        out.append(state.desired)
    return out


def test_idle_stays_at_min():
    assert run([(t, 0, 0) for t in range(5)]) == [0] * 5
    assert run([(t, 0, 0) for t in range(5)], ScalingConfig(1, 4, 10, 30, 0, 1, 0)) == [1] * 5


def test_one_message_starts_a_worker_at_once():
    assert run([(0, 0, 0), (1, 1, 0)]) == [0, 1]


@pytest.mark.parametrize("backlog, in_flight, want", [(1, 0, 1), (10, 0, 1), (11, 0, 2), (15, 15, 3), (1000, 0, 4)])
def test_target_is_ceil_of_work_over_target_clamped(backlog, in_flight, want):
    assert target(Snapshot(0, backlog, in_flight), CFG) == want


def test_scale_out_is_immediate_and_capped():
    assert run([(0, 5, 0), (1, 25, 5), (2, 500, 40)]) == [1, 3, 4]


def test_scale_in_waits_for_the_delay():
    ticks = [(0, 40, 0)] + [(t, 0, 0) for t in (1, 10, 20, 30, 30.9, 31, 32)]
    assert run(ticks) == [4, 4, 4, 4, 4, 4, 0, 0]


def test_scale_in_goes_to_what_remaining_work_needs():
    ticks = [(0, 40, 0), (1, 5, 5), (20, 5, 5), (31, 5, 5)]
    assert run(ticks) == [4, 4, 4, 1]


def test_new_work_resets_the_scale_in_timer():
    ticks = [(0, 40, 0), (1, 0, 0), (25, 40, 0), (26, 0, 0), (40, 0, 0), (56, 0, 0)]
    assert run(ticks) == [4, 4, 4, 4, 4, 0]


def test_scale_in_goes_to_the_highest_target_of_the_delay():
    # 40, then less and less: each target holds until the next tick, and counts for 30 s after.
    ticks = [(0, 40, 0), (1, 25, 0), (2, 15, 0), (10, 5, 0), (11, 0, 0), (31, 0, 0), (32, 0, 0), (40, 0, 0), (41, 0, 0)]
    assert run(ticks) == [4, 4, 4, 4, 4, 3, 2, 1, 0]


def test_flickering_light_traffic_keeps_its_worker():
    """A request takes milliseconds, so most ticks of steady light traffic see no work; the
    target flickers 1, 0, 0, 1, ... The last worker must not go while one tick in 30 s sees work."""
    ticks = [(t, 1 if t % 20 == 0 else 0, 0) for t in range(0, 200)]
    assert set(run(ticks)) == {1}
    after = run(ticks + [(t, 0, 0) for t in range(200, 231)])  # one tick a second: index = time
    assert after[210] == 1 and after[211] == 0  # 30 s after the last work seen (at 180 s, held until 181)


def test_the_last_worker_waits_for_the_scale_to_zero_delay():
    config = ScalingConfig(0, 4, 10, scale_in_delay=10, scale_to_zero_delay=0, scale_in_step=1, blind_scale_to_zero_delay=60)
    ticks = [(0, 40, 0), (1, 0, 0), (11, 0, 0), (60, 0, 0), (60.9, 0, 0), (61, 0, 0)]
    # 4 -> 1 after 10 s (the usual delay); 1 -> 0 only 60 s after work was last seen (t=0).
    assert run(ticks, config) == [4, 4, 1, 1, 1, 0]


def test_work_seen_now_and_then_keeps_the_last_worker():
    config = ScalingConfig(0, 4, 10, scale_in_delay=10, scale_to_zero_delay=0, scale_in_step=1, blind_scale_to_zero_delay=60)
    ticks = [(t, 1 if t % 45 == 0 else 0, 0) for t in range(0, 300)]  # one tick in 45 sees a request
    assert set(run(ticks, config)) == {1}
    assert set(run(ticks, CFG)) == {0, 1}  # with no longer delay for the last step, it goes and comes


def test_a_short_scale_to_zero_delay_changes_nothing():
    short = ScalingConfig(0, 4, 10, scale_in_delay=30, scale_to_zero_delay=0, scale_in_step=1, blind_scale_to_zero_delay=5)
    ticks = [(0, 40, 0)] + [(t, 0, 0) for t in (1, 10, 20, 30, 30.9, 31, 32)]
    assert run(ticks, short) == run(ticks) == [4, 4, 4, 4, 4, 4, 0, 0]


def test_scale_in_stops_at_most_a_share_of_the_workers_a_second():
    config = ScalingConfig(0, 100, 10, scale_in_delay=10, scale_to_zero_delay=0, scale_in_step=0.25, blind_scale_to_zero_delay=0)
    ticks = [(0, 200, 0), (0.25, 0, 0)] + [(10.25 + t / 4, 0, 0) for t in range(40)]  # a tick every 0.25 s
    out = run(ticks, config)
    assert out[:2] == [20, 20]  # the 20 of t=0 held until 0.25, so it counts until 10.25
    # One step a second, each to 3/4 (rounded down, at least one fewer): 20 15 11 8 6 4 3 2 1 0.
    assert [out[i] for i in range(2, 42, 4)] == [15, 11, 8, 6, 4, 3, 2, 1, 0, 0]
    assert out[2:6] == [15, 15, 15, 15]  # nothing more within the second


def test_a_step_never_goes_below_what_the_delay_needed_nor_holds_scale_out():
    config = ScalingConfig(0, 100, 10, scale_in_delay=10, scale_to_zero_delay=0, scale_in_step=0.5, blind_scale_to_zero_delay=0)
    ticks = [(0, 200, 0), (10, 150, 0), (20.5, 0, 0), (21, 0, 0), (21.2, 300, 0)]
    # 20; at 20.5 the window holds 15 (the target of 10..20.5): to 15, not to 10; at 21 held
    # (within the second); 300 messages start 30 at once, whatever the last scale-in.
    assert run(ticks, config) == [20, 20, 15, 15, 30]


def test_in_flight_work_keeps_workers():
    # The backlog is empty but the workers are busy: never scale them away.
    ticks = [(0, 30, 0)] + [(t, 0, 30) for t in range(1, 100, 10)]
    assert set(run(ticks)) == {3}


def test_config_change_is_applied_to_existing_state():
    assert run([(0, 0, 0)], ScalingConfig(0, 2, 10, 30, 0, 1, 0), PolicyState(desired=4)) == [2]


def test_bad_config_is_refused():
    with pytest.raises(ConfigError):
        ScalingConfig(min_workers=3, max_workers=2, target_per_worker=10, scale_in_delay=30, scale_to_zero_delay=0,
                      scale_in_step=1, blind_scale_to_zero_delay=0)
    with pytest.raises(ConfigError):
        ScalingConfig(0, 2, 10, 30, 0, scale_in_step=0, blind_scale_to_zero_delay=0)
    with pytest.raises(ConfigError):
        ScalingConfig(min_workers=0, max_workers=2, target_per_worker=0, scale_in_delay=30, scale_to_zero_delay=0,
                      scale_in_step=1, blind_scale_to_zero_delay=0)


# --- a queue that tells when it got its newest message (SQLite, Redis, memory) -----------

TOLD = ScalingConfig(0, 4, 10, scale_in_delay=30, scale_to_zero_delay=4, scale_in_step=1, blind_scale_to_zero_delay=60)


def run_told(ticks, config=TOLD, state=PolicyState()):
    """ticks: (now, backlog, in_flight, last_sent) -> list of desired after each tick."""
    out = []
    for now, backlog, in_flight, last_sent in ticks:
        state = decide(Snapshot(now, backlog, in_flight, last_sent), state, config)
        out.append(state.desired)
    return out


def test_a_request_no_tick_saw_keeps_the_last_worker():
    # Requests at 0.1, 2.1, 4.1, ... each answered before a tick could see it waiting.
    ticks = [(t, 0, 0, 0.1 + 2 * ((t - 0.2) // 2)) for t in [0.2 + 0.25 * k for k in range(80)]]
    assert set(run_told(ticks, state=PolicyState(desired=1))) == {1}


def test_the_zero_delay_counts_from_the_last_request_not_the_scale_in_delay():
    # A request at 0 (seen waiting, then in flight), the last one at 3.1, never seen: its
    # time is learnt at the tick of 3.25, and the worker stops 4 s later, not 30 s on.
    times = [0.25 * k for k in range(40)]
    ticks = [(t, int(t == 0), int(t == 0.25), 3.1 if t >= 3.25 else 0.0) for t in times]
    out = run_told(ticks)
    assert out[: times.index(7.25)] == [1] * times.index(7.25) and set(out[times.index(7.25):]) == {0}


def test_with_no_zero_delay_work_now_still_keeps_a_worker():
    config = ScalingConfig(0, 4, 10, 30, scale_to_zero_delay=0, scale_in_step=1, blind_scale_to_zero_delay=0)
    assert run_told([(5, 1, 0, 5.0), (6, 0, 1, 5.0), (7, 0, 0, 5.0), (8, 0, 0, 5.0)], config) == [1, 1, 0, 0]


def test_more_than_one_worker_still_waits_for_the_scale_in_delay():
    ticks = [(0, 40, 0, 0.0), (1, 0, 0, 0.5), (20, 0, 0, 0.5), (30.9, 0, 0, 0.5), (31, 0, 0, 0.5)]
    assert run_told(ticks) == [4, 4, 4, 4, 0]  # at 31 the window (and the zero delay) are over


def test_a_request_counts_from_the_tick_that_learns_of_it_whatever_the_senders_clock():
    # The sender's clock (Redis's, another host's) 90 s ahead, then 90 s behind: each new
    # time counts as the tick that sees it; the first tick takes it if it is not ahead.
    ahead = [(10, 0, 0, 100.0), (13.9, 0, 0, 100.0), (14.1, 0, 0, 100.0), (20, 0, 0, 101.0), (23.9, 0, 0, 101.0),
             (24.1, 0, 0, 101.0)]
    assert run_told(ahead, state=PolicyState(desired=1)) == [1, 1, 0, 1, 1, 0]
    behind = [(100, 0, 0, 8.0), (101, 0, 0, 9.0), (104.9, 0, 0, 9.0), (105.1, 0, 0, 9.0)]
    assert run_told(behind, state=PolicyState(desired=1)) == [0, 1, 1, 0]


def test_a_queue_never_sent_to_starts_nothing():
    assert run_told([(1e9 + t, 0, 0, 0.0) for t in range(5)]) == [0] * 5


@pytest.mark.parametrize(("desired", "limit", "given"), [
    ([3, 2], 8, [3, 2]),  # within the host's limit: each what it wants
    ([8, 1], 4, [3, 1]),  # past it: one each first, then to the furthest from what it wants
    ([0, 6], 4, [0, 4]),  # a pool that wants none gets none
    ([5, 5, 5], 2, [1, 1, 0]),  # fewer workers than pools: the first pools in order
    ([7, 3], 6, [5, 1]),  # what each lacks evened out: 2 and 2
])
def test_pools_share_the_hosts_workers(desired, limit, given):
    assert share(desired, limit) == given
    assert sum(share(desired, limit)) <= limit
