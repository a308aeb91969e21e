"""A small synthetic city as GeoDataFrames (EPSG:4490) for the pure coverage tests.

Street grid of ``n`` × ``n`` blocks of 100 m (CGCS2000 GK zone 39, EPSG:4527 … here EPSG:4548 at
117°E), a river between y = 540 and 550 m crossed by one bridge at x = 0, buildings along the
streets (two per block side), one walled compound with a gate, facilities of a few categories.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gisgov.coverage.model import CityData

EPSG = 4548  # CGCS2000 3-degree GK, CM 117°E
ORIGIN = (500000.0, 3520000.0)  # false easting; ~31.8°N


def _gdf(df, geoms):
    return gpd.GeoDataFrame(df, geometry=gpd.GeoSeries(geoms, crs=EPSG)).to_crs(4490)


def small_city(n: int = 10, *, seed: int = 1, facilities: dict | None = None) -> CityData:
    rng = np.random.default_rng(seed)
    ox, oy = ORIGIN
    nid = lambda i, j: 1000 + i * 100 + j  # noqa: E731
    edges = []
    for i in range(n + 1):
        for j in range(n + 1):
            x, y = ox + 100 * j, oy + 100 * i
            if j < n:
                edges.append((nid(i, j), nid(i, j + 1), [(x, y), (x + 100, y)]))
            if i < n and not (i == 5 and j > 0):  # the river between rows 5 and 6: one bridge at j = 0
                edges.append((nid(i, j), nid(i + 1, j), [(x, y), (x, y + 100)]))
    geoms = [shapely.LineString(c) for _, _, c in edges]
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
    nodes = {}
    for a, b, c in edges:
        nodes[a], nodes[b] = c[0], c[-1]
    nd = _gdf(pd.DataFrame({"id": list(nodes)}), [shapely.Point(p) for p in nodes.values()])

    # buildings: 2 per block side, 12 m off the street, inside the block
    bx, by = [], []
    for i in range(n):
        for j in range(n):
            x0, y0 = ox + 100 * j, oy + 100 * i
            for f in (0.3, 0.7):
                bx += [x0 + 100 * f, x0 + 100 * f, x0 + 12, x0 + 88]
                by += [y0 + 12, y0 + 88, y0 + 100 * f, y0 + 100 * f]
    bx, by = np.array(bx), np.array(by)
    nb = len(bx)
    comm = np.where(by - oy < 500, "340104001001", "340104001002")
    grid = np.array([c + ("001" if x - ox < 50 * n else "002") for c, x in zip(comm, bx, strict=False)])
    # a walled compound: block (2, 2) .. (3, 3) interior, gate on its south side at x = 250
    cpoly = shapely.box(ox + 205, oy + 205, ox + 395, oy + 395)
    in_comp = shapely.contains_xy(cpoly, bx, by)
    compound = np.where(in_comp, "3401040010010001", None)
    b = _gdf(
        pd.DataFrame(
            {
                "id": np.arange(1, nb + 1),
                "code": [f"{c}{k:05d}" for k, c in enumerate(comm, 1)],
                "street": "340104001",
                "community": comm,
                "grid": grid,
                "compound": compound,
                "compound_id": np.where(in_comp, 77, -1),
                "households": rng.integers(4, 40, nb),
                "residents": 0,
                "rule_set": "urban",
            }
        ),
        shapely.points(bx, by),
    )
    b["residents"] = (b["households"] * 2.5).round().astype(int)
    gates = _gdf(pd.DataFrame({"id": [5], "compound_id": [77], "node_id": [None]}), [shapely.Point(ox + 250, oy + 205)])
    compounds = _gdf(pd.DataFrame({"id": [77], "code": ["3401040010010001"]}), [cpoly])
    barriers = _gdf(pd.DataFrame({"kind": ["river"]}), [shapely.box(ox - 100, oy + 540, ox + 100 * n + 100, oy + 550)])

    facilities = facilities or {
        "weisheng": [(ox + 150, oy + 110, "社区卫生服务站"), (ox + 750, oy + 880, "社区卫生服务中心")],
        "xuexiao": [(ox + 420, oy + 300, "小学"), (ox + 100, oy + 700, "幼儿园")],
        "minzheng": [(ox + 610, oy + 200, "老年人日间照料中心")],
        "dangjian": [(ox + 300, oy + 450, "党群服务中心")],
    }
    rows, pts = [], []
    for cat, items in facilities.items():
        for x, y, kind in items:
            rows.append({"id": 100 + len(rows), "name": f"{kind}{len(rows)}", "category_code": cat, "kind": kind})
            pts.append(shapely.Point(x, y))
    f = _gdf(pd.DataFrame(rows), pts)
    groups = pd.DataFrame({"building_id": b["id"].to_numpy()[::7], "group_code": "dujulaoren", "residents": 1})
    return CityData(
        buildings=b, facilities=f, edges=e, nodes=nd, gates=gates, compounds=compounds, barriers=barriers, groups=groups
    )
