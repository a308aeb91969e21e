"""The in-memory coverage model: graph, snapped buildings and facilities, distances per category.

Built once from a :class:`CityData` (GeoDataFrames, from PostGIS or from an OSM file) and kept in
memory by the service; pure computation, no database. When the city has no walking network the
model falls back to straight line × detour factor, and says so (``method = "straight_line"``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from gisgov.coverage.catalog import Catalog, Category, NetworkParams
from gisgov.crs import CGCS2000, WGS84, metric_epsg_for_bounds
from gisgov.errors import InvalidInput
from gisgov.network import (
    FLAG_NO_NETWORK,
    Access,
    PointReader,
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

    For large synthetic inputs (the benchmark) ``buildings`` / ``facilities`` may be plain
    DataFrames with ``x``/``y`` already in the model's metric CRS, and ``graph`` a prebuilt
    :class:`WalkGraph` (then ``edges`` is not read).
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
    graph: WalkGraph | None = None


@dataclass
class DistanceTable:
    """Distance (m) from every building to the nearest facility of each category."""

    categories: list[str]
    dist: np.ndarray  # (n_buildings, n_categories) float32, inf = beyond the cap / unreachable
    fac: np.ndarray  # (n_buildings, n_categories) int32 facility row, -1 = none
    method: str
    seconds: dict = field(default_factory=dict)

    def col(self, code: str) -> int:
        try:
            return self.categories.index(code)
        except ValueError:
            raise InvalidInput(
                f"该类别未计算 category {code!r} was not computed; computed: {', '.join(self.categories)}"
            ) from None

    def replace(self, code: str, dist: np.ndarray, fac: np.ndarray) -> DistanceTable:
        """A copy with one category's column replaced (the others are shared, not copied)."""
        j = self.col(code)
        d, f = self.dist.copy(order="K"), self.fac.copy(order="K")
        d[:, j], f[:, j] = dist, fac
        return DistanceTable(self.categories, d, f, self.method, dict(self.seconds))


def _attributes_xy(frame, epsg) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Attribute table and metric x/y of a point layer (GeoDataFrame, or DataFrame with metric x/y)."""
    if isinstance(frame, gpd.GeoDataFrame):
        m = _metric(frame, epsg)
        df = pd.DataFrame(frame.drop(columns=frame.geometry.name)).reset_index(drop=True)
        if len(frame) == 0:
            return df, np.zeros(0), np.zeros(0)
        return df, m.geometry.x.to_numpy(), m.geometry.y.to_numpy()
    df = frame.reset_index(drop=True)
    return df.drop(columns=["x", "y"]), df["x"].to_numpy(float), df["y"].to_numpy(float)


def _metric(gdf, epsg):
    if gdf is None or len(gdf) == 0:
        return gdf
    if gdf.crs is None:
        raise InvalidInput("输入图层缺少坐标系 input layer has no CRS (rule: crs_required)")
    return gdf.to_crs(epsg)


class CoverageModel:
    """Graph + snaps held in memory; answers distance questions for any facility subset."""

    def __init__(
        self,
        city: CityData,
        params: NetworkParams,
        cap: float,
        *,
        epsg: int | None = None,
        progress: Progress | None = None,
    ):
        t0 = time.perf_counter()
        self.params, self.cap = params, float(cap)
        b = city.buildings
        if len(b) == 0:
            raise InvalidInput("没有可计算覆盖的楼栋 no buildings to compute coverage for (rule: buildings_required)")
        if city.graph is not None:
            epsg = city.graph.epsg
        if epsg is None:
            ref = city.edges if city.edges is not None and len(city.edges) else b
            epsg = metric_epsg_for_bounds(tuple(ref.to_crs(WGS84).total_bounds))
        self.epsg = epsg
        self.buildings, bx, by = _attributes_xy(b, epsg)
        self.buildings["x"], self.buildings["y"] = bx, by
        self.footprints = None if city.footprints is None else city.footprints.to_crs(epsg).to_numpy()
        self.barriers = None
        if city.barriers is not None and len(city.barriers):
            self.barriers = _metric(city.barriers, epsg).geometry.to_numpy()
        self.seconds: dict[str, float] = {}
        self.gate_xy = pd.Series(dtype=object)

        self.graph: WalkGraph | None = city.graph
        if self.graph is None and city.edges is not None and len(city.edges):
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
            kw = dict(
                barriers=self.barriers,
                max_snap_m=params.max_snap_m,
                reroute_radius_m=params.reroute_radius_m,
                fragment_extra_m=params.fragment_extra_m,
            )
            snap = snap_points(self.graph, bx, by, **kw)
            gates = None
            if city.gates is not None and len(city.gates):
                gm = _metric(city.gates, epsg)
                gates = pd.DataFrame(
                    {
                        "id": gm["id"].to_numpy(np.int64),
                        "compound_id": gm["compound_id"].to_numpy(np.int64),
                        "node_id": gm.get("node_id"),
                        "x": gm.geometry.x.to_numpy(),
                        "y": gm.geometry.y.to_numpy(),
                    }
                )
            cgeoms = None
            if city.compounds is not None and len(city.compounds):
                cm = _metric(city.compounds, epsg)
                cgeoms = pd.Series(cm.geometry.to_numpy(), index=cm["id"].to_numpy(np.int64))
            comp = pd.to_numeric(self.buildings.get("compound_id"), errors="coerce")
            comp = np.full(len(bx), -1, np.int64) if comp is None else comp.fillna(-1).to_numpy(np.int64)
            if gates is not None:
                self.gate_xy = pd.Series(list(zip(gates["x"], gates["y"], strict=False)), index=gates["id"].to_numpy())
            self.access, self.bsnap = building_access(
                self.graph, snap, bx, by, comp, gates=gates, compound_geoms=cgeoms, **kw
            )
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
        df, fx, fy = _attributes_xy(facilities, self.epsg)
        for c in ("name", "kind"):
            if c not in df:
                df[c] = None
        df["x"], df["y"] = fx, fy
        self.facilities = df
        self._fac_match = pd.DataFrame(
            {"category_code": df["category_code"].astype("category"), "kind": df["kind"].astype("category")}
        )
        self.fsnap = self._snap(df["x"].to_numpy(float), df["y"].to_numpy(float))
        self.seconds["snap_facilities"] = time.perf_counter() - t

    def _snap(self, x: np.ndarray, y: np.ndarray) -> Snap:
        if self.method != NETWORK:
            return Snap.empty(len(x), FLAG_NO_NETWORK)
        return snap_points(
            self.graph,
            x,
            y,
            barriers=self.barriers,
            max_snap_m=self.params.max_snap_m,
            reroute_radius_m=self.params.reroute_radius_m,
            fragment_extra_m=self.params.fragment_extra_m,
        )

    @property
    def reader(self) -> PointReader:
        """The buildings' access rows prepared once for all distance reads."""
        if getattr(self, "_reader", None) is None or self._reader.acc is not self.access:
            self._reader = PointReader.build(self.graph, self.access)
        return self._reader

    def sources(self, rows: np.ndarray, snap: Snap | None = None) -> Sources:
        s = snap or self.fsnap
        return Sources(s.edge[rows], s.offset[rows], s.leg[rows])

    def category_rows(self, category: Category) -> np.ndarray:
        if len(self.facilities) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(category.facility_mask(self._fac_match))

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
            d, k = point_distances(self.graph, nd, s, self.reader, limit=limit)
        else:
            d, k = self.straight_line(
                self.facilities["x"].to_numpy(float)[rows], self.facilities["y"].to_numpy(float)[rows], limit=limit
            )
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

    def compute(
        self,
        catalog: Catalog,
        categories: list[str] | None = None,
        progress: Progress | None = None,
        *,
        workers: int = 1,
    ) -> DistanceTable:
        """Distances for the catalog's categories: one multi-source pass per distinct facility set.

        ``workers`` > 1 forks that many processes (POSIX only; for the CLI and the benchmark, not
        inside a threaded server) which write their columns into shared memory."""
        cats = [catalog.category(c) for c in categories] if categories else list(catalog.categories)
        nb, nc = len(self.buildings), len(cats)
        t = time.perf_counter()
        # Plan: categories selecting the same facilities share a column; a facility set that is the
        # union of smaller computed ones is their element-wise minimum (exact: the nearest of a union
        # is the nearest of the nearest); the rest get one Dijkstra each.
        rows_of = [self.category_rows(c) for c in cats]
        first: dict[bytes, int] = {}
        for j, r in enumerate(rows_of):
            first.setdefault(np.sort(r).tobytes(), j)
        distinct = sorted(set(first.values()), key=lambda j: len(rows_of[j]))
        jobs, unions, empty = [], {}, []
        for j in distinct:
            r = rows_of[j]
            if len(r) == 0:
                empty.append(j)
                continue
            subs = [k for k in jobs + list(unions) if len(rows_of[k]) < len(r) and np.isin(rows_of[k], r).all()]
            if subs and len(np.unique(np.concatenate([rows_of[k] for k in subs]))) == len(np.unique(r)):
                unions[j] = subs
            else:
                jobs.append(j)
        workers = max(1, min(int(workers), len(jobs))) if hasattr(os, "fork") else 1
        if workers > 1:
            import mmap

            bufs = (mmap.mmap(-1, max(1, nb * nc * 4)), mmap.mmap(-1, max(1, nb * nc * 4)))
            dist = np.ndarray((nb, nc), dtype=np.float32, buffer=bufs[0], order="F")
            fac = np.ndarray((nb, nc), dtype=np.int32, buffer=bufs[1], order="F")
        else:
            dist = np.empty((nb, nc), dtype=np.float32, order="F")  # column per category
            fac = np.empty((nb, nc), dtype=np.int32, order="F")

        def run(mine, report):
            for n_done, j in enumerate(mine, 1):
                d, f = self.distances_from_rows(rows_of[j])
                dist[:, j], fac[:, j] = d, f
                if report and progress:
                    progress("distances", n_done * workers, len(jobs))

        pids = []
        for w in range(1, workers):
            pid = os.fork()
            if pid == 0:  # child: compute its share, write into the shared buffers, leave at once
                code = 0
                try:
                    run(jobs[w::workers], False)
                except BaseException:
                    code = 1
                os._exit(code)
            pids.append(pid)
        run(jobs[0::workers], True)
        for pid in pids:
            _, status = os.waitpid(pid, 0)
            if status != 0:
                raise RuntimeError(f"coverage worker {pid} failed (status {status}); rerun with workers=1")
        for j in empty:
            dist[:, j], fac[:, j] = np.inf, -1
        for j, subs in unions.items():  # ascending size: the parts are ready
            d, f = dist[:, subs[0]].copy(), fac[:, subs[0]].copy()
            for k in subs[1:]:
                better = dist[:, k] < d
                d[better], f[better] = dist[better, k], fac[better, k]
            dist[:, j], fac[:, j] = d, f
        for j, r in enumerate(rows_of):
            src = first[np.sort(r).tobytes()]
            if src != j:
                dist[:, j], fac[:, j] = dist[:, src], fac[:, src]
        if progress:
            progress("distances", len(jobs), len(jobs))
        self.last_plan = {
            "categories": nc,
            "dijkstra": len(jobs),
            "unions": len(unions),
            "empty": len(empty),
            "shared": nc - len(distinct),
        }
        secs = dict(self.seconds, distances=time.perf_counter() - t)
        return DistanceTable([c.code for c in cats], dist, fac, self.method, secs)

    # -- reporting -------------------------------------------------------------------------------
    def facility_ids(self, rows: np.ndarray) -> np.ndarray:
        ids = self.facilities["id"].to_numpy()
        out = np.full(len(rows), -1, dtype=np.int64)
        ok = rows >= 0
        out[ok] = ids[rows[ok]]
        return out

    def to_lonlat(self, x: np.ndarray, y: np.ndarray, srid: int = CGCS2000) -> tuple[np.ndarray, np.ndarray]:
        from gisgov.crs import transformer

        return transformer(self.epsg, srid).transform(x, y)

    def geoseries(self, geoms, srid: int = CGCS2000) -> gpd.GeoSeries:
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
        from gisgov.network.snap import FLAG_GATE, FLAG_MAIN_PREFERRED

        idx = np.flatnonzero(f & ~np.int32(FLAG_GATE | FLAG_MAIN_PREFERRED))  # every flag but the informative ones
        b = self.buildings.iloc[idx]
        return pd.DataFrame(
            {
                "building_id": b["id"].to_numpy(),
                "code": b.get("code", pd.Series([None] * len(b))).to_numpy(),
                "access_m": np.round(self.bsnap.leg[idx], 1),
                "flags": [",".join(flag_names(int(v))) for v in f[idx]],
            }
        )
