"""Service circles, pure part: catalog, distances, figures, service areas, what-if, siting."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import shapely
from coverage_city import ORIGIN, small_city
from scipy import sparse

from gisgov.coverage import areas, siting, whatif
from gisgov.coverage.catalog import CatalogError, load_catalog, parse_catalog
from gisgov.coverage.figures import complete_mask, coverage_figures, group_figures, with_shares
from gisgov.coverage.model import NETWORK, STRAIGHT_LINE, CoverageModel

OX, OY = ORIGIN


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.fixture(scope="module")
def model(catalog):
    return CoverageModel(small_city(), catalog.network, catalog.distance_cap_m)


@pytest.fixture(scope="module")
def table(model, catalog):
    return model.compute(catalog)


def _bi(model, x, y):
    """Index of the building at local metres (x, y)."""
    d = np.hypot(model.buildings["x"] - OX - x, model.buildings["y"] - OY - y)
    i = int(np.argmin(d))
    assert d[i] < 0.01
    return i


# --- catalog ---------------------------------------------------------------------------------------


def test_catalog_defaults(catalog):
    assert [c.code for c in catalog.circles] == ["c5", "c10", "c15", "c30"]
    assert catalog.budget_m("c5", "standard") == 300 and catalog.budget_m("c15", "standard") == 1000
    assert catalog.budget_m("c10", "elderly") == pytest.approx(480)
    assert len([c for c in catalog.categories if c.select[0].kinds == ()]) >= 16
    gb = catalog.standard("gb50180")
    req = gb.requirements("c15")
    assert ("gb_kindergarten", "c5") in req and ("gb_primary_school", "c10") in req and ("gb_police", "c15") in req
    assert "GB 50180-2018" in catalog.circle("c5").source


def test_catalog_errors_name_entry_and_rule(catalog):
    doc = {
        "circles": [{"code": "c5", "minutes": 5, "distance_m": 300}],
        "categories": [{"code": "a", "select": [{"category": "weisheng"}]}],
        "standards": [{"code": "s", "tiers": {"c5": ["nope"]}}],
        "distance_cap_m": 1000,
    }
    with pytest.raises(CatalogError, match=r"standard 's' tier 'c5': unknown category 'nope'.*category_exists"):
        parse_catalog(doc)
    doc["standards"] = []
    doc["distance_cap_m"] = 100
    with pytest.raises(CatalogError, match="cap_covers_circles"):
        parse_catalog(doc)
    doc["distance_cap_m"] = 1000
    doc["profiles"] = [{"code": "fast", "speed_mps": 9}]
    with pytest.raises(CatalogError, match=r"profile 'fast'.*walking_speed"):
        parse_catalog(doc)


# --- distances -------------------------------------------------------------------------------------


def test_distances_hand_checked(model, table):
    assert model.method == NETWORK
    j = table.col("weisheng")
    # building (30, 12) → street y=0 (12 m) → … facility at (150, 110): 12 + 70 + 100 + 50 + 10 along/legs
    i = _bi(model, 30, 12)
    assert table.dist[i, j] == pytest.approx(12 + 70 + 100 + 50 + 10, abs=0.01)
    # north of the river (row 6) the walk goes over the only bridge at x = 0
    k = _bi(model, 130, 612)
    straight = np.hypot(150 - 130, 612 - 110)
    assert table.dist[k, j] > straight + 150
    # both 'weisheng' facilities selected, nearest one recorded
    assert model.facilities["category_code"].to_numpy()[table.fac[i, j]] == "weisheng"


def test_categories_with_same_facilities_share_one_pass(model, table, catalog):
    # gb_daycare selects the 日间照料中心 of minzheng; so does the minzheng column at that place
    a, b = table.col("gb_daycare"), table.col("minzheng")
    assert np.array_equal(table.dist[:, a], table.dist[:, b])
    assert np.isinf(table.dist[:, table.col("gongan")]).all()  # no police in this city


def test_compound_buildings_route_through_the_gate(model, table):
    # building (388, 370) inside the walled compound: nearest street is x=400, but the wall forces
    # the gate at (250, 205)
    i = _bi(model, 388, 370)
    assert model.bsnap.flags[i] & 8
    j = table.col("xuexiao")  # 小学 at (420, 300), just outside the wall on street x=400
    assert table.dist[i, j] > np.hypot(388 - 250, 370 - 205)


def test_straight_line_fallback_is_labelled(catalog):
    city = small_city()
    city.edges = None
    m = CoverageModel(city, catalog.network, catalog.distance_cap_m)
    assert m.method == STRAIGHT_LINE
    t = m.compute(catalog, ["weisheng"])
    assert t.method == STRAIGHT_LINE
    f = m.facilities[m.facilities["category_code"] == "weisheng"]
    b = m.buildings
    d = (
        np.min(
            np.hypot(
                b["x"].to_numpy()[:, None] - f["x"].to_numpy()[None, :],
                b["y"].to_numpy()[:, None] - f["y"].to_numpy()[None, :],
            ),
            axis=1,
        )
        * 1.3
    )
    d[d > catalog.distance_cap_m] = np.inf
    assert np.allclose(t.dist[:, 0], d, rtol=1e-5)
    assert m.snap_summary()["no_network"] == len(b)


# --- figures ---------------------------------------------------------------------------------------


def test_figures_add_up_and_match_distances(model, table, catalog):
    fig = coverage_figures(model.buildings, table, catalog)
    b = model.buildings
    d = table.dist[:, table.col("weisheng")]
    row = fig[(fig.level == "street") & (fig.item == "weisheng") & (fig.profile == "standard") & (fig.circle == "c10")]
    assert len(row) == 1
    assert row.buildings.iloc[0] == len(b)
    assert row.buildings_in.iloc[0] == int((d <= 500).sum())
    assert row.households_in.iloc[0] == pytest.approx(b["households"].to_numpy()[d <= 500].sum())
    comm = fig[
        (fig.level == "community") & (fig.item == "weisheng") & (fig.profile == "standard") & (fig.circle == "c10")
    ]
    assert comm.buildings_in.sum() == row.buildings_in.iloc[0]
    grid = fig[(fig.level == "grid") & (fig.item == "weisheng") & (fig.profile == "standard") & (fig.circle == "c10")]
    assert grid.households_in.sum() == pytest.approx(row.households_in.iloc[0])
    cpd = fig[(fig.level == "compound") & (fig.item == "weisheng")]
    assert set(cpd.code) == {"3401040010010001"} and (cpd.buildings == 32).all()
    # elderly budget is smaller: never more covered
    eld = fig[(fig.level == "street") & (fig.item == "weisheng") & (fig.profile == "elderly") & (fig.circle == "c10")]
    assert eld.buildings_in.iloc[0] <= row.buildings_in.iloc[0]
    shares = with_shares(row)
    assert shares.share_buildings.iloc[0] == pytest.approx((d <= 500).mean())


def test_complete_circle_is_cumulative(model, table, catalog):
    ok = complete_mask(table, catalog, "party10", "c10", "standard")
    assert np.array_equal(ok, table.dist[:, table.col("dangjian")] <= 500)
    # gb50180: a tier needs its own and the lower tiers' categories; this city lacks most → nobody
    assert not complete_mask(table, catalog, "gb50180", "c5", "standard").any()
    fig = coverage_figures(model.buildings, table, catalog)
    p = fig[
        (fig.level == "street") & (fig.item_kind == "complete") & (fig.item == "party10") & (fig.profile == "standard")
    ]
    assert p.buildings_in.iloc[0] == ok.sum()
    assert fig[(fig.item == "report16_village")].empty  # no rural community in this city


def test_special_groups_counted(model, table, catalog):
    city = small_city()
    g = group_figures(model.buildings, city.groups, table, catalog)
    st = g[(g.level == "street") & (g.group_code == "dujulaoren")]
    ids = city.groups["building_id"].to_numpy()
    d = table.dist[ids - 1, table.col("gb_daycare")]
    assert st.residents.iloc[0] == len(ids)
    assert st.beyond.iloc[0] == int((d > catalog.budget_m("c10", "elderly")).sum())


# --- service areas and gaps -----------------------------------------------------------------------


@pytest.mark.parametrize("category", ["weisheng", "xuexiao", "dangjian"])
@pytest.mark.parametrize("budget", [300.0, 500.0, 1000.0])
def test_service_area_acceptance(model, table, category, budget):
    d = table.dist[:, table.col(category)].astype(float)
    area = areas.service_area(model, model.category_rows(load_catalog().category(category)), budget, d)
    pts = shapely.points(model.buildings["x"], model.buildings["y"])
    inside = shapely.contains(area, pts)
    reach = d <= budget
    assert not (inside & ~reach).any(), "a building beyond the budget lies inside the service area"
    assert inside[reach].mean() >= 0.99
    assert reach.sum() > 0
    # not a hull: north of the river (one bridge at x = 0) most of the land is outside at 300 m
    if category == "weisheng" and budget == 300:
        assert not area.contains(shapely.Point(OX + 150, OY + 650))


def test_partial_edges_are_cut_at_the_exact_offset(model):
    # one facility at (150, 110): on street y=100 at offset 50 with a 10 m leg; its end nodes are
    # 60 m away, so a 55 m budget reaches [5, 95] of that edge and nothing else, 30 m → [30, 70]
    from gisgov.network import node_distances

    rows = np.flatnonzero(model.facilities["kind"].to_numpy() == "社区卫生服务站")
    s = model.sources(rows)
    for budget, expect in ((55.0, [5.0, 95.0]), (30.0, [30.0, 70.0])):
        nd = node_distances(model.graph, s, limit=budget)
        full, partial = areas.reachable_intervals(model, s, nd, budget)
        assert len(full) == 0 and list(partial) == [int(s.edge[0])]
        assert areas._merge(partial[int(s.edge[0])]) == [[pytest.approx(expect[0]), pytest.approx(expect[1])]]
    nd = node_distances(model.graph, s, limit=161)
    full, partial = areas.reachable_intervals(model, s, nd, 161)
    # at 161 m: the facility's edge and the 3 + 3 other 100 m edges at its two end nodes, entirely;
    # 1 m into each edge beyond those
    assert int(s.edge[0]) in set(full.tolist()) and len(full) == 7
    assert all(
        areas._merge(iv)[0][1] - areas._merge(iv)[0][0] == pytest.approx(1.0, abs=1e-3)
        for e, iv in partial.items()
        if e not in set(full.tolist())
    )


def test_per_facility_area_and_gaps(model, table, catalog):
    rows = model.category_rows(catalog.category("weisheng"))
    d1, _ = model.distances_from_rows(rows[:1])
    a1 = areas.service_area(model, rows[:1], 500, d1)
    both = areas.service_area(model, rows, 500, table.dist[:, table.col("weisheng")].astype(float))
    assert a1.area < both.area
    gaps = areas.gap_areas(model, table.dist[:, table.col("weisheng")], 500)
    beyond = ~(table.dist[:, table.col("weisheng")] <= 500)
    assert gaps.buildings.sum() == beyond.sum()
    assert gaps.households.sum() == pytest.approx(model.buildings["households"].to_numpy()[beyond].sum())


# --- what-if -----------------------------------------------------------------------------------------


def _col(table, model, code, catalog):
    j = table.col(code)
    return model.category_rows(catalog.category(code)), table.dist[:, j].astype(float), table.fac[:, j].astype(np.int64)


def test_whatif_add_changes_only_its_category(model, table, catalog):
    _rows, d, f = _col(table, model, "weisheng", catalog)
    w = whatif.add(model, "weisheng", d, f, OX + 650, OY + 620)
    assert len(w.changed) > 0 and (w.after <= d).all() and (w.after[w.changed] < d[w.changed]).all()
    # exact: same as computing with the facility really there
    city = small_city()
    extra = city.facilities.iloc[:1].copy()
    extra["id"], extra["kind"] = 999, "社区卫生服务站"
    extra = extra.set_geometry(model.geoseries([shapely.Point(OX + 650, OY + 620)]).to_numpy())
    import geopandas as gpd

    city.facilities = gpd.GeoDataFrame(pd.concat([city.facilities, extra], ignore_index=True), crs=4490)
    m2 = CoverageModel(city, catalog.network, catalog.distance_cap_m)
    full, _ = m2.distances_from_rows(m2.category_rows(catalog.category("weisheng")))
    assert np.allclose(w.after, full, atol=0.01)
    new = table.replace("weisheng", w.after, w.fac_after)
    before = coverage_figures(model.buildings, table, catalog)
    after = coverage_figures(model.buildings, new, catalog)
    key = ["level", "code", "item_kind", "item", "profile", "circle"]
    m = before.merge(after, on=key, suffixes=("_b", "_a"))
    other = m[(m.item_kind == "category") & (m.item != "weisheng")]
    assert (other.buildings_in_b == other.buildings_in_a).all()
    mine = m[(m.item == "weisheng") & (m.level == "street") & (m.profile == "standard") & (m.circle == "c10")]
    assert mine.buildings_in_a.iloc[0] == mine.buildings_in_b.iloc[0] + int(((w.after <= 500) & ~(d <= 500)).sum())
    assert mine.buildings_in_a.iloc[0] > mine.buildings_in_b.iloc[0]


def test_whatif_remove_and_move_match_a_full_recompute(model, table, catalog):
    rows, d, f = _col(table, model, "xuexiao", catalog)
    r = whatif.remove(model, "xuexiao", rows, d, f, rows[0])
    full, _ffull = model.distances_from_rows(rows[1:])
    assert np.array_equal(np.isinf(r.after), np.isinf(full))
    fin = np.isfinite(full)
    assert np.allclose(r.after[fin], full[fin], atol=1e-6)
    assert len(r.changed) > 0
    mv = whatif.move(model, "xuexiao", rows, d, f, rows[0], OX + 820, OY + 150)
    assert (mv.after[mv.changed] != d[mv.changed]).all()
    assert mv.op == "move"


# --- siting -------------------------------------------------------------------------------------------


def _brute(a: sparse.csr_matrix, w: np.ndarray, k: int | None):
    a = a.toarray()
    best = None
    n = a.shape[0]
    if k is not None:
        for combo in itertools.combinations(range(n), k):
            val = w[a[list(combo)].any(0)].sum()
            best = val if best is None or val > best else best
        return best
    need = a.any(0)
    for size in range(1, n + 1):
        for combo in itertools.combinations(range(n), size):
            if (a[list(combo)].any(0) == need).all():
                return size
    return None


def test_mclp_and_lscp_optimal_on_small_instance():
    rng = np.random.default_rng(3)
    for _trial in range(5):
        a = sparse.csr_matrix(rng.random((9, 30)) < 0.18)
        w = rng.integers(1, 50, 30).astype(float)
        for k in (1, 2, 3):
            picks, gains, method, optimal = siting.solve(a, w, k=k)
            assert method == "highs" and optimal
            assert len(picks) <= k
            cov = np.asarray(a[picks].sum(0)).ravel() > 0 if picks else np.zeros(30, bool)
            assert w[cov].sum() == pytest.approx(_brute(a, w, k))
            assert sum(gains) == pytest.approx(w[cov].sum())
        picks, _, method, optimal = siting.solve(a, w, k=None)
        assert optimal and len(picks) == _brute(a, w, None)
        # greedy path (exact disabled) is feasible and never better than exact
        gp, _, gm, _ = siting.solve(a, w, k=None, exact_limit=0)
        assert gm == "greedy" and len(gp) >= len(picks)


def test_site_on_the_city(model, table, catalog):
    _rows, d, f = _col(table, model, "weisheng", catalog)
    b = model.buildings
    res = siting.site(
        model, d, 500.0, demand_mask=np.ones(len(b), bool), candidates=(b["x"].to_numpy(), b["y"].to_numpy()), k=2
    )
    assert res.method == "highs" and res.optimal and len(res.sites) == 2
    assert res.gain_households[0] >= res.gain_households[1] > 0
    # check the claim: add both sites, recompute, the newly covered households match
    after = d.copy()
    for s in res.sites:
        w = whatif.add(model, "weisheng", after, f, b["x"].iloc[s], b["y"].iloc[s])
        after = w.after
    hh = b["households"].to_numpy(float)
    gained = hh[(after <= 500) & ~(d <= 500)].sum()
    assert gained == pytest.approx(res.covered_households)
    lscp = siting.site(
        model, d, 500.0, demand_mask=np.ones(len(b), bool), candidates=(b["x"].to_numpy(), b["y"].to_numpy()), k=None
    )
    assert lscp.covered_buildings + lscp.uncoverable_buildings == lscp.demand_buildings
    assert len(lscp.sites) >= 2


def test_shared_and_union_columns_equal_direct_computation(model, table, catalog):
    """compute() shares columns, builds unions from parts and skips empty sets: same as one pass each."""
    plan = model.last_plan
    assert plan["dijkstra"] < plan["categories"] and plan["unions"] + plan["shared"] + plan["empty"] > 0
    for c in catalog.categories:
        d, f = model.distances_from_rows(model.category_rows(c))
        j = table.col(c.code)
        assert np.array_equal(np.isinf(d), np.isinf(table.dist[:, j])), c.code
        fin = np.isfinite(d)
        assert np.allclose(d[fin], table.dist[fin, j], atol=1e-3), c.code
        # the recorded facility is one at that distance (ties may pick another)
        same = table.fac[:, j] == f
        assert same.mean() > 0.99, c.code


def test_parallel_workers_give_the_same_table(model, table, catalog):
    t2 = model.compute(catalog, workers=2)
    assert np.array_equal(t2.dist, table.dist) and np.array_equal(t2.fac, table.fac)


def test_straight_line_fallback_supports_areas_whatif_and_siting(catalog):
    city = small_city()
    city.edges = None
    m = CoverageModel(city, catalog.network, catalog.distance_cap_m)
    t = m.compute(catalog, ["weisheng"])
    rows, d, f = m.category_rows(catalog.category("weisheng")), t.dist[:, 0].astype(float), t.fac[:, 0].astype(np.int64)
    area = areas.service_area(m, rows, 500.0, d)
    inside = shapely.contains_xy(area, m.buildings["x"].to_numpy(), m.buildings["y"].to_numpy())
    assert not (inside & ~(d <= 500)).any() and inside[d <= 500].mean() >= 0.99
    w = whatif.add(m, "weisheng", d, f, OX + 650, OY + 620)
    near = np.hypot(m.buildings["x"] - OX - 650, m.buildings["y"] - OY - 620).to_numpy() * 1.3
    assert np.allclose(w.after, np.minimum(d, np.where(near <= catalog.distance_cap_m, near, np.inf)))
    b = m.buildings
    res = siting.site(
        m, d, 500.0, demand_mask=np.ones(len(b), bool), candidates=(b["x"].to_numpy(), b["y"].to_numpy()), k=2
    )
    assert len(res.sites) == 2 and res.covered_households > 0
