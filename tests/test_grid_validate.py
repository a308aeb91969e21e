"""Validator on hand-built communities with known answers: 1 m gap, 1 m overlap, split compound,
island grid, donut, building in no grid, bounds; codes W→E N→S; incremental moves."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from gisgov.gridding.codes import number
from gisgov.gridding.incremental import PlanEditor
from gisgov.gridding.validate import PlanInput, validate
from tests.grid_city import X0, Y0, Spec, block_layout, row_of_compounds

CODE = "340104001001"


def box(x0, y0, x1, y1):
    """A box in the layout's metres, in the context's metric CRS."""
    return shapely.box(x0 + X0, y0 + Y0, x1 + X0, y1 + Y0)


def local(ctx, geojson):
    from shapely.affinity import translate

    return translate(ctx.to_metric(shapely.geometry.shape(geojson)), -X0, -Y0)


def rules_of(report, rule):
    return [b for b in report["breaks"] if b["rule"] == rule]


@pytest.fixture(scope="module")
def four():
    """4 compounds of 350 households in a row (20..460 m × 20..120 m), community 0..500 × 0..140 m."""
    return row_of_compounds(4, 350).context()


def halves(x_split, w=480.0, h=140.0):
    return [box(0, 0, x_split, h), box(x_split, 0, w, h)]


def test_clean_plan_passes(four):
    polys = [box(0, 0, 130, 140), box(130, 0, 250, 140), box(250, 0, 370, 140), box(370, 0, 500, 140)]
    rep = validate(four, PlanInput([f"{CODE}00{i}" for i in range(1, 5)], None, polys))
    assert rep["ok"], rep["breaks"]
    assert [g["households"] for g in rep["grids"]] == [350] * 4
    assert all(0 < g["polsby_popper"] <= 1 and 0 < g["reock"] <= 1 for g in rep["grids"])


def test_one_metre_gap_found_and_located(four):
    polys = [box(0, 0, 130, 140), box(131, 0, 250, 140), box(250, 0, 370, 140), box(370, 0, 500, 140)]
    rep = validate(four, PlanInput([f"{CODE}00{i}" for i in range(1, 5)], None, polys))
    gaps = rules_of(rep, "gap")
    assert len(gaps) == 1 and not rep["ok"]
    g = local(four, gaps[0]["geometry"])
    assert g.area == pytest.approx(140.0, rel=0.01)  # 1 m × 140 m
    assert g.bounds[0] >= 130 - 0.01 and g.bounds[2] <= 131 + 0.01


def test_one_metre_overlap_found_and_located(four):
    polys = [box(0, 0, 131, 140), box(130, 0, 250, 140), box(250, 0, 370, 140), box(370, 0, 500, 140)]
    rep = validate(four, PlanInput([f"{CODE}00{i}" for i in range(1, 5)], None, polys))
    ov = rules_of(rep, "overlap")
    assert len(ov) == 1 and ov[0]["data"]["other"] == f"{CODE}002"
    g = local(four, ov[0]["geometry"])
    assert g.area == pytest.approx(140.0, rel=0.01)


def test_slivers_below_tolerance_are_not_breaks(four):
    polys = [box(0, 0, 130.2, 140), box(130, 0, 250, 140), box(250.3, 0, 370, 140), box(370, 0, 500, 140)]
    rep = validate(four, PlanInput([f"{CODE}00{i}" for i in range(1, 5)], None, polys))
    assert not rules_of(rep, "overlap") and not rules_of(rep, "gap")


def test_split_compound_and_building_in_no_grid(four):
    ag = np.array([0, 1, 1, 1, 2, 2, 3, -1])  # compound 1's two buildings in grids 0 and 1; last building nowhere
    rep = validate(four, PlanInput([f"{CODE}00{i}" for i in range(1, 5)], ag))
    split = rules_of(rep, "split_compound")
    assert [b["data"]["compound"] for b in split] == [f"{CODE}0001"]
    nog = rules_of(rep, "building_no_grid")
    assert [b["data"]["building"] for b in nog] == [f"{CODE}00008"]
    assert nog[0]["geometry"]["type"] == "Point"
    assert rules_of(rep, "gap")  # the unassigned building's land is a gap too


def test_island_grid(four):
    ag = np.array([0, 0, 1, 1, 0, 0, 1, 1])  # grid 0 = compounds 1 and 3, not adjacent
    rep = validate(four, PlanInput([f"{CODE}001", f"{CODE}002"], ag))
    isl = rules_of(rep, "island")
    assert len(isl) == 2 and {b["grid"] for b in isl} == {f"{CODE}001", f"{CODE}002"}
    # marked as an exception: allowed
    rep2 = validate(four, PlanInput([f"{CODE}001", f"{CODE}002"], ag, None, ["multipart", None]))
    assert {b["grid"] for b in rules_of(rep2, "island")} == {f"{CODE}002"}


def test_donut():
    ring = box(0, 0, 300, 300).difference(box(100, 100, 200, 200))
    inner = box(100, 100, 200, 200)
    spec = Spec(
        300, 300, compounds=[(10, 10, 90, 90, [(50, 50, 400, 800)]), (120, 120, 180, 180, [(150, 150, 400, 800)])]
    )
    ctx = spec.context()
    rep = validate(ctx, PlanInput([f"{CODE}001", f"{CODE}002"], None, [ring, inner]))
    d = rules_of(rep, "donut")
    assert len(d) == 1 and d[0]["grid"] == f"{CODE}001" and d[0]["data"]["enclosed"] == [f"{CODE}002"]


def test_household_and_people_bounds(four):
    ag = np.array([0, 0, 0, 0, 1, 1, 2, 2])  # 700 | 350 | 350
    rep = validate(four, PlanInput([f"{CODE}001", f"{CODE}002", f"{CODE}003"], ag))
    assert [b["grid"] for b in rules_of(rep, "households_over")] == [f"{CODE}001"]
    assert [b["grid"] for b in rules_of(rep, "people_over")] == [f"{CODE}001"]  # 1400 people
    assert [g["status"] for g in rep["grids"]] == ["over", "ok", "ok"]


def test_codes_reading_order():
    # 2 rows × 3 columns, given shuffled; north row first, west to east
    boxes = {(c, r): box(c * 100, r * 100, c * 100 + 100, r * 100 + 100) for c in range(3) for r in range(2)}
    order = [(2, 0), (0, 1), (1, 0), (2, 1), (0, 0), (1, 1)]
    codes = number(CODE, [boxes[k] for k in order])
    got = {k: c[-3:] for k, c in zip(order, codes, strict=False)}
    assert got == {(0, 1): "001", (1, 1): "002", (2, 1): "003", (0, 0): "004", (1, 0): "005", (2, 0): "006"}


def test_incremental_move_and_cut_units():
    spec = block_layout(5, 1, np.array([100, 100, 100, 100, 100]))
    ctx = spec.context()
    ed = PlanEditor(ctx, PlanInput([f"{CODE}001", f"{CODE}002"], np.array([0, 0, 0, 1, 1])))
    a = ed.ctx.compounds.code
    assert ed.stuck_units(0) == [str(a[1])]  # the middle compound holds grid 001 together
    out = ed.move(f"{CODE}002", compound=str(a[2]))
    g1, g2 = out["grids"]
    assert (g1["households"], g2["households"]) == (200, 300)
    assert g1["status"] == "under" and g2["status"] == "ok"
    out = ed.move(f"{CODE}002", compound=str(a[0]))  # leaves grid 001 = compound 2 only; 002 in two pieces
    g1, g2 = out["grids"]
    assert any(b["rule"] == "island" for b in g2["breaks"])
    full = ed.report()
    assert {b["rule"] for b in full["breaks"]} >= {"island", "households_under"}
