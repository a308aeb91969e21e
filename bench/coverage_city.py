"""Synthetic benchmark city for service circles: ~200,000 network nodes, 1,000,000 buildings.

Pure numpy/shapely, deterministic for a seed; coordinates in metres of CGCS2000 GK zone
EPSG:4548 (CM 117°E). The street grid has 100 m blocks with jittered nodes and slightly bent
edges, 3 % of edges missing, 1 % one-way for pedestrians, and a river crossed only by a bridge
every 25 blocks. Buildings are spread uniformly (none in the river); facilities follow the tiers of
the sample city (:mod:`gisgov.sample.facilities`): community-level ones per community, street-level
ones per street, a few city-level ones. Synthetic, not a real place.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gisgov.coverage.model import CityData
from gisgov.network import WalkGraph, build_graph
from gisgov.sample.facilities import CITY_TIER, COMMUNITY_TIER, STREET_TIER

EPSG = 4548
X0, Y0 = 470_000.0, 3_480_000.0
GROUP_RATES = {"dujulaoren": 0.08, "canji": 0.05, "liushouertong": 0.03, "tekun": 0.02}


@dataclass
class BenchCity:
    graph: WalkGraph
    buildings: pd.DataFrame  # id, street, community, grid, compound, compound_id, households, residents, rule_set, x, y
    facilities: pd.DataFrame  # id, name, category_code, kind, x, y
    groups: pd.DataFrame  # building_id, group_code, residents
    barriers: gpd.GeoDataFrame
    node_x: np.ndarray
    node_y: np.ndarray

    def city_data(self) -> CityData:
        return CityData(
            buildings=self.buildings,
            facilities=self.facilities,
            graph=self.graph,
            barriers=self.barriers,
            groups=self.groups,
        )


def _count(rng, spec, n):
    if spec == "half":
        return (rng.random(n) < 0.5).astype(int)
    if isinstance(spec, tuple):
        return rng.integers(spec[0], spec[1] + 1, n)
    if isinstance(spec, float) and spec < 1:
        return (rng.random(n) < spec).astype(int)
    return np.full(n, int(spec))


def bench_city(
    n_buildings: int = 1_000_000,
    side: int = 450,
    *,
    seed: int = 42,
    block: float = 100.0,
    streets: int = 15,
    communities: int = 60,
    grids: int = 180,
) -> BenchCity:
    rng = np.random.default_rng(seed)
    size = (side - 1) * block
    ii, jj = np.divmod(np.arange(side * side), side)  # row, column
    nx = X0 + jj * block + rng.uniform(-20, 20, side * side)
    ny = Y0 + ii * block + rng.uniform(-20, 20, side * side)
    river_row = side * 4 // 9  # river between this row and the next
    idx = np.arange(side * side).reshape(side, side)
    hu, hv = idx[:, :-1].ravel(), idx[:, 1:].ravel()
    vu, vv = idx[:-1, :].ravel(), idx[1:, :].ravel()
    crosses = (ii[vu] == river_row) & (jj[vu] % 25 != 12)  # a bridge every 25 columns
    vu, vv = vu[~crosses], vv[~crosses]
    u = np.concatenate([hu, vu])
    v = np.concatenate([hv, vv])
    keep = rng.random(len(u)) >= 0.03
    keep[len(hu) :][jj[vu] % 25 == 12] = True  # bridges always kept
    u, v = u[keep], v[keep]
    mx = (nx[u] + nx[v]) / 2 + rng.uniform(-8, 8, len(u))
    my = (ny[u] + ny[v]) / 2 + rng.uniform(-8, 8, len(u))
    coords = np.stack([np.stack([nx[u], mx, nx[v]], 1), np.stack([ny[u], my, ny[v]], 1)], 2)
    geoms = shapely.linestrings(coords)
    graph = build_graph(
        u,
        v,
        shapely.length(geoms),
        geoms,
        epsg=EPSG,
        edge_ids=np.arange(1, len(u) + 1),
        oneway_foot=rng.random(len(u)) < 0.01,
    )
    river_y = Y0 + (river_row + 0.5) * block
    river = shapely.box(X0 - block, river_y - 15, X0 + size + block, river_y + 15)

    bx = X0 + rng.uniform(0, size, n_buildings)
    by = Y0 + rng.uniform(0, size, n_buildings)
    wet = np.abs(by - river_y) < 20
    by[wet] += np.where(by[wet] < river_y, -25.0, 25.0)

    def binned(x, y, k):
        cx = np.clip(((x - X0) / size * k).astype(int), 0, k - 1)
        cy = np.clip(((y - Y0) / size * k).astype(int), 0, k - 1)
        return cy * k + cx

    st = binned(bx, by, streets)
    cm = binned(bx, by, communities)
    gr = binned(bx, by, grids)
    street_code = np.array([f"340104{i + 1:03d}" for i in range(streets * streets)])
    # a community bin sits in exactly one street bin when communities is a multiple of streets
    comm_street = binned(
        X0 + (np.arange(communities * communities) % communities + 0.5) * size / communities,
        Y0 + (np.arange(communities * communities) // communities + 0.5) * size / communities,
        streets,
    )
    comm_code = np.array([f"{street_code[s]}{i % 1000:03d}" for i, s in enumerate(comm_street)])
    grid_comm = binned(
        X0 + (np.arange(grids * grids) % grids + 0.5) * size / grids,
        Y0 + (np.arange(grids * grids) // grids + 0.5) * size / grids,
        communities,
    )
    grid_code = np.array([f"{comm_code[c]}{i % 1000:03d}" for i, c in enumerate(grid_comm)])
    compound = binned(bx, by, side // 3)  # ~300 m compounds
    in_compound = rng.random(n_buildings) < 0.6
    hh = rng.integers(6, 60, n_buildings).astype(float)
    buildings = pd.DataFrame(
        {
            "id": np.arange(1, n_buildings + 1),
            "street": street_code[st],
            "community": comm_code[cm],
            "grid": grid_code[gr],
            "compound": np.where(in_compound, compound.astype(str), None),
            "compound_id": -1,
            "households": hh,
            "residents": np.round(hh * 2.6).astype(np.int64),
            "rule_set": "urban",
            "x": bx,
            "y": by,
        }
    )

    rows = []

    def place(cat, kind, label, cx0, cy0, w, h, k):
        for _ in range(k):
            rows.append((cat, kind, label, cx0 + rng.uniform(0, w), cy0 + rng.uniform(0, h)))

    for _level, tier, k_units in (("community", COMMUNITY_TIER, communities), ("street", STREET_TIER, streets)):
        w = size / k_units
        for cat, kind, spec in tier:
            counts = _count(rng, spec, k_units * k_units)
            for unit in np.flatnonzero(counts):
                cx0, cy0 = X0 + (unit % k_units) * w, Y0 + (unit // k_units) * w
                place(cat, kind, f"{kind}", cx0, cy0, w, w, int(counts[unit]))
    for cat, kind, label in CITY_TIER:
        place(cat, kind, label, X0, Y0, size, size, 1)
    f = pd.DataFrame(rows, columns=["category_code", "kind", "name", "x", "y"])
    fwet = np.abs(f["y"] - river_y) < 20
    f.loc[fwet, "y"] += 25.0
    f.insert(0, "id", np.arange(1, len(f) + 1))

    grp = []
    for g, rate in GROUP_RATES.items():
        n = rng.poisson(rate, n_buildings)
        nz = np.flatnonzero(n)
        grp.append(pd.DataFrame({"building_id": nz + 1, "group_code": g, "residents": n[nz]}))
    barriers = gpd.GeoDataFrame({"kind": ["river"]}, geometry=[river], crs=EPSG)
    return BenchCity(graph, buildings, f, pd.concat(grp, ignore_index=True), barriers, nx, ny)
