"""The statistics the scripts report. Pure functions of lists of numbers (tested in tests/test_stats.py).

Conventions: a figure that could not be measured is None. The `*_or_none` functions and the summaries (spread,
ratio, ...) skip or propagate None; the plain ones (median, nearest_rank, min_max) want at least one number and
raise ValueError on empty input.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Iterable, Sequence


def _present(values: Iterable) -> list:
    return [v for v in values if v is not None]


def median(values: Sequence[float]) -> float:
    """The middle value; the mean of the two middle values when there is an even number. ValueError when empty."""
    if not values:
        raise ValueError("median of no values")
    return statistics.median(values)


def median_or_none(values: Iterable) -> float | None:
    """The median of the values that are not None; None when there are none (over rounds: a figure that no round
    measured)."""
    vals = _present(values)
    return median(vals) if vals else None


def min_max(values: Sequence[float]) -> list[float]:
    """[min, max]. ValueError when empty."""
    if not values:
        raise ValueError("min_max of no values")
    return [min(values), max(values)]


def spread(values: Iterable) -> list[float] | None:
    """[min, max] of the values that are not None (the spread over rounds); None when there are none."""
    vals = _present(values)
    return min_max(vals) if vals else None


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b; None when either is missing or b is 0 (no ratio to a figure of nothing)."""
    return a / b if a is not None and b else None


def ratio_of_medians(numerators: Iterable, denominators: Iterable) -> float | None:
    """median(numerators) / median(denominators), each median over the values that are not None."""
    return ratio(median_or_none(numerators), median_or_none(denominators))


def paired_ratios(numerators: Iterable, denominators: Iterable) -> list[float]:
    """x / y for each pair (round i of one subject beside round i of the other), leaving out pairs with a missing
    figure or y == 0; pairs beyond the shorter list are left out too."""
    return [x / y for x, y in zip(numerators, denominators) if x is not None and y]


def nearest_rank(values: Sequence[float], q: float) -> float:
    """The q-th percentile by nearest rank, without interpolation: the smallest value with at least q % of the
    values at or below it, i.e. sorted(values)[ceil(q/100 * n) - 1] (index 0 at least). ValueError when empty or
    q is outside 0..100."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def percentile_or_none(values: Sequence[float], q: float) -> float | None:
    """nearest_rank(values, q), or None when there are no values."""
    return nearest_rank(values, q) if values else None


def upper_median(values: Sequence[float]) -> float | None:
    """sorted(values)[n // 2]: the middle value, or the upper of the two middle ones when n is even (no averaging);
    None when empty. The fault suite's client reports it as its p50."""
    return sorted(values)[len(values) // 2] if values else None


def jain(values: Sequence[float]) -> float | None:
    """Jain's fairness index (Σx)² / (n·Σx²): 1.0 for an even split over n, 1/n when one gets everything. None when
    empty or all zero."""
    if not values:
        return None
    s = sum(values)
    sq = sum(v * v for v in values)
    if sq == 0:
        return None
    return (s * s) / (len(values) * sq)


def max_min(values: Sequence[float]) -> float | None:
    """max / min (the busiest worker over the least busy); None when empty or when one got nothing (shown as ∞)."""
    if not values:
        return None
    lo = min(values)
    if lo == 0:
        return None
    return max(values) / lo


def flatness(values: Iterable) -> float | None:
    """The largest value over the smallest, of those that are not None (1.0 = flat); None when there are none or the
    smallest is not above 0."""
    vals = _present(values)
    return max(vals) / min(vals) if vals and min(vals) > 0 else None


def mean_of_sorted(rows: Sequence[Sequence[float]]) -> list[float]:
    """Each row sorted from largest to smallest, then the mean of each position over the rows; a row shorter than
    the longest counts 0 at the positions it lacks (per-worker shares, busiest first, averaged over rounds)."""
    ordered = [sorted(r, reverse=True) for r in rows]
    n = max((len(r) for r in ordered), default=0)
    return [statistics.mean([r[i] if i < len(r) else 0.0 for r in ordered]) for i in range(n)]


def per_unit(total: float | None, count: float | None) -> float | None:
    """total / count (CPU µs per request, ...); None when total is missing or count is 0 or missing."""
    return total / count if total is not None and count else None


def pct_of_core(cpu_s: float | None, wall_s: float | None) -> float | None:
    """CPU seconds over wall seconds, in % of one core; None when either is missing or the wall time is 0."""
    return 100.0 * cpu_s / wall_s if cpu_s is not None and wall_s else None


def longest_gap(times: Iterable[float], start: float, end: float) -> tuple[float, float] | None:
    """The longest stretch of [start, end] that holds none of `times` (the moments requests succeeded: a time without
    service), as (length, where it begins). The edges count: start to the first time, the last time to end. Times
    outside [start, end] are left out; with none inside, the whole window is the gap. None when end < start."""
    if end < start:
        return None
    points = sorted(t for t in times if start <= t <= end)
    best_len, best_at = -1.0, start
    previous = start
    for t in points + [end]:
        if t - previous > best_len:
            best_len, best_at = t - previous, previous
        previous = t
    return best_len, best_at


def gaps_longer_than(times: Iterable[float], start: float, end: float, threshold: float) -> list[tuple[float, float]]:
    """Every stretch of [start, end] longer than `threshold` that holds none of `times`, as (where it begins, length),
    in time order; the edges count as in longest_gap."""
    points = sorted(t for t in times if start <= t <= end)
    out, previous = [], start
    for t in points + [end]:
        if t - previous > threshold:
            out.append((previous, t - previous))
        previous = t
    return out


def bootstrap_median(values: Sequence[float], rng: random.Random, draws: int = 4000) -> tuple[float, float]:
    """A 95 % interval for the median of `values`: the 2.5th and 97.5th percentiles of the medians of `draws`
    resamples (with replacement, as many values as given), drawn from `rng`."""
    medians = sorted(statistics.median(rng.choice(values) for _ in values) for _ in range(draws))
    return medians[int(0.025 * draws)], medians[int(0.975 * draws) - 1]


def ranks(values: Sequence[float]) -> list[float]:
    """Each value's rank from 1 (smallest), ties sharing the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rank correlation of paired values (the Pearson correlation of their ranks), from -1 to 1; None
    with fewer than three pairs or when either side has one value only."""
    if len(xs) != len(ys) or len(xs) < 3:
        return None
    try:
        return statistics.correlation(ranks(xs), ranks(ys))
    except statistics.StatisticsError:  # a side whose values are all equal
        return None
