"""Automatic partition, feasibility explanations, closest plan, repair — on hand-built and random
(hypothesis) layouts with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gisgov.gridding.propose import propose
from gisgov.gridding.repair import repair
from gisgov.gridding.validate import PlanInput, validate
from tests.grid_city import Spec, block_layout

CODE = "340104001001"


def assert_obeys(report, ctx):
    assert report["ok"], [b["message"] for b in report["breaks"]]
    r = ctx.rules
    for g in report["grids"]:
        assert r.min_households <= g["households"] <= r.max_households
        assert g["people"] <= r.max_people
    codes = [g["code"] for g in report["grids"]]
    assert len(set(codes)) == len(codes) and all(c.startswith(CODE) and len(c) == 15 for c in codes)
    assert sorted(int(c[-3:]) for c in codes) == list(range(1, len(codes) + 1))


@st.composite
def feasible_layouts(draw):
    """Columns of 3 single-building compounds; each column holds 320–480 households and ≤ 950 people,
    so at least one plan (one grid per column) exists."""
    ncol = draw(st.integers(2, 6))
    hh, pph = [], []
    for _ in range(ncol):
        total = draw(st.integers(320, 480))
        a = draw(st.integers(20, total - 140))
        b = draw(st.integers(20, total - a - 20))
        hh.append([a, b, total - a - b])
        pph.append(draw(st.floats(1.6, 1.95)))
    H = np.array(hh).T.ravel()  # row-major: rows = 3, columns = ncol
    P = np.tile(np.array(pph), 3)
    return block_layout(ncol, 3, H, people_per_hh=P)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=feasible_layouts(), seed=st.integers(0, 3))
def test_every_proposal_meets_the_rules(spec, seed):
    ctx = spec.context()
    p = propose(ctx, seed=seed, time_limit_s=2.0)
    assert p.status == "ok", p.findings
    assert_obeys(p.report, ctx)
    # grids tile the community: no gap, no overlap, every building in exactly one grid
    assert (p.plan.atom_grid[ctx.atoms.building_id >= 0] >= 0).all()
    union = shapely.union_all(p.plan.polygons)
    assert abs(union.area - ctx.boundary.area) < 1.0
    assert sum(x.area for x in p.plan.polygons) == pytest.approx(ctx.boundary.area, abs=1.0)


def test_heuristic_and_exact_are_deterministic():
    rng = np.random.default_rng(5)
    spec = block_layout(6, 5, rng.integers(40, 160, size=30))
    ctx = spec.context()
    for method in ("heuristic", "exact"):
        a = propose(ctx, method=method, seed=3, time_limit_s=1.0, workers=1)
        b = propose(ctx, method=method, seed=3, time_limit_s=1.0, workers=1)
        assert a.method == b.method
        assert (a.plan.atom_grid == b.plan.atom_grid).all() and a.plan.codes == b.plan.codes


def test_large_community_uses_the_heuristic_and_meets_bounds():
    rng = np.random.default_rng(7)
    spec = block_layout(16, 16, rng.integers(20, 120, size=256), size=60, gap=10, people_per_hh=2.2)
    ctx = spec.context()
    p = propose(ctx, seed=0, exact_max_units=100)
    assert p.method == "heuristic" and p.status == "ok"
    assert_obeys(p.report, ctx)


def test_building_of_900_households_is_explained():
    spec = Spec(
        400,
        120,
        compounds=[
            (10, 10, 110, 110, [(60, 60, 900, 1800)]),
            (150, 10, 250, 110, [(200, 60, 400, 800)]),
            (290, 10, 390, 110, [(340, 60, 350, 700)]),
        ],
    )
    ctx = spec.context()
    p = propose(ctx)
    assert p.status == "infeasible" and p.plan is None
    over = [f for f in p.findings if f["rule"] == "unit_over_max"]
    assert len(over) == 1 and over[0]["units"] == [f"{CODE}0001"]  # its compound (one building)
    assert "900 households" in over[0]["message"] and over[0]["geometry"] is not None
    closest = propose(ctx, closest=True, time_limit_s=2.0)
    assert closest.status == "closest" and closest.plan is not None
    assert sum(1 for g in closest.report["grids"] if g["status"] != "ok") == 1  # only the 900-household grid


def test_island_of_250_households_is_explained():
    boundary = shapely.MultiPolygon([shapely.box(0, 0, 400, 120), shapely.box(600, 0, 700, 120)])
    spec = Spec(
        700,
        120,
        boundary=boundary,
        compounds=[
            (10, 10, 110, 110, [(60, 60, 400, 800)]),
            (150, 10, 250, 110, [(200, 60, 350, 700)]),
            (290, 10, 390, 110, [(340, 60, 380, 760)]),
            (610, 10, 690, 110, [(650, 60, 250, 500)]),
        ],
    )
    ctx = spec.context()
    p = propose(ctx)
    assert p.status == "infeasible"
    isl = [f for f in p.findings if f["rule"] == "piece_infeasible"]
    assert len(isl) == 1 and isl[0]["units"] == [f"{CODE}0004"] and "250 households" in isl[0]["message"]
    closest = propose(ctx, closest=True, time_limit_s=2.0)
    assert closest.status == "closest"
    bad = [g for g in closest.report["grids"] if g["status"] != "ok"]
    assert len(bad) == 1 and bad[0]["households"] == 250


def test_bottleneck_is_explained():
    # a dead-end arm of two small compounds hangs on one compound: together 200+150+250 = 600 > 500
    spec = Spec(
        700,
        120,
        compounds=[
            (10, 10, 110, 110, [(60, 60, 400, 800)]),
            (120, 10, 220, 110, [(170, 60, 400, 800)]),
            (230, 10, 330, 110, [(280, 60, 250, 500)]),
            (340, 10, 440, 110, [(390, 60, 200, 400)]),
            (450, 10, 550, 110, [(500, 60, 150, 300)]),
        ],
        boundary=shapely.box(0, 0, 560, 120),
    )
    ctx = spec.context()
    p = propose(ctx, time_limit_s=2.0)
    assert p.status == "infeasible"
    rules = {f["rule"] for f in p.findings}
    assert "bottleneck" in rules or "no_plan" in rules


def test_rural_rule_set_is_selectable():
    spec = block_layout(3, 1, np.array([120, 130, 140]))
    from gisgov.gridding.rules import RURAL

    ctx = spec.context(rules=RURAL)
    p = propose(ctx, time_limit_s=1.0)
    assert p.status == "ok" and all(100 <= g["households"] <= 500 for g in p.report["grids"])
    assert p.status == "ok"
    urban = propose(spec.context())
    assert urban.status == "ok" and len(urban.report["grids"]) == 1  # 390 households: one urban grid


def test_boundaries_follow_the_river():
    # 2 rows × 4 columns of 100-household compounds; a river between the rows: grids should not cross it
    spec = block_layout(4, 2, np.full(8, 100))
    spec.rivers = [[(-10, 110), (500, 110)]]
    ctx = spec.context()
    p = propose(ctx, time_limit_s=3.0)
    assert p.status == "ok"
    assert all(g["barrier_crossings"] == 0 for g in p.report["grids"])


def test_repair_moves_only_what_it_must():
    spec = block_layout(6, 1, np.array([150, 150, 150, 150, 150, 150]))
    ctx = spec.context()
    good = np.array([0, 0, 1, 1, 2, 2])
    codes = [f"{CODE}001", f"{CODE}002", f"{CODE}003"]
    res = repair(ctx, PlanInput(codes, good))
    assert res["buildings_moved"] == 0 and res["report"]["ok"]
    bad = np.array([0, 0, 0, 1, 2, 2])  # 450 | 150 | 300: grid 002 under the minimum
    res = repair(ctx, PlanInput(codes, bad))
    assert res["report"]["ok"] and res["buildings_moved"] == 1
    assert res["moved"] == [f"{CODE}00003"]


def test_repair_reunites_a_split_compound_and_places_orphans():
    spec = Spec(
        500,
        140,
        compounds=[
            (20 + i * 120, 20, 120 + i * 120, 120, [(40 + i * 120, 70, 175, 350), (100 + i * 120, 70, 175, 350)])
            for i in range(4)
        ],
    )
    ctx = spec.context()
    codes = [f"{CODE}00{i}" for i in range(1, 5)]
    ag = np.array([0, 1, 1, 1, 2, 2, 3, -1])  # compound 1 split, last building in no grid
    before = validate(ctx, PlanInput(codes, ag))
    assert not before["ok"]
    res = repair(ctx, PlanInput(codes, ag))
    assert res["report"]["ok"], res["report"]["breaks"]
    assert res["buildings_moved"] <= 2
