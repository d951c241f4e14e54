"""Arrival traces for the scaling simulator: built-in shapes and CSV readers.

A trace is a sorted array of arrival times in seconds from 0 and the span it covers.
Each shape is a rate profile over [0, duration) scaled to a mean of `rate` per second,
so one shape is scaled in time by its duration and in load by its rate: a one-hour
`onoff` and a one-minute `onoff` have the same on/off pattern, compressed. `scaled`
compresses or thins any trace, CSV ones included (what a short live replay needs).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgrec.errors import BadInput

SHAPES = ("steady", "step", "spike", "diurnal", "onoff", "bursts")
GRID = 120_000  # rate cells per trace; a multiple of every shape's segment count, so edges fall on cells
ONOFF_CYCLES, ONOFF_ON = 6, 0.25  # six on/off cycles, on for the first quarter of each
SPIKE_AT, SPIKE_WIDTH, SPIKE_HEIGHT = 0.5, 1 / 60, 20.0  # 20x the base rate, mid-trace, 1/60 of it
BURSTS, BURST_SHARE, BURST_ALPHA, BURST_SPEED = 20, 0.9, 1.5, 50.0


@dataclass(frozen=True)
class Trace:
    name: str
    times: np.ndarray  # sorted arrival times, seconds from 0
    duration: float  # the span the trace covers (it may end in a quiet spell)

    @property
    def mean_rate(self) -> float:
        return len(self.times) / self.duration if self.duration else 0.0


def _profile(shape: str, t: np.ndarray, duration: float) -> np.ndarray:
    """Relative arrival rate at times `t` (any scale; `shape` normalises it)."""
    x = t / duration
    if shape == "steady":
        return np.ones_like(x)
    if shape == "step":  # half the rate, then twice it, then half again
        return np.where((x >= 1 / 3) & (x < 2 / 3), 2.0, 0.5)
    if shape == "spike":
        return np.where((x >= SPIKE_AT) & (x < SPIKE_AT + SPIKE_WIDTH), SPIKE_HEIGHT, 1.0)
    if shape == "diurnal":  # one day squeezed into the trace: quiet at the ends, busiest mid-trace
        return 1 - 0.8 * np.cos(2 * np.pi * x)
    if shape == "onoff":
        return np.where((x * ONOFF_CYCLES) % 1 < ONOFF_ON, 1.0, 0.0)
    raise BadInput(f"unknown trace shape {shape!r}: one of {', '.join(SHAPES)}, or a CSV file")


def _poisson(rates: np.ndarray, duration: float, rng: np.random.Generator) -> np.ndarray:
    """A non-homogeneous Poisson process whose rate is constant within each of the equal
    cells `rates`: the count is Poisson, the times follow the cumulative intensity."""
    edges = np.linspace(0, duration, len(rates) + 1)
    cumulative = np.concatenate([[0.0], np.cumsum(rates * (duration / len(rates)))])
    n = rng.poisson(cumulative[-1])
    return np.interp(np.sort(rng.uniform(0, cumulative[-1], n)), cumulative, edges)


def _bursts(duration: float, rate: float, rng: np.random.Generator) -> np.ndarray:
    """A tenth of the load as a steady background; the rest in `BURSTS` bursts (on average)
    at random times, each of a Pareto(1.5) size (finite mean, unbounded variance: now
    and then one burst dwarfs the others), arriving at `BURST_SPEED` times the mean rate."""
    if rate == 0:
        return np.empty(0)
    background = rng.uniform(0, duration, rng.poisson((1 - BURST_SHARE) * rate * duration))
    starts = rng.uniform(0, duration, rng.poisson(BURSTS))
    smallest = BURST_SHARE * rate * duration / BURSTS * (BURST_ALPHA - 1) / BURST_ALPHA  # Pareto mean: 3x this
    sizes = np.floor(smallest * (1 + rng.pareto(BURST_ALPHA, len(starts)))).astype(np.int64)
    starts, sizes = starts[sizes > 0], sizes[sizes > 0]
    # Each burst is a fast Poisson stream from its start: gaps summed within each burst.
    gaps = rng.exponential(1 / (BURST_SPEED * rate), int(sizes.sum()))
    summed = np.cumsum(gaps)
    firsts = np.cumsum(sizes) - sizes
    before = np.repeat(summed[firsts] - gaps[firsts], sizes)
    times = np.concatenate([background, np.repeat(starts, sizes) + summed - before])
    return np.sort(times[times < duration])


def shape(name: str, duration: float = 3600.0, rate: float = 5.0, seed: int = 0) -> Trace:
    """A built-in shape with a mean of `rate` arrivals per second over `duration` seconds."""
    if duration <= 0 or rate < 0:
        raise BadInput("a trace needs a positive duration and a rate of at least 0")
    rng = np.random.default_rng(seed)
    if name == "bursts":
        return Trace(name, _bursts(duration, rate, rng), duration)
    centres = (np.arange(GRID) + 0.5) * (duration / GRID)
    rates = _profile(name, centres, duration)
    return Trace(name, _poisson(rates * (rate / rates.mean()), duration, rng), duration)


def from_counts(counts: np.ndarray, bin_seconds: float, name: str = "counts", seed: int = 0) -> Trace:
    """Arrivals from counts per bin (per second, per minute), spread at random within each bin."""
    counts = np.asarray(counts, dtype=np.int64)
    if (counts < 0).any():
        raise BadInput("arrival counts cannot be negative")
    rng = np.random.default_rng(seed)
    starts = np.repeat(np.arange(len(counts)) * bin_seconds, counts)
    return Trace(name, np.sort(starts + rng.uniform(0, bin_seconds, len(starts))), len(counts) * bin_seconds)


def _numbers(path: Path) -> list[list[str]]:
    """The rows of a CSV file, without a header line (one whose last cell is not a number)."""
    with path.open(newline="") as f:
        rows = [row for row in csv.reader(f) if row and any(cell.strip() for cell in row)]
    if rows and not _is_number(rows[0][-1]):
        rows = rows[1:]
    return rows


def _is_number(cell: str) -> bool:
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False


def read_times(path: Path) -> Trace:
    """One arrival per row, in seconds (the first column); taken relative to the first one."""
    try:
        times = np.sort(np.array([float(row[0]) for row in _numbers(path)]))
    except ValueError as exc:
        raise BadInput(f"{path}: not a column of arrival times ({exc})") from None
    if len(times) == 0:
        raise BadInput(f"{path}: no arrivals")
    times -= times[0]
    return Trace(path.stem, times, float(math.floor(times[-1]) + 1))


def read_counts(path: Path, bin_seconds: float, seed: int = 0) -> Trace:
    """One count per row (the last column, so `second,count` works too), one row per bin."""
    try:
        counts = np.array([int(float(row[-1])) for row in _numbers(path)])
    except ValueError as exc:
        raise BadInput(f"{path}: not a column of counts ({exc})") from None
    return from_counts(counts, bin_seconds, path.stem, seed)


AZURE_HEADER = ["HashOwner", "HashApp", "HashFunction", "Trigger"]


def read_azure(path: Path, select: str = "", seed: int = 0) -> Trace:
    """The Azure Functions 2019 trace's per-minute invocation counts (columns
    HashOwner,HashApp,HashFunction,Trigger,1,...,1440): the sum over every row, or over
    the rows whose owner, app or function hash is `select`."""
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        if header[:4] != AZURE_HEADER:
            raise BadInput(f"{path}: not the Azure Functions format (header {','.join(AZURE_HEADER)},1,...)")
        minutes = len(header) - 4
        total = np.zeros(minutes, dtype=np.int64)
        for row in reader:
            if row and (not select or select in row[:3]):
                total += np.array([int(c or 0) for c in row[4 : 4 + minutes]], dtype=np.int64)
    return from_counts(total, 60.0, path.stem, seed)


CSV_KINDS = ("auto", "times", "second", "minute", "azure")


def read_csv(path: Path, kind: str = "auto", select: str = "", seed: int = 0) -> Trace:
    """A trace from a CSV file of `kind`: arrival `times`, counts per `second` or per
    `minute`, or `azure`; `auto` is `azure` when the header says so, else `times`."""
    if kind == "auto":
        with path.open() as f:
            kind = "azure" if f.readline().startswith(AZURE_HEADER[0]) else "times"
    if kind == "azure":
        return read_azure(path, select, seed)
    if kind == "times":
        return read_times(path)
    if kind in ("second", "minute"):
        return read_counts(path, 1.0 if kind == "second" else 60.0, seed)
    raise BadInput(f"unknown CSV kind {kind!r}: one of {', '.join(CSV_KINDS)}")


def load(spec: str, duration: float = 3600.0, rate: float = 5.0, seed: int = 0, kind: str = "auto",
         select: str = "") -> Trace:
    """A built-in shape by name, or a CSV file by path."""
    if spec in SHAPES:
        return shape(spec, duration, rate, seed)
    path = Path(spec)
    if not path.is_file():
        raise BadInput(f"no trace {spec!r}: a shape ({', '.join(SHAPES)}) or a CSV file")
    return read_csv(path, kind, select, seed)


def scaled(trace: Trace, time: float = 1.0, rate: float = 1.0, seed: int = 0) -> Trace:
    """The trace with its clock multiplied by `time` (0.1: ten times faster) and each
    arrival kept `rate` times on average (0.5: thinned by half; 2.5: two or three copies)."""
    if time <= 0 or rate < 0:
        raise BadInput("scales must be positive")
    times = trace.times * time
    if rate != 1.0:
        rng = np.random.default_rng(seed)
        copies = math.floor(rate) + (rng.random(len(times)) < rate - math.floor(rate))
        times = np.repeat(times, copies)
    return Trace(trace.name, times, trace.duration * time)
