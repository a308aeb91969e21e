"""Synthetic lattice communities for tests and the benchmark: square units of 20–119 households
(the issue's benchmark setting), with a river across if asked. Pure numpy/shapely; metric units."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from gisgov.gridding.graph import Graph
from gisgov.gridding.rules import GridRules


@dataclass
class Lattice:
    side: int
    cells: np.ndarray  # shapely squares
    households: np.ndarray
    people: np.ndarray
    graph: Graph
    river: object | None = None


def lattice(
    side: int,
    *,
    seed: int = 0,
    cell_m: float = 100.0,
    hh_low: int = 20,
    hh_high: int = 119,
    river: bool = False,
    rules: GridRules | None = None,
) -> Lattice:
    """``side``×``side`` square units; households uniform in [hh_low, hh_high]; people ≈ 2.4 per
    household (rounded, so ~960 people per 400 households: the people bound binds sometimes)."""
    rules = rules or GridRules()
    rng = np.random.default_rng(seed)
    n = side * side
    hh = rng.integers(hh_low, hh_high + 1, size=n)
    people = np.round(hh * rng.uniform(2.0, 2.8, size=n)).astype(np.int64)
    gx, gy = np.meshgrid(np.arange(side), np.arange(side), indexing="xy")
    ix, iy = gx.ravel(), gy.ravel()
    cells = shapely.box(ix * cell_m, iy * cell_m, (ix + 1) * cell_m, (iy + 1) * cell_m)
    idx = np.arange(n).reshape(side, side)
    a = np.concatenate([idx[:, :-1].ravel(), idx[:-1, :].ravel()])
    b = np.concatenate([idx[:, 1:].ravel(), idx[1:, :].ravel()])
    length = np.full(len(a), cell_m)
    crossing = np.zeros(len(a), bool)
    line = None
    if river:
        # a river between two rows in the middle, crossing the whole community
        y = (side // 2) * cell_m
        line = shapely.LineString([(-10, y), (side * cell_m + 10, y)])
        crossing = (iy[a] < side // 2) != (iy[b] < side // 2)
    weight = np.where(crossing, length * rules.barrier_weight, length)
    return Lattice(side, cells, hh, people, Graph(n, a, b, length, crossing, weight), line)
