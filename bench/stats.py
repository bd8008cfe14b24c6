"""Medians, ranges and ratios: every figure is reported as median [min-max] over repetitions, and
as a ratio to the baseline measured in the same repetition (adjacent in time, so drift in a noisy
machine cancels out as far as it can)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def summary(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"median": 0.0, "min": 0.0, "max": 0.0, "n": 0}
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "n": len(values),
    }


def ratios(values: Sequence[float], baseline: Sequence[float]) -> dict[str, float]:
    """Per-repetition ratio value/baseline, summarised; repetitions pair up by index."""
    paired = [value / base for value, base in zip(values, baseline, strict=False) if base]
    return summary(paired)


def separation(a: dict[str, float], b: dict[str, float]) -> int:
    """+1 if every repetition of `a` is above every repetition of `b`, -1 if below, 0 if their
    [min-max] ranges overlap or either has fewer than 2 repetitions: a difference inside the
    noise of repeated rounds is no claim (one server's p99 varies several-fold between rounds)."""
    if min(a.get("n", 0), b.get("n", 0)) < 2:
        return 0
    if a["min"] > b["max"]:
        return 1
    if a["max"] < b["min"]:
        return -1
    return 0
