"""Time two (or more) sides back to back under the same load, and report fair ratios.

A ratio between two tools is only meaningful when both ran under the same machine load. ``interleave``
runs the sides one after the other inside each round (the order rotates from round to round so neither
side always runs first), after one untimed warm-up call each; ``ratio`` reports the median time of each
side and the median, min and max of the per-round ratios (each round's ratio compares two runs made
seconds apart).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Ratio:
    a: str
    b: str
    median_a: float
    median_b: float
    median: float  # median of the per-round ratios b / a
    low: float
    high: float
    rounds: int

    def text(self, digits: int = 0) -> str:
        f = f"{{:,.{digits}f}}"
        return f"**{f.format(self.median)}×** ({f.format(self.low)}–{f.format(self.high)}×, {self.rounds} rounds)"


def interleave(
    sides: dict[str, Callable[[], Any]], rounds: int, *, warmup: bool = True, log: Callable[[str], None] | None = None
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Run every side once per round, rotating the order; returns the times per side and each side's
    warm-up result (to check the sides agree before the times count)."""
    names = list(sides)
    first: dict[str, Any] = {}
    if warmup:
        for n in names:
            first[n] = sides[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            gc.collect()
            t = time.perf_counter()
            out = sides[n]()
            times[n].append(time.perf_counter() - t)
            first.setdefault(n, out)
            del out
        if log:
            log(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {times[n][-1]:.3f} s" for n in names))
    return times, first


def ratio(times: dict[str, list[float]], a: str, b: str) -> Ratio:
    """How many times slower ``b`` is than ``a``: per-round ratios (same round = same load)."""
    per = [tb / ta for ta, tb in zip(times[a], times[b], strict=True)]
    return Ratio(
        a,
        b,
        statistics.median(times[a]),
        statistics.median(times[b]),
        statistics.median(per),
        min(per),
        max(per),
        len(per),
    )
