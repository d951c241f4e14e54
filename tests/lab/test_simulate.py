"""The scaling simulator: what it conserves, and the real policy's semantics through it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from imgrec.lab.scaling import traces
from imgrec.lab.scaling.peers import FixedState, Policy, open_policy
from imgrec.lab.scaling.simulate import ServiceModel, Simulation, WorkerModel, simulate
from imgrec.settings import Settings

SETTINGS = Settings(max_workers=4, target_per_worker=4, scale_in_delay=30, scale_to_zero_delay=0, scale_in_step=1,
                    poll_interval=0.25, min_workers=0)
MODEL = WorkerModel(ServiceModel(0.005, 0.01), cold_start=1.0, max_batch=8)


def scripted(plan):
    """A policy that wants plan(now) workers, whatever the load."""
    return Policy("script", lambda snap, state, cfg: FixedState(cfg(snap.now)), plan, FixedState(0), 1.0, 0)


@pytest.mark.parametrize("spec", ["imgrec", "keda", "hpa", "ray", "fixed:2", "imgrec:target_per_worker=1"])
@pytest.mark.parametrize("shape", ["steady", "onoff", "bursts"])
def test_every_arrival_is_answered_once_and_no_sooner_than_its_service(spec, shape):
    trace = traces.shape(shape, 600, 3, seed=4)
    sim = Simulation(trace.times, open_policy(spec, SETTINGS), MODEL, trace.duration)
    result = sim.run()
    assert sorted(sim.queue) == list(range(len(trace.times)))  # each taken into the queue once...
    assert sim.taken == len(trace.times) and sim.in_flight == 0  # ... and out of it once
    assert len(result.latencies) == result.requests == len(trace.times) and result.rejected == 0
    assert result.latencies.min() >= MODEL.service.seconds(1) - 1e-9
    assert result.end >= trace.duration and result.worker_seconds > 0
    assert 1 <= result.peak_workers <= 4


def test_imgrec_starts_one_worker_for_one_message_and_stops_it_after_the_zero_delay():
    r = simulate([10.1], open_policy("imgrec", SETTINGS.with_overrides(scale_to_zero_delay=5)), MODEL, duration=20)
    # The tick at 10.25 sees it and starts a worker; ready at 11.25, done at 11.265.
    assert r.latencies[0] == pytest.approx(11.265 - 10.1)
    # Work was seen at the tick of 11.25 and held until the next, 11.5; the worker stops
    # 5 s later, at 16.5: the last step waits for the zero delay, not for the scale-in
    # delay (30 s). The run lasts the trace's 20 s.
    assert r.worker_seconds == pytest.approx(16.5 - 10.25) and r.end == pytest.approx(20)
    assert (r.cold_starts, r.scale_events, r.peak_workers) == (1, 2, 1)


def test_a_queue_that_cannot_tell_its_sends_keeps_the_last_worker_longer():
    blind = dataclasses.replace(MODEL, sees_sends=False)
    settings = SETTINGS.with_overrides(scale_to_zero_delay=5, blind_scale_to_zero_delay=0)
    # Work last seen until 11.5: the scale-in delay (30 s) holds the last worker, as any other.
    assert simulate([10.1], open_policy("imgrec", settings), blind, 20).worker_seconds == pytest.approx(41.5 - 10.25)
    settings = settings.with_overrides(blind_scale_to_zero_delay=60)
    assert simulate([10.1], open_policy("imgrec", settings), blind, 20).worker_seconds == pytest.approx(71.5 - 10.25)


def test_requests_no_tick_sees_keep_their_worker_when_the_queue_tells():
    """A request every 2 s, each answered in 1 ms between two ticks (every 0.25 s): only
    the queue's time of its last message shows the autoscaler that they keep coming."""
    quick = WorkerModel(ServiceModel(0.0, 0.001), cold_start=0.5, max_batch=8)
    times = [0.3 + 2 * i for i in range(100)]
    settings = SETTINGS.with_overrides(scale_in_delay=1, scale_to_zero_delay=4, blind_scale_to_zero_delay=4)
    told = simulate(times, open_policy("imgrec", settings), quick)
    blind = simulate(times, open_policy("imgrec", settings), dataclasses.replace(quick, sees_sends=False))
    assert told.cold_starts == 1 and told.latencies.max() < 1
    assert blind.cold_starts > 20  # each time it stops, the next request waits for a start-up


def test_imgrec_keeps_the_last_worker_for_the_scale_to_zero_delay():
    settings = SETTINGS.with_overrides(scale_in_delay=10, scale_to_zero_delay=60)
    r = simulate([10.1], open_policy("imgrec", settings), MODEL, duration=20)
    # Work was last seen until the tick of 11.5; the last worker stops 60 s later.
    assert r.worker_seconds == pytest.approx(71.5 - 10.25)


def test_imgrec_scales_out_to_work_over_target_and_no_further_than_max():
    r = simulate([0.1] * 10, open_policy("imgrec", SETTINGS), MODEL, duration=1)
    assert r.peak_workers == 3  # ceil(10 / 4)
    r = simulate([0.1] * 100, open_policy("imgrec", SETTINGS), MODEL, duration=1)
    assert r.peak_workers == 4


def test_a_busy_worker_finishes_its_batch_before_it_stops():
    model = WorkerModel(ServiceModel(10.0, 0.0), cold_start=0.0, max_batch=8)
    r = simulate([0.5, 0.6], scripted(lambda now: 1 if now < 3 else 0), model, duration=1)
    # It took the first message at 0.5 (alone: nothing else waited) and is asked to stop at 3.
    assert r.worker_seconds == pytest.approx(10.5) and len(r.latencies) == 1
    assert r.latencies[0] == pytest.approx(10.0)


def test_a_worker_takes_everything_waiting_up_to_max_batch():
    model = WorkerModel(ServiceModel(1.0, 0.0), cold_start=0.0, max_batch=3)
    r = simulate([0.1] * 7, scripted(lambda now: 1 if now >= 1 else 0), model, duration=1)
    # Batches of 3, 3, 1 from t=1, each taking 1 s.
    assert sorted(np.round(r.latencies + 0.1, 6)) == [2, 2, 2, 3, 3, 3, 4]


def test_a_worker_stopped_while_starting_is_gone_at_once():
    model = WorkerModel(ServiceModel(0.1, 0.0), cold_start=5.0, max_batch=1)
    r = simulate([], scripted(lambda now: 1 if now < 2 else 0), model, duration=3)
    assert r.worker_seconds == pytest.approx(2.0) and r.cold_starts == 1


def test_workers_share_the_host_cores():
    model = WorkerModel(ServiceModel(1.0, 0.0), cold_start=1.0, max_batch=1, host_cores=1)
    r = simulate([0.0, 0.0], scripted(lambda now: 2), model, duration=1)
    # Two start-ups on one core take 2 s; then two batches of 1 s take 2 s more.
    assert sorted(r.latencies) == pytest.approx([4.0, 4.0])
    alone = simulate([0.0, 0.0], scripted(lambda now: 2), WorkerModel(ServiceModel(1.0, 0.0), 1.0, 1), duration=1)
    assert sorted(alone.latencies) == pytest.approx([2.0, 2.0])


def test_the_cpu_beside_a_busy_worker_takes_from_the_shared_cores():
    # Each image keeps 1 s of CPU busy beside its worker (web tier, client): a busy
    # worker needs two cores, so on one it runs at half speed.
    model = WorkerModel(ServiceModel(0.0, 1.0), cold_start=0.0, max_batch=1, host_cores=1, side_cpu=1.0)
    assert model.busy_demand == pytest.approx(2.0)
    r = simulate([0.0], scripted(lambda now: 1), model, duration=1)
    assert list(r.latencies) == pytest.approx([2.0])
    roomy = simulate([0.0], scripted(lambda now: 1), dataclasses.replace(model, host_cores=2), duration=1)
    assert list(roomy.latencies) == pytest.approx([1.0])
    # A worker still starting needs one core: two start-ups on two cores are not slowed.
    two = dataclasses.replace(model, cold_start=1.0, host_cores=2)
    assert list(simulate([0.0], scripted(lambda now: 2), two, duration=1).latencies) == pytest.approx([2.0])


def test_the_first_tick_sets_when_the_autoscaler_first_looks():
    # An arrival just after 0 waits for the next tick: 0.25 s into the run, or 0.125 s
    # when the ticks start half an interval in (as `bench replay` sets them).
    policy = open_policy("imgrec", SETTINGS)
    late = simulate([0.01], policy, MODEL, duration=5).latencies[0]
    early = simulate([0.01], policy, MODEL, duration=5, first_tick=0.125).latencies[0]
    assert late - early == pytest.approx(0.125)
    assert early == pytest.approx(0.125 - 0.01 + MODEL.cold_start + MODEL.service.seconds(1))


def test_arrivals_past_the_backlog_limit_are_refused():
    model = WorkerModel(ServiceModel(1.0, 0.0), cold_start=0.0, max_batch=1, max_backlog=5)
    r = simulate([0.1] * 8, scripted(lambda now: 1 if now >= 1 else 0), model, duration=1)
    assert (r.rejected, len(r.latencies)) == (3, 5)
    assert r.figures()["slo_attainment"] == pytest.approx(0 / 8)  # 5 answered, none within 1 s


def test_the_run_ends_at_the_policy_floor_or_after_the_tail():
    r = simulate([1.0], open_policy("fixed:2", SETTINGS), MODEL, duration=10)
    assert r.end == pytest.approx(10) and r.worker_seconds == pytest.approx(20)
    never = simulate([1.0], open_policy("fixed:0", SETTINGS), MODEL, duration=10)
    assert len(never.latencies) == 0 and never.end == pytest.approx(10 + 3600)


def test_figures_have_the_documented_keys():
    f = simulate(traces.shape("steady", 60, 2).times, open_policy("imgrec", SETTINGS), MODEL, 60).figures()
    assert {"worker_seconds", "p50_ms", "p95_ms", "p99_ms", "slo_attainment", "cold_starts", "scale_events",
            "peak_workers"} <= set(f)
    assert f["p50_ms"] <= f["p95_ms"] <= f["p99_ms"] and 0 <= f["slo_attainment"] <= 1


def test_measured_overheads_are_drawn_per_answer_and_make_the_tail():
    """The time outside the workers, measured on the live service, varies (a flush takes
    longer now and then): each answer draws one of the measured times, by the seed."""
    spread = dataclasses.replace(MODEL, overhead=0.01, overheads=(0.01,) * 9 + (0.5,))
    times = traces.shape("steady", 120, 2, seed=1).times
    plain = simulate(times, scripted(lambda now: 1), dataclasses.replace(MODEL, overhead=0.01), 120)
    drawn = simulate(times, scripted(lambda now: 1), spread, 120, seed=3)
    assert np.percentile(plain.latencies, 99) < 0.1 < 0.5 <= np.percentile(drawn.latencies, 99)
    assert np.median(drawn.latencies) == pytest.approx(np.median(plain.latencies), abs=0.002)
    share = np.mean(drawn.latencies - plain.latencies > 0.4)
    assert 0.05 < share < 0.15  # a tenth of the answers drew the slow one
    assert list(simulate(times, scripted(lambda now: 1), spread, 120, seed=3).latencies) == list(drawn.latencies)
    assert list(simulate(times, scripted(lambda now: 1), spread, 120, seed=4).latencies) != list(drawn.latencies)
