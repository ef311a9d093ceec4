"""The nearest-rank quantile every bench reports its latencies with (p50, p99, max = 1.0)."""

from __future__ import annotations


def nearest_rank(sorted_values: list[float], fraction: float) -> float | None:
    """The value at `fraction` of `sorted_values` (ascending); None when there is none."""
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def ms(sorted_seconds: list[float], fraction: float) -> float | None:
    """`nearest_rank` of latencies in seconds, as milliseconds rounded to 0.01."""
    value = nearest_rank(sorted_seconds, fraction)
    return None if value is None else round(value * 1000, 2)
