"""Snapping next to a disconnected fragment (issue 11, item 11).

On a real city a building lay 0.9 m closer to an isolated 40 m path (a courtyard way mapped without
its connection) than to the main street: it snapped to the path and was unreachable for every
category. A point now joins the main network when its edge there is at most ``fragment_extra_m``
(catalog ``network``, default 25 m) farther than the fragment; fragments are reported (count,
length) in the graph report that the compute report prints.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from gisgov.coverage.catalog import load_catalog
from gisgov.coverage.model import CityData, CoverageModel

EPSG = 4548
OX, OY = 500000.0, 3520000.0


def _gdf(df, geoms):
    return gpd.GeoDataFrame(df, geometry=gpd.GeoSeries(geoms, crs=EPSG)).to_crs(4490)


def grid_with_fragment(buildings: list[tuple[float, float]]) -> CityData:
    """A 4 × 2 grid of 100 m blocks (south street y = 0) and, north of that street, an isolated
    40 m path from (80, 20.9) to (120, 20.9) joined to nothing; east of the grid (x ≤ 300) a 30 m
    path from (405, -50) to (435, -50)."""
    nid = lambda i, j: 1000 + 10 * i + j  # noqa: E731
    edges = []
    for i in range(3):
        for j in range(5):
            x, y = 100 * j - 100, -100 * i
            if j < 4:
                edges.append((nid(i, j), nid(i, j + 1), [(x, y), (x + 100, y)]))
            if i < 2:
                edges.append((nid(i, j), nid(i + 1, j), [(x, y), (x, y - 100)]))
    edges.append((1, 2, [(80, 20.9), (120, 20.9)]))  # the fragment next to the main street
    edges.append((3, 4, [(405, -50), (435, -50)]))  # a 30 m fragment 105 m east of the grid
    geoms = [shapely.LineString([(OX + a, OY + b) for a, b in c]) for _, _, c in edges]
    e = _gdf(
        pd.DataFrame(
            {
                "id": np.arange(1, len(edges) + 1),
                "source": [a for a, _, _ in edges],
                "target": [b for _, b, _ in edges],
                "length_m": [g.length for g in geoms],
                "foot": True,
                "oneway_foot": False,
            }
        ),
        geoms,
    )
    nb = len(buildings)
    b = _gdf(
        pd.DataFrame(
            {
                "id": np.arange(1, nb + 1),
                "code": [f"3401040010010000{k}" for k in range(nb)],
                "street": "340104001",
                "community": "340104001001",
                "grid": "340104001001001",
                "compound": None,
                "compound_id": -1,
                "households": 10,
                "residents": 25,
                "rule_set": "urban",
            }
        ),
        [shapely.Point(OX + x, OY + y) for x, y in buildings],
    )
    f = _gdf(
        pd.DataFrame({"id": [100], "name": ["卫生站"], "category_code": ["weisheng"], "kind": ["社区卫生服务站"]}),
        [shapely.Point(OX + 150, OY - 5)],
    )
    return CityData(buildings=b, facilities=f, edges=e)


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def test_building_next_to_an_isolated_path_reaches_the_main_street(catalog):
    # building 0: 10.0 m from the fragment, 10.9 m from the main street (the real case: 0.9 m closer)
    # building 1: 3 m from the east fragment, 120 m from the grid: stays on it (reported, unreachable)
    city = grid_with_fragment([(100, 10.9), (420, -47)])
    m = CoverageModel(city, catalog.network, catalog.distance_cap_m)
    t = m.compute(catalog, ["weisheng"])
    d = t.dist[:, 0].astype(float)
    # 10.9 m leg + 50 m along the street to x = 150 + the facility's 5 m leg
    assert d[0] == pytest.approx(10.9 + 50 + 5, abs=0.05)
    assert m.bsnap.leg[0] == pytest.approx(10.9, abs=0.01)
    assert m.graph.edge_component[m.bsnap.edge[0]] == 0
    assert not np.isfinite(d[1])
    s = m.snap_summary()
    assert s["minor_component"] == 1  # building 1 only
    assert s.get("main_preferred") == 1  # building 0 joined the main network
    problems = m.problem_buildings()
    assert problems["building_id"].tolist() == [2] and "minor_component" in problems["flags"].iloc[0]


def test_fragments_are_reported_with_their_length(catalog):
    m = CoverageModel(grid_with_fragment([(100, 10.9)]), catalog.network, catalog.distance_cap_m)
    rep = m.snap_summary()["network"]
    assert rep["components"] == 3 and rep["minor_components"] == 2
    assert rep["minor_component_km"] == pytest.approx(0.07, abs=1e-3)
    assert [(f["edges"], f["length_m"]) for f in rep["fragments"]] == [
        (1, pytest.approx(40.0, abs=0.1)),
        (1, pytest.approx(30.0, abs=0.1)),
    ]


def test_the_allowance_is_a_setting(catalog):
    from dataclasses import replace

    city = grid_with_fragment([(100, 10.9)])
    strict = replace(catalog.network, fragment_extra_m=0.5)  # 0.9 m farther is too far now
    m = CoverageModel(city, strict, catalog.distance_cap_m)
    assert not np.isfinite(m.compute(catalog, ["weisheng"]).dist[0, 0])
    assert m.snap_summary()["minor_component"] == 1


def test_snap_points_prefers_the_main_network_directly():
    from gisgov.network import build_graph
    from gisgov.network.snap import FLAG_MAIN_PREFERRED, FLAG_MINOR_COMPONENT, snap_points

    geoms = np.array(
        [
            shapely.LineString([(0, 0), (100, 0)]),
            shapely.LineString([(100, 0), (200, 0)]),
            shapely.LineString([(80, 20.9), (120, 20.9)]),
        ],
        dtype=object,
    )
    g = build_graph(np.array([1, 2, 10]), np.array([2, 3, 11]), np.array([100.0, 100.0, 40.0]), geoms, epsg=EPSG)
    s = snap_points(g, np.array([100.0, 100.0]), np.array([10.9, 18.0]))
    assert s.flags[0] & FLAG_MAIN_PREFERRED and not s.flags[0] & FLAG_MINOR_COMPONENT
    assert s.y[0] == pytest.approx(0.0) and s.leg[0] == pytest.approx(10.9)
    assert s.flags[1] & FLAG_MAIN_PREFERRED and s.leg[1] == pytest.approx(18.0)  # 15.1 m farther: within 25 m
    near = snap_points(g, np.array([100.0]), np.array([18.0]), fragment_extra_m=15.0)  # … but not within 15 m
    assert near.flags[0] & FLAG_MINOR_COMPONENT and near.leg[0] == pytest.approx(2.9)
    off = snap_points(g, np.array([100.0]), np.array([10.9]), fragment_extra_m=-1)  # negative: never moves
    assert off.flags[0] & FLAG_MINOR_COMPONENT and off.leg[0] == pytest.approx(10.0)
