"""Arrival traces: every shape seeded and shaped as documented, and the CSV readers."""

from __future__ import annotations

import numpy as np
import pytest

from imgrec.errors import BadInput
from imgrec.lab.scaling import traces


def counts(trace: traces.Trace, bins: int) -> np.ndarray:
    return np.histogram(trace.times, bins=bins, range=(0, trace.duration))[0]


@pytest.mark.parametrize("name", traces.SHAPES)
def test_every_shape_is_seeded_sorted_and_near_its_mean_rate(name):
    a, b = traces.shape(name, 3600, 5, seed=1), traces.shape(name, 3600, 5, seed=1)
    assert np.array_equal(a.times, b.times)
    assert not np.array_equal(a.times, traces.shape(name, 3600, 5, seed=2).times)
    assert np.all(np.diff(a.times) >= 0) and a.times[0] >= 0 and a.times[-1] < 3600
    assert a.duration == 3600
    # Poisson counts are within a few percent; bursts have a heavy tail, so only the order holds.
    low, high = (0.2, 3.0) if name == "bursts" else (0.95, 1.05)
    assert low * 18000 < len(a.times) < high * 18000


def test_steady_is_flat():
    c = counts(traces.shape("steady", 3600, 10), 6)
    assert c.min() > 0.9 * c.max()


def test_step_is_half_then_twice_then_half():
    c = counts(traces.shape("step", 3000, 10), 3)
    assert c[1] / c[0] == pytest.approx(4, rel=0.1) and c[1] / c[2] == pytest.approx(4, rel=0.1)


def test_spike_is_twenty_times_the_rate_for_a_sixtieth_of_the_trace():
    t = traces.shape("spike", 6000, 10)
    c = counts(t, 60)
    assert c[30] / np.median(c) == pytest.approx(20, rel=0.15)
    assert np.delete(c, 30).max() < 1.5 * np.median(c)


def test_diurnal_is_quiet_at_the_ends_and_busy_in_the_middle():
    c = counts(traces.shape("diurnal", 86400, 2), 24)
    assert c[11] + c[12] > 5 * (c[0] + c[23])


def test_onoff_has_nothing_in_its_off_periods():
    c = counts(traces.shape("onoff", 2400, 10), 24)  # six cycles of four bins: one on, three off
    on = np.arange(24) % 4 == 0
    assert c[~on].sum() == 0 and c[on].min() > 0


def test_bursts_come_in_clusters_of_heavy_tailed_sizes():
    t = traces.shape("bursts", 3600, 5, seed=3)
    c = counts(t, 3600)
    assert c.max() > 100 * np.median(c)  # a burst arrives at 50x the mean rate
    assert (c > 20).sum() < 0.1 * len(c)  # ... and bursts are rare


def test_time_and_rate_scale_any_trace():
    t = traces.shape("onoff", 600, 10)
    fast = traces.scaled(t, time=0.1)
    assert fast.duration == 60 and np.allclose(fast.times, t.times * 0.1)
    half, triple = traces.scaled(t, rate=0.5, seed=1), traces.scaled(t, rate=3)
    assert len(half.times) == pytest.approx(len(t.times) / 2, rel=0.1) and len(triple.times) == 3 * len(t.times)
    with pytest.raises(BadInput):
        traces.scaled(t, time=0)


def test_csv_of_arrival_times_with_or_without_a_header(tmp_path):
    path = tmp_path / "times.csv"
    path.write_text("time\n10.5\n10\n12.25\n")
    t = traces.read_csv(path)
    assert t.times.tolist() == [0, 0.5, 2.25] and t.duration == 3
    path.write_text("1\n2\n")
    assert traces.read_csv(path, "times").times.tolist() == [0, 1]


def test_csv_of_counts_per_second_or_minute(tmp_path):
    path = tmp_path / "counts.csv"
    path.write_text("second,count\n0,3\n1,0\n2,5\n")
    t = traces.read_csv(path, "second")
    assert t.duration == 3 and len(t.times) == 8
    assert counts(t, 3).tolist() == [3, 0, 5]
    m = traces.read_csv(path, "minute")
    assert m.duration == 180 and counts(m, 3).tolist() == [3, 0, 5]


def test_azure_functions_per_minute_format(tmp_path):
    header = "HashOwner,HashApp,HashFunction,Trigger," + ",".join(str(i) for i in range(1, 1441))
    row_a = "o1,a1,f1,http," + ",".join("2" if i == 1 else "0" for i in range(1, 1441))
    row_b = "o2,a2,f2,queue," + ",".join("7" if i == 1440 else ("1" if i == 1 else "") for i in range(1, 1441))
    path = tmp_path / "invocations_per_function_md.anon.d01.csv"
    path.write_text("\n".join([header, row_a, row_b]) + "\n")
    t = traces.load(str(path))  # recognised by its header
    c = np.histogram(t.times, bins=1440, range=(0, 86400))[0]
    assert t.duration == 86400 and len(t.times) == 10
    assert c[0] == 3 and c[1439] == 7
    only = traces.read_csv(path, "azure", select="f2")
    assert len(only.times) == 8


def test_bad_traces_say_why(tmp_path):
    with pytest.raises(BadInput, match="shape"):
        traces.load("sawtooth")
    path = tmp_path / "x.csv"
    path.write_text("a,b\nhello,world\n")
    with pytest.raises(BadInput):
        traces.read_csv(path, "times")
    with pytest.raises(BadInput, match="Azure"):
        traces.read_csv(path, "azure")
