"""The split of ``heuristic.local_search`` and ``exact.solve`` into named steps changed no result.

``tests/data/gridding_reference.json`` holds the assignments computed by the code *before* the
split (seeded lattices from :mod:`gisgov.gridding.synthetic`, hand-built communities from
``tests/grid_city.py``): local search with every option, the exact model in propose and repair
mode (one worker: reproducible bit for bit), and the whole propose/repair pipelines. Each case
here is recomputed and compared label for label.

To regenerate the reference (only when a change of results is intended and reviewed):
``python -m tests.test_gridding_refactor_same --write``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gisgov.gridding import exact, heuristic
from gisgov.gridding.propose import propose
from gisgov.gridding.repair import repair
from gisgov.gridding.rules import GridRules
from gisgov.gridding.synthetic import lattice
from gisgov.gridding.validate import PlanInput
from tests.grid_city import block_layout

REFERENCE = Path(__file__).parent / "data" / "gridding_reference.json"
CODE = "340104001001"


def _ints(a: Any) -> list[int] | None:
    return None if a is None else [int(x) for x in np.asarray(a).tolist()]


def _local_search(side: int, seed: int, **kw: Any) -> dict:
    lat = lattice(side, seed=seed, river=kw.pop("river", False), hh_high=kw.pop("hh_high", 119))
    r = GridRules()
    # a weak start (few trees) leaves grids out of bounds: the push/pull chains get work
    weak = {"trees_per_split": 1, "attempts": 1, "max_trees": 3} if kw.pop("weak", False) else {}
    lab, _ = heuristic.recursive_partition(lat.graph, lat.households, lat.people, r, seed=seed, **weak)
    n = lat.graph.n
    rng = np.random.default_rng(1000 + seed)
    opts: dict[str, Any] = {}
    if kw.pop("fixed", False):
        opts["fixed"] = rng.random(n) < 0.1
    if kw.pop("orig", False):
        opts["orig"], _ = heuristic.recursive_partition(lat.graph, lat.households, lat.people, r, seed=seed + 1)
        opts["move_cost"] = rng.integers(1, 4, size=n)
    opts.update(kw)
    out, info = heuristic.local_search(lat.graph, lat.households, lat.people, r, lab, seed=seed, **opts)
    return {"start": _ints(lab), "labels": _ints(out), "info": {k: int(v) for k, v in info.items()}}


def _exact(side: int, seed: int, **kw: Any) -> dict:
    lat = lattice(side, seed=seed, hh_low=kw.pop("hh_low", 20), hh_high=kw.pop("hh_high", 119))
    r = GridRules()
    h, p, g = lat.households, lat.people, lat.graph
    hint, _ = heuristic.recursive_partition(g, h, p, r, seed=seed)
    mode = kw.pop("mode", "propose")
    k_max = int(hint.max()) + 1 + kw.pop("extra_k", 0)
    opts: dict[str, Any] = {"time_limit_s": 1.0, "workers": 1, "seed": seed}
    if kw.pop("with_hint", True):
        opts["hint"] = hint
    if mode == "repair":
        cur = hint.copy()
        cur[:: kw.pop("unassign_every", 7)] = -1
        opts["current"] = cur
        opts["move_cost"] = np.ones(g.n)
        opts["candidates"] = [sorted({int(hint[i])} | {int(hint[j]) for j in g.adj()[i]}) for i in range(g.n)]
    if kw.pop("groups", False):
        opts["groups"] = [[i, i + 1] for i in range(0, g.n - 1, 5)]
    opts.update(kw)
    res = exact.solve(g, h, p, r, k_max=k_max, **opts)
    return {
        "labels": _ints(res.labels),
        "status": res.status,
        "objective": None if res.objective is None else round(float(res.objective), 3),
    }


def _propose(ncol: int, nrow: int, seed: int, **kw: Any) -> dict:
    rng = np.random.default_rng(seed)
    spec = block_layout(ncol, nrow, rng.integers(kw.pop("lo", 40), kw.pop("hi", 160), size=ncol * nrow))
    ctx = spec.context()
    prop = propose(ctx, seed=seed, time_limit_s=2.0, workers=1, **kw)
    return {
        "status": prop.status,
        "method": prop.method,
        "atom_grid": _ints(prop.plan.atom_grid) if prop.plan is not None else None,
        "codes": list(prop.plan.codes) if prop.plan is not None else None,
    }


def _repair(ncol: int, seed: int, plan: list[int]) -> dict:
    rng = np.random.default_rng(seed)
    spec = block_layout(ncol, 1, rng.integers(120, 180, size=ncol))
    ctx = spec.context()
    k = max(plan) + 1
    codes = [f"{CODE}{i + 1:03d}" for i in range(k)]
    res = repair(ctx, PlanInput(codes, np.array(plan)), seed=seed, time_limit_s=2.0, workers=1)
    return {
        "atom_grid": _ints(res["plan"].atom_grid) if "plan" in res else None,
        "moved": sorted(res.get("moved", [])),
        "buildings_moved": int(res["buildings_moved"]),
        "ok": bool(res["report"]["ok"]),
    }


CASES: dict[str, Callable[[], dict]] = {
    "local_search/8x8/s0": lambda: _local_search(8, 0),
    "local_search/10x10/s1": lambda: _local_search(10, 1),
    "local_search/12x12/s2/river": lambda: _local_search(12, 2, river=True),
    "local_search/10x10/s3/fixed": lambda: _local_search(10, 3, fixed=True),
    "local_search/10x10/s4/orig": lambda: _local_search(10, 4, orig=True),
    "local_search/9x9/s5/allow_empty": lambda: _local_search(9, 5, allow_empty=True, chain_depth=3),
    "local_search/10x10/s6/no_anneal": lambda: _local_search(10, 6, anneal_moves=0, max_passes=2),
    "local_search/8x8/s7/weak/chains": lambda: _local_search(8, 7, weak=True, hh_high=200),
    "local_search/10x10/s1/weak/chains": lambda: _local_search(10, 1, weak=True),
    "local_search/8x8/s8/weak/fixed": lambda: _local_search(8, 8, weak=True, hh_high=200, fixed=True),
    "local_search/10x10/s4/weak/orig": lambda: _local_search(10, 4, weak=True, hh_high=300, orig=True),
    "exact/5x5/s0/propose": lambda: _exact(5, 0),
    "exact/5x5/s1/propose/no_hint": lambda: _exact(5, 1, with_hint=False),
    "exact/6x6/s2/soft": lambda: _exact(6, 2, soft=True, hh_low=60, hh_high=200),
    "exact/5x5/s3/groups": lambda: _exact(5, 3, groups=True, soft=True),
    "exact/6x6/s4/repair": lambda: _exact(6, 4, mode="repair"),
    "exact/5x5/s5/repair/soft": lambda: _exact(5, 5, mode="repair", soft=True, extra_k=1),
    "exact/4x4/s6/infeasible": lambda: _exact(4, 6, hh_low=130, hh_high=140, k_min=9),
    "propose/4x3/s0": lambda: _propose(4, 3, 0),
    "propose/6x5/s1/heuristic": lambda: _propose(6, 5, 1, method="heuristic"),
    "propose/3x3/s2/closest": lambda: _propose(3, 3, 2, lo=200, hi=260, closest=True),
    "repair/6/s0": lambda: _repair(6, 0, [0, 0, 0, 1, 2, 2]),
    "repair/8/s1": lambda: _repair(8, 1, [0, 0, 0, 0, 1, 2, 2, 3]),
}


def compute_all() -> dict[str, dict]:
    return {name: fn() for name, fn in CASES.items()}


@pytest.fixture(scope="module")
def reference() -> dict[str, dict]:
    return json.loads(REFERENCE.read_text(encoding="utf-8"))


def test_reference_covers_every_case(reference):
    assert sorted(reference) == sorted(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_same_result_as_before_the_split(name, reference):
    assert CASES[name]() == reference[name]


if __name__ == "__main__":
    if "--write" not in sys.argv:
        sys.exit("usage: python -m tests.test_gridding_refactor_same --write")
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(json.dumps(compute_all(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {REFERENCE}")
