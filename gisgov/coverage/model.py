"""The in-memory coverage model: graph, snapped buildings and facilities, distances per category.

Built once from a :class:`CityData` (GeoDataFrames, from PostGIS or from an OSM file) and kept in
memory by the service; pure computation, no database. When the city has no walking network the
model falls back to straight line × detour factor, and says so (``method = "straight_line"``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from gisgov.coverage.catalog import Catalog, Category, NetworkParams
from gisgov.crs import metric_epsg_for_bounds
from gisgov.errors import InvalidInput
from gisgov.network import (
    FLAG_NO_NETWORK,
    Access,
    Snap,
    Sources,
    WalkGraph,
    building_access,
    graph_from_edges,
    node_distances,
    point_distances,
    snap_points,
)

NETWORK = "network"
STRAIGHT_LINE = "straight_line"

Progress = Callable[[str, int, int], None]


@dataclass
class CityData:
    """What coverage needs, as (Geo)DataFrames in any CRS (lon/lat 4490 from PostGIS).

    buildings: id, geometry (point), households, residents, street, community, grid, compound,
               compound_id, rule_set (urban|rural); optional footprint (GeoSeries, same CRS)
    facilities: id, name, category_code, kind, geometry (point)
    edges: id, source, target, length_m, foot, oneway_foot, geometry (LineString) — or None
    nodes: id, geometry; gates: id, compound_id, node_id, geometry; compounds: id, geometry;
    barriers: kind, geometry; groups: building_id, group_code, residents
    """

    buildings: gpd.GeoDataFrame
    facilities: gpd.GeoDataFrame
    edges: gpd.GeoDataFrame | None = None
    nodes: gpd.GeoDataFrame | None = None
    gates: gpd.GeoDataFrame | None = None
    compounds: gpd.GeoDataFrame | None = None
    barriers: gpd.GeoDataFrame | None = None
    groups: pd.DataFrame | None = None
    footprints: gpd.GeoSeries | None = None


@dataclass
class DistanceTable:
    """Distance (m) from every building to the nearest facility of each category."""

    categories: list[str]
    dist: np.ndarray          # (n_buildings, n_categories) float32, inf = beyond the cap / unreachable
    fac: np.ndarray           # (n_buildings, n_categories) int32 facility row, -1 = none
    method: str
    seconds: dict = field(default_factory=dict)

    def col(self, code: str) -> int:
        try:
            return self.categories.index(code)
        except ValueError:
            raise InvalidInput(f"category {code!r} was not computed; computed: {', '.join(self.categories)}") from None

    def replace(self, code: str, dist: np.ndarray, fac: np.ndarray) -> DistanceTable:
        """A copy with one category's column replaced (the others are shared, not copied)."""
        j = self.col(code)
        d, f = self.dist.copy(), self.fac.copy()
        d[:, j], f[:, j] = dist, fac
        return DistanceTable(self.categories, d, f, self.method, dict(self.seconds))


def _metric(gdf, epsg):
    if gdf is None or len(gdf) == 0:
        return gdf
    if gdf.crs is None:
        raise InvalidInput("input layer has no CRS (rule: crs_required)")
    return gdf.to_crs(epsg)


class CoverageModel:
    """Graph + snaps held in memory; answers distance questions for any facility subset."""

    def __init__(self, city: CityData, params: NetworkParams, cap: float, *, epsg: int | None = None,
                 progress: Progress | None = None):
        t0 = time.perf_counter()
        self.params, self.cap = params, float(cap)
        b = city.buildings
        if len(b) == 0:
            raise InvalidInput("no buildings to compute coverage for (rule: buildings_required)")
        if epsg is None:
            ref = city.edges if city.edges is not None and len(city.edges) else b
            epsg = metric_epsg_for_bounds(tuple(ref.to_crs(4326).total_bounds))
        self.epsg = epsg
        bm = _metric(b, epsg)
        self.buildings = pd.DataFrame(b.drop(columns=b.geometry.name))
        self.buildings["x"] = bm.geometry.x.to_numpy()
        self.buildings["y"] = bm.geometry.y.to_numpy()
        self.footprints = None if city.footprints is None else city.footprints.to_crs(epsg).to_numpy()
        self.barriers = None
        if city.barriers is not None and len(city.barriers):
            self.barriers = _metric(city.barriers, epsg).geometry.to_numpy()
        self.seconds: dict[str, float] = {}
        self.gate_xy = pd.Series(dtype=object)

        self.graph: WalkGraph | None = None
        if city.edges is not None and len(city.edges):
            if progress:
                progress("graph", 0, 1)
            self.graph = graph_from_edges(city.edges, epsg=epsg, nodes=city.nodes)
            self.seconds["graph"] = time.perf_counter() - t0
            if progress:
                progress("graph", 1, 1)
        self.method = NETWORK if self.graph is not None and self.graph.n_edges else STRAIGHT_LINE

        t1 = time.perf_counter()
        bx, by = self.buildings["x"].to_numpy(), self.buildings["y"].to_numpy()
        if self.method == NETWORK:
            kw = dict(barriers=self.barriers, max_snap_m=params.max_snap_m, reroute_radius_m=params.reroute_radius_m)
            snap = snap_points(self.graph, bx, by, **kw)
            gates = None
            if city.gates is not None and len(city.gates):
                gm = _metric(city.gates, epsg)
                gates = pd.DataFrame({"id": gm["id"].to_numpy(np.int64), "compound_id": gm["compound_id"].to_numpy(np.int64),
                                      "node_id": gm.get("node_id"), "x": gm.geometry.x.to_numpy(),
                                      "y": gm.geometry.y.to_numpy()})
            cgeoms = None
            if city.compounds is not None and len(city.compounds):
                cm = _metric(city.compounds, epsg)
                cgeoms = pd.Series(cm.geometry.to_numpy(), index=cm["id"].to_numpy(np.int64))
            comp = pd.to_numeric(self.buildings.get("compound_id"), errors="coerce")
            comp = np.full(len(bx), -1, np.int64) if comp is None else comp.fillna(-1).to_numpy(np.int64)
            if gates is not None:
                self.gate_xy = pd.Series(list(zip(gates["x"], gates["y"])), index=gates["id"].to_numpy())
            self.access, self.bsnap = building_access(self.graph, snap, bx, by, comp, gates=gates,
                                                      compound_geoms=cgeoms, **kw)
        else:
            self.bsnap = Snap.empty(len(bx), FLAG_NO_NETWORK)
            self.access = Access.from_snap(self.bsnap)
        self.seconds["snap_buildings"] = time.perf_counter() - t1
        if progress:
            progress("snap", 1, 1)
        self.facilities = pd.DataFrame(columns=["id", "name", "category_code", "kind", "x", "y"])
        self.fsnap = Snap.empty(0)
        self.set_facilities(city.facilities)

    # -- facilities --------------------------------------------------------------------------
    def set_facilities(self, facilities: gpd.GeoDataFrame) -> None:
        t = time.perf_counter()
        fm = _metric(facilities, self.epsg)
        df = pd.DataFrame(facilities.drop(columns=facilities.geometry.name)).reset_index(drop=True)
        for c in ("name", "kind"):
            if c not in df:
                df[c] = None
        df["x"] = fm.geometry.x.to_numpy() if len(fm) else np.zeros(0)
        df["y"] = fm.geometry.y.to_numpy() if len(fm) else np.zeros(0)
        self.facilities = df
        self.fsnap = self._snap(df["x"].to_numpy(float), df["y"].to_numpy(float))
        self.seconds["snap_facilities"] = time.perf_counter() - t

    def _snap(self, x: np.ndarray, y: np.ndarray) -> Snap:
        if self.method != NETWORK:
            return Snap.empty(len(x), FLAG_NO_NETWORK)
        return snap_points(self.graph, x, y, barriers=self.barriers, max_snap_m=self.params.max_snap_m,
                           reroute_radius_m=self.params.reroute_radius_m)

    def sources(self, rows: np.ndarray, snap: Snap | None = None) -> Sources:
        s = snap or self.fsnap
        return Sources(s.edge[rows], s.offset[rows], s.leg[rows])

    def category_rows(self, category: Category) -> np.ndarray:
        if len(self.facilities) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(category.facility_mask(self.facilities))

    # -- distances ----------------------------------------------------------------------------
    def distances_from_rows(self, rows: np.ndarray, *, limit: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(distance, facility row) per building to the nearest of the facility ``rows``."""
        limit = self.cap if limit is None else limit
        nb = len(self.buildings)
        if len(rows) == 0:
            return np.full(nb, np.inf), np.full(nb, -1, dtype=np.int64)
        if self.method == NETWORK:
            s = self.sources(rows)
            nd = node_distances(self.graph, s, limit=limit)
            d, k = point_distances(self.graph, nd, s, self.access, limit=limit)
        else:
            d, k = self.straight_line(self.facilities["x"].to_numpy(float)[rows],
                                      self.facilities["y"].to_numpy(float)[rows], limit=limit)
        fac = np.where(k >= 0, rows[np.maximum(k, 0)], -1)
        return d, fac

    def straight_line(self, fx: np.ndarray, fy: np.ndarray, *, limit: float) -> tuple[np.ndarray, np.ndarray]:
        """Fallback without a network: straight line × detour factor (clearly not a walk)."""
        tree = cKDTree(np.column_stack([fx, fy]))
        d, k = tree.query(np.column_stack([self.buildings["x"], self.buildings["y"]]))
        d = d * self.params.detour_factor
        beyond = ~(d <= limit)
        d[beyond] = np.inf
        return d, np.where(beyond, -1, k).astype(np.int64)

    def compute(self, catalog: Catalog, categories: list[str] | None = None,
                progress: Progress | None = None) -> DistanceTable:
        """Distances for the catalog's categories: one multi-source pass per distinct facility set."""
        cats = [catalog.category(c) for c in categories] if categories else list(catalog.categories)
        nb = len(self.buildings)
        dist = np.empty((nb, len(cats)), dtype=np.float32)
        fac = np.empty((nb, len(cats)), dtype=np.int32)
        done: dict[tuple, int] = {}
        t = time.perf_counter()
        for j, cat in enumerate(cats):
            key = cat.selector_key()
            if key in done:
                dist[:, j], fac[:, j] = dist[:, done[key]], fac[:, done[key]]
            else:
                d, f = self.distances_from_rows(self.category_rows(cat))
                dist[:, j], fac[:, j] = d, f
                done[key] = j
            if progress:
                progress("distances", j + 1, len(cats))
        secs = dict(self.seconds, distances=time.perf_counter() - t)
        return DistanceTable([c.code for c in cats], dist, fac, self.method, secs)

    # -- reporting -------------------------------------------------------------------------------
    def facility_ids(self, rows: np.ndarray) -> np.ndarray:
        ids = self.facilities["id"].to_numpy()
        out = np.full(len(rows), -1, dtype=np.int64)
        ok = rows >= 0
        out[ok] = ids[rows[ok]]
        return out

    def to_lonlat(self, x: np.ndarray, y: np.ndarray, srid: int = 4490) -> tuple[np.ndarray, np.ndarray]:
        from gisgov.crs import transformer

        return transformer(self.epsg, srid).transform(x, y)

    def geoseries(self, geoms, srid: int = 4490) -> gpd.GeoSeries:
        return gpd.GeoSeries(geoms, crs=self.epsg).to_crs(srid)

    def snap_summary(self) -> dict:
        from gisgov.network import FLAGS

        out = {"buildings": int(len(self.bsnap)), "method": self.method}
        for bit, (name, _) in FLAGS.items():
            out[name] = int(np.count_nonzero(self.bsnap.flags & bit))
        if self.graph is not None:
            out["network"] = dict(self.graph.report)
        return out

    def problem_buildings(self) -> pd.DataFrame:
        """Buildings with a snap flag (long leg, across water, disconnected piece, no network)."""
        from gisgov.network import flag_names

        f = self.bsnap.flags
        idx = np.flatnonzero(f & ~np.int32(8))  # every flag but the informative via_gate
        b = self.buildings.iloc[idx]
        return pd.DataFrame({
            "building_id": b["id"].to_numpy(), "code": b.get("code", pd.Series([None] * len(b))).to_numpy(),
            "access_m": np.round(self.bsnap.leg[idx], 1), "flags": [",".join(flag_names(int(v))) for v in f[idx]],
        })

