"""Coverage as a batch on Dask, one task per street: the same figures as the single-process path.

The walk from a building to a facility never leaves a disc of the distance cap around the building, so
each street is computed on its own with a **halo**: the street's buildings plus every road edge, barrier
and facility within ``cap + margin`` metres of the street's outline (the convex hull of its buildings, in
the model's metric CRS), the gates and compounds of its buildings, and the global "main network" label of
every node (a piece of the main network cut off by the halo must still count as main network when a
building is snapped). Each task builds a :class:`~gisgov.coverage.model.CoverageModel` of its halo and runs
the same kernels (snap, gate access, multi-source Dijkstra per facility set). It then **checks** that every
snap it made could not have seen another edge in the whole city (each point's search radius — its leg plus
``fragment_extra_m``, or ``reroute_radius_m`` where barriers exist — lies inside the halo, and linked gate
nodes are in it); if not, it widens the halo and recomputes. So the distances are exact:

* a path of length ≤ cap from a building stays within cap of it, hence inside the halo;
* a path found inside the halo is a real path, never shorter than the true one;
* the snaps are the global snaps (checked), so the sources and targets are the same points.

The driver (:func:`compute`) concatenates the streets' distance columns, maps facility ids back to the
city's facility rows and stores everything with the existing store and figure code
(:func:`gisgov.coverage.store.write_access`, :func:`~gisgov.coverage.figures.figure_arrays`,
:func:`~gisgov.coverage.store.write_figures`): storage and figures are those of the single-process path by
construction. Every facility's snap is made by the task of the street whose building is nearest to it.

Inputs: ``gisgov coverage compute --dask`` (:func:`compute`) ships no frames. The driver reads only what it
stores and sums (buildings, facilities, resident groups), the road topology without geometry (for the
main-network label, scattered once as node ids) and the extent (for the metric CRS), exports its snapshot
(``pg_export_snapshot()``), and submits per street only a :class:`Source` (database URL + snapshot + SRID +
CRS), the street code and the ids of the facilities it reports. Each task (:func:`street_task_db`) opens its
own read-only connection on that snapshot — so all tasks read the same data, as of the export (the
driver's first statement; a REPEATABLE READ driver transaction reads the same too) — and
reads its street's buildings, their gates and compounds, and the road edges (with their end nodes),
facilities and barriers of the halo: a bounding box of the halo in the storage SRID (GiST index) selects
candidates and the same metric test as the in-memory path keeps them; rows are decoded with the coverage
store's readers (plain tuples, vectorised ``shapely.from_wkb``). Workers therefore need network access to
PostgreSQL, and the URL must carry credentials that work from the workers (its ``repr`` hides the
password). :func:`in_memory` / :func:`street_task` cut the same halos from frames in memory (tests,
benchmarks). Dask is imported inside functions.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from typing import Any, cast

import numpy as np
import pandas as pd
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sqlalchemy import Connection, text

from gisgov.coverage import store
from gisgov.coverage.catalog import Catalog
from gisgov.coverage.figures import UnitIndex, figure_arrays, group_figures
from gisgov.coverage.model import NETWORK, STRAIGHT_LINE, CityData, CoverageModel, DistanceTable, _attributes_xy
from gisgov.crs import WGS84, metric_epsg_for_bounds, transformer
from gisgov.errors import NotFound
from gisgov.network import Access, Snap, graph_from_edges
from gisgov.network.access import snap_gates


@dataclass
class Shared:
    """The city's frames, scattered once to every worker. ``*_m`` = metric geometry for the halo search."""

    city: CityData
    epsg: int
    edges_m: np.ndarray  # edge geometries in epsg (same row order as city.edges)
    edge_tree: shapely.STRtree | None
    bx: np.ndarray
    by: np.ndarray
    fx: np.ndarray
    fy: np.ndarray
    barriers_m: np.ndarray
    main_nodes: np.ndarray  # node ids of the city's main (largest) network component, sorted
    owner: np.ndarray  # per facility: the street whose task reports its snap
    network_report: dict[str, Any] = field(default_factory=dict)


@dataclass
class StreetResult:
    street: str
    building_ids: np.ndarray
    dist: np.ndarray  # (n, k) float32
    fac_ids: np.ndarray  # (n, k) int64 facility id, -1 = none
    snap: Snap  # edge = road_edge id (not an index), -1 = none
    acc_owner: np.ndarray  # building id per access row
    acc_leg: np.ndarray
    acc_via: np.ndarray
    fac_owned_ids: np.ndarray
    fac_snap: Snap  # of the owned facilities, edge = road_edge id
    method: str
    halo_m: float
    widened: int
    edges: int
    facilities: int
    seconds: float


def main_component_nodes(edges: pd.DataFrame) -> tuple[np.ndarray, dict[str, Any]]:
    """Node ids of the largest weakly connected component of the walkable edges, as
    :func:`gisgov.network.graph_from_edges` labels it (component 0), and a small network report."""
    foot = edges["foot"].to_numpy(bool) if "foot" in edges else np.ones(len(edges), bool)
    s = edges["source"].to_numpy(np.int64)[foot]
    t = edges["target"].to_numpy(np.int64)[foot]
    node_ids, inv = np.unique(np.concatenate([s, t]), return_inverse=True)
    n = len(node_ids)
    if n == 0:
        return node_ids, {"nodes": 0, "edges": 0, "components": 0}
    u, v = inv[: len(s)], inv[len(s) :]
    keep = u != v
    adj = coo_matrix((np.ones(int(keep.sum())), (v[keep], u[keep])), shape=(n, n)).tocsr()
    ncomp, labels = connected_components(adj, directed=True, connection="weak")
    sizes = np.bincount(labels, minlength=ncomp)
    main = int(np.argsort(-sizes, kind="stable")[0])
    minor_edges = int((labels[u] != main).sum())
    report = {"nodes": int(n), "edges": int(len(s)), "components": int(ncomp), "minor_component_edges": minor_edges}
    return node_ids[labels == main], report


def prepare(city: CityData, catalog: Catalog) -> tuple[Shared, list[str]]:
    """The shared frames and the streets to compute (one task each)."""
    b = city.buildings
    if len(b) == 0:
        raise NotFound("no buildings in the database: load a city first (gisgov sample / gisgov load)")
    has_net = city.edges is not None and len(city.edges) > 0
    ref = cast(Any, city.edges) if has_net else b
    epsg = metric_epsg_for_bounds(tuple(ref.to_crs(WGS84).total_bounds))  # as CoverageModel picks it
    bm = b.to_crs(epsg)
    bx, by = bm.geometry.x.to_numpy(), bm.geometry.y.to_numpy()
    fm = city.facilities.to_crs(epsg) if len(city.facilities) else city.facilities
    fx = fm.geometry.x.to_numpy() if len(fm) else np.zeros(0)
    fy = fm.geometry.y.to_numpy() if len(fm) else np.zeros(0)
    edges_m = cast(Any, city.edges).to_crs(epsg).geometry.to_numpy() if has_net else np.zeros(0, dtype=object)
    barriers_m = (
        city.barriers.to_crs(epsg).geometry.to_numpy()
        if city.barriers is not None and len(city.barriers)
        else np.zeros(0, dtype=object)
    )
    main_nodes, report = main_component_nodes(cast(Any, city.edges)) if has_net else (np.zeros(0, np.int64), {})
    streets = b["street"].astype("string").fillna("").to_numpy(dtype=object)
    owner = np.zeros(len(fx), dtype=object)
    if len(fx):
        from scipy.spatial import cKDTree

        _, k = cKDTree(np.column_stack([bx, by])).query(np.column_stack([fx, fy]))
        owner = streets[k]
    shared = Shared(
        city=CityData(
            buildings=b,
            facilities=city.facilities,
            edges=city.edges if has_net else None,
            nodes=city.nodes,
            gates=city.gates,
            compounds=city.compounds,
            barriers=city.barriers,
        ),
        epsg=epsg,
        edges_m=edges_m,
        edge_tree=shapely.STRtree(edges_m) if has_net else None,
        bx=bx,
        by=by,
        fx=fx,
        fy=fy,
        barriers_m=barriers_m,
        main_nodes=np.sort(main_nodes),
        owner=owner,
        network_report=report,
    )
    return shared, sorted(set(streets.tolist()))


def _margin(catalog: Catalog) -> float:
    p = catalog.network
    return float(max(p.reroute_radius_m, p.max_snap_m + max(p.fragment_extra_m, 0.0)))


def _snaps_exact(
    model: CoverageModel, graph: Any, outline: Any, radius: float, catalog: Catalog, city: CityData, barriers: bool
) -> bool:
    """Could any snap of this halo have seen an edge outside it? (see the module doc)."""
    p = catalog.network
    extra = max(p.fragment_extra_m, 0.0) if p.fragment_extra_m >= 0 else 0.0

    def fits(x: np.ndarray, y: np.ndarray, leg: np.ndarray) -> bool:
        if len(x) == 0:
            return True
        need = np.where(np.isfinite(leg), leg, np.inf) + extra
        if barriers:
            need = np.maximum(need, p.reroute_radius_m)
        d0 = shapely.distance(outline, shapely.points(x, y))
        return bool(np.all(d0 + need <= radius + 1e-6))

    b = model.buildings
    if not fits(b["x"].to_numpy(float), b["y"].to_numpy(float), model.bsnap.leg):
        return False
    f = model.facilities
    if not fits(f["x"].to_numpy(float), f["y"].to_numpy(float), model.fsnap.leg):
        return False
    if city.gates is not None and len(city.gates):
        gm = city.gates.to_crs(model.epsg)
        g = pd.DataFrame({"node_id": gm.get("node_id"), "x": gm.geometry.x.to_numpy(), "y": gm.geometry.y.to_numpy()})
        nid = pd.to_numeric(g["node_id"], errors="coerce").fillna(-1).to_numpy(np.int64)
        linked = nid >= 0
        if linked.any() and not np.isin(nid[linked], graph.node_ids).all():
            return False
        gs = snap_gates(
            graph,
            g,
            barriers=model.barriers,
            max_snap_m=p.max_snap_m,
            reroute_radius_m=p.reroute_radius_m,
            fragment_extra_m=p.fragment_extra_m,
        )
        free = ~linked
        if not fits(g["x"].to_numpy(float)[free], g["y"].to_numpy(float)[free], gs.leg[free]):
            return False
    return True


def _with_edge_ids(s: Snap, edge_ids: np.ndarray) -> Snap:
    e = np.where(s.edge >= 0, edge_ids[np.maximum(s.edge, 0)] if len(edge_ids) else -1, -1).astype(np.int64)
    return Snap(e, s.offset, s.leg, s.x, s.y, s.flags)


class _FrameHalo:
    """Halo reader over the city's frames in memory (``in_memory``: tests and benchmarks without a database)."""

    def __init__(self, shared: Shared):
        self.shared = shared
        self.epsg = shared.epsg
        self.main_nodes = shared.main_nodes
        self.n_edges = len(shared.edges_m) if shared.edge_tree is not None else 0

    def owned(self, street: str) -> np.ndarray:
        """Ids of the facilities whose snap this street's task reports."""
        ids = np.asarray(self.shared.city.facilities["id"].to_numpy(np.int64))
        return np.asarray(ids[np.asarray(self.shared.owner == street, dtype=bool)], dtype=np.int64)

    def street(self, street: str, owned_ids: np.ndarray) -> tuple[Any, Any, Any, np.ndarray]:
        """(buildings, gates, compounds of the street; owned facilities' metric x/y as an (n, 2) array)."""
        sh, city = self.shared, self.shared.city
        streets = city.buildings["street"].astype("string").fillna("").to_numpy(dtype=object)
        rows = np.flatnonzero(streets == street)
        b = city.buildings.iloc[rows]
        comp_ids = pd.to_numeric(b["compound_id"], errors="coerce").dropna().astype(np.int64).unique()
        gates = city.gates[city.gates["compound_id"].isin(comp_ids)] if city.gates is not None else None
        compounds = city.compounds[city.compounds["id"].isin(comp_ids)] if city.compounds is not None else None
        owned = np.flatnonzero(np.isin(city.facilities["id"].to_numpy(np.int64), owned_ids))
        return b, gates, compounds, np.column_stack([sh.fx[owned], sh.fy[owned]])

    def halo(self, zone: Any, outline: Any, cap: float, owned_ids: np.ndarray) -> tuple[Any, Any, Any, Any]:
        """(edges intersecting ``zone``, their nodes, facilities within ``cap`` of ``outline`` or owned, barriers
        intersecting ``zone``), each in the city's row order (by id)."""
        sh, city = self.shared, self.shared.city
        near: Any = shapely.distance(outline, shapely.points(sh.fx, sh.fy)) <= cap if len(sh.fx) else []
        owned = np.flatnonzero(np.isin(city.facilities["id"].to_numpy(np.int64), owned_ids))
        facilities = city.facilities.iloc[np.union1d(np.flatnonzero(near), owned).astype(np.int64)]
        edges = None
        if sh.edge_tree is not None and city.edges is not None:
            edges = city.edges.iloc[np.sort(sh.edge_tree.query(zone, predicate="intersects"))]
        barriers = None
        if len(sh.barriers_m) and city.barriers is not None:
            barriers = city.barriers.iloc[np.flatnonzero(shapely.intersects(sh.barriers_m, zone))]
        return edges, city.nodes, facilities, barriers


@dataclass(frozen=True)
class Source:
    """Where a street task reads its street and halo: the city's PostGIS.

    ``url`` must carry credentials the workers can use (it is pickled to them; its ``repr`` hides the
    password, so it never shows in Dask's logs or dashboard). ``snapshot``: the driver's exported snapshot
    (``pg_export_snapshot()``), imported by every task, so all tasks read the very data the driver read.
    """

    url: str = field(repr=False)
    snapshot: str | None
    srid: int
    epsg: int
    n_edges: int

    def __repr__(self) -> str:
        from sqlalchemy.engine import make_url

        safe = make_url(self.url).render_as_string(hide_password=True)
        return f"Source({safe!r}, snapshot={self.snapshot!r}, srid={self.srid}, epsg={self.epsg})"


_SNAPSHOT = re.compile(r"^[0-9A-Fa-f-]+$")

_HALO_EDGES = (
    "SELECT id, source, target, length_m, foot, oneway_foot, class, ST_AsBinary(geom) AS wkb FROM road_edge "
    "WHERE geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, :srid) ORDER BY id"
)
_HALO_FACILITIES = (
    "SELECT id, code, name, category_code, kind, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM facility "
    "WHERE geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, :srid) OR id = ANY(:owned) ORDER BY id"
)
_HALO_BARRIERS = (
    "SELECT id, kind, ST_AsBinary(geom) AS wkb FROM barrier WHERE kind IN ('river', 'water', 'rail', 'wall', "
    "'other') AND geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, :srid) ORDER BY id"
)
_STREET_BUILDINGS = (
    "SELECT b.id, b.code, c.street_code AS street, b.community_code AS community, coalesce(b.compound_id, -1) "
    "AS compound_id, ST_X(b.pos) AS lon, ST_Y(b.pos) AS lat FROM building b JOIN community c "
    "ON c.code = b.community_code WHERE c.street_code = :s ORDER BY b.id"
)


class _PostgisHalo:
    """Halo reader over the city's PostGIS, inside a worker: one read-only transaction on the driver's
    snapshot; a bounding box (GiST index) in the storage SRID selects candidates, the exact metric test
    (the same as :class:`_FrameHalo`'s) keeps them. Rows are decoded by the coverage store's readers
    (plain tuples, vectorised ``shapely.from_wkb``)."""

    def __init__(self, conn: Connection, source: Source, main_nodes: np.ndarray):
        self.conn, self.source = conn, source
        self.epsg, self.n_edges, self.main_nodes = source.epsg, source.n_edges, main_nodes

    def _ids(self, sql: str, ids: np.ndarray) -> Any:
        return store._frame(self.conn, sql, {"ids": [int(i) for i in ids]})

    def street(self, street: str, owned_ids: np.ndarray) -> tuple[Any, Any, Any, np.ndarray]:
        srid = self.source.srid
        b = store._points(store._frame(self.conn, _STREET_BUILDINGS, {"s": street}), srid)
        comp = pd.to_numeric(b["compound_id"], errors="coerce").dropna().astype(np.int64).unique()
        comp = comp[comp >= 0]
        gates = store._points(
            self._ids(
                "SELECT id, compound_id, node_id, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM compound_gate "
                "WHERE compound_id = ANY(:ids) ORDER BY id",
                comp,
            ),
            srid,
        )
        compounds = store._gdf(
            self._ids("SELECT id, code, ST_AsBinary(geom) AS wkb FROM compound WHERE id = ANY(:ids) ORDER BY id", comp),
            srid,
        )
        owned = store._points(
            self._ids("SELECT id, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM facility WHERE id = ANY(:ids)", owned_ids),
            srid,
        )
        if not len(owned):
            return b, gates, compounds, np.zeros((0, 2))
        om = owned.to_crs(self.epsg)
        return b, gates, compounds, np.column_stack([om.geometry.x.to_numpy(), om.geometry.y.to_numpy()])

    def halo(self, zone: Any, outline: Any, cap: float, owned_ids: np.ndarray) -> tuple[Any, Any, Any, Any]:
        from pyproj import Transformer

        srid = self.source.srid
        back = Transformer.from_crs(self.epsg, srid, always_xy=True)
        ring = shapely.get_coordinates(shapely.segmentize(shapely.envelope(zone), 200.0))
        lon, lat = back.transform(ring[:, 0], ring[:, 1])
        pad = 0.002  # degrees (~200 m): the box only has to hold the zone; the metric test below decides
        box = {"x0": min(lon) - pad, "y0": min(lat) - pad, "x1": max(lon) + pad, "y1": max(lat) + pad, "srid": srid}
        edges = store._gdf(store._frame(self.conn, _HALO_EDGES, box), srid)
        if len(edges):
            keep = shapely.intersects(edges.to_crs(self.epsg).geometry.to_numpy(), zone)
            edges = edges[keep]
        ends = np.unique(np.concatenate([edges["source"].to_numpy(np.int64), edges["target"].to_numpy(np.int64)]))
        nodes = store._gdf(
            self._ids("SELECT id, ST_AsBinary(geom) AS wkb FROM road_node WHERE id = ANY(:ids) ORDER BY id", ends), srid
        )
        fac = store._points(
            store._frame(self.conn, _HALO_FACILITIES, {**box, "owned": [int(i) for i in owned_ids]}), srid
        )
        if len(fac):
            fm = fac.to_crs(self.epsg)
            near = shapely.distance(outline, shapely.points(fm.geometry.x.to_numpy(), fm.geometry.y.to_numpy())) <= cap
            fac = fac[near | fac["id"].isin(owned_ids).to_numpy()]
        bar = store._gdf(store._frame(self.conn, _HALO_BARRIERS, box), srid)
        if len(bar):
            bar = bar[shapely.intersects(bar.to_crs(self.epsg).geometry.to_numpy(), zone)]
        return (edges if len(edges) else None), nodes, fac, bar


def _street(reader: Any, street: str, owned_ids: np.ndarray, catalog: Catalog, margin: float | None) -> StreetResult:
    """One street with its halo, its inputs from ``reader`` (:class:`_FrameHalo` or :class:`_PostgisHalo`):
    distances of its buildings to every catalog category (exact; see the module doc)."""
    t0 = time.perf_counter()
    cap = float(catalog.distance_cap_m)
    b, gates, compounds, fxy = reader.street(street, owned_ids)
    if len(b) == 0:
        raise NotFound(f"街道无楼栋 street {street} has no buildings")
    bm = b.to_crs(reader.epsg)
    outline = shapely.convex_hull(shapely.multipoints(np.column_stack([bm.geometry.x, bm.geometry.y])))
    radius = cap + (_margin(catalog) if margin is None else float(margin))
    if len(fxy):  # the owned facilities' own snaps must fit too
        far = shapely.distance(outline, shapely.points(fxy[:, 0], fxy[:, 1]))
        radius = max(radius, float(far.max()) + _margin(catalog))
    widened = 0
    while True:
        zone = shapely.buffer(outline, radius)
        edges, nodes, facilities, barriers = reader.halo(zone, outline, cap, owned_ids)
        graph = None
        if edges is not None and len(edges):
            graph = graph_from_edges(edges, epsg=reader.epsg, nodes=nodes)
            main = np.isin(graph.node_ids, reader.main_nodes)
            graph = replace(graph, component=np.where(main, 0, 1).astype(np.int32))
        halo = CityData(
            buildings=b,
            facilities=facilities,
            edges=edges,
            nodes=nodes,
            gates=gates,
            compounds=compounds,
            barriers=barriers,
            graph=graph,
        )
        model = CoverageModel(halo, catalog.network, cap, epsg=reader.epsg)
        whole = reader.n_edges == 0 or (edges is not None and len(edges) == reader.n_edges)
        has_barriers = barriers is not None and len(barriers) > 0
        if whole or graph is None or _snaps_exact(model, graph, outline, radius, catalog, halo, has_barriers):
            break
        radius *= 2
        widened += 1
    table = model.compute(catalog)
    fids = model.facilities["id"].to_numpy(np.int64) if len(model.facilities) else np.zeros(0, np.int64)
    fac_ids = np.where(table.fac >= 0, fids[np.maximum(table.fac, 0)] if len(fids) else -1, -1).astype(np.int64)
    edge_ids = graph.edge_ids if graph is not None else np.zeros(0, np.int64)
    bids = b["id"].to_numpy(np.int64)
    own = np.isin(fids, owned_ids)
    return StreetResult(
        street=street,
        building_ids=bids,
        dist=np.asarray(table.dist, dtype=np.float32),
        fac_ids=fac_ids,
        snap=_with_edge_ids(model.bsnap, edge_ids),
        acc_owner=bids[model.access.owner],
        acc_leg=model.access.leg,
        acc_via=model.access.via,
        fac_owned_ids=fids[own],
        fac_snap=_with_edge_ids(model.fsnap.take(np.flatnonzero(own)), edge_ids),
        method=model.method,
        halo_m=radius,
        widened=widened,
        edges=0 if edges is None else len(edges),
        facilities=len(facilities),
        seconds=time.perf_counter() - t0,
    )


def street_task(shared: Shared, street: str, catalog: Catalog, margin: float | None = None) -> StreetResult:
    """One street, its halo cut from the city's frames in memory (``in_memory``)."""
    reader = _FrameHalo(shared)
    return _street(reader, street, reader.owned(street), catalog, margin)


def street_task_db(
    source: Source, street: str, owned_ids: np.ndarray, main_nodes: np.ndarray, catalog: Catalog
) -> StreetResult:
    """One street as a Dask task on any machine: it reads its street's buildings and its halo from PostGIS
    itself (``source``: URL + the driver's snapshot), so nothing of the city travels with the task but
    its owned facility ids and the main-network node ids (scattered once)."""
    from sqlalchemy import create_engine, pool

    eng = create_engine(source.url, poolclass=pool.NullPool)
    try:
        with eng.connect() as conn:
            conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
            if source.snapshot:
                if not _SNAPSHOT.match(source.snapshot):
                    raise ValueError("bad snapshot id")
                conn.execute(text(f"SET TRANSACTION SNAPSHOT '{source.snapshot}'"))
            res = _street(_PostgisHalo(conn, source, main_nodes), street, owned_ids, catalog, None)
            conn.rollback()
            return res
    finally:
        eng.dispose()


class _EdgeIds:
    """What the store needs of a graph: internal edge index → road_edge id (here the identity on ids)."""

    def __init__(self, edge_ids: np.ndarray, report: dict[str, Any]):
        self.edge_ids = edge_ids
        self.report = report

    def components_table(self) -> pd.DataFrame:
        return pd.DataFrame(columns=["component", "nodes", "edges", "length_km", "main"])


class AssembledModel:
    """The streets' results put together in the city's building and facility order, with the attributes
    of :class:`CoverageModel` that the store and the figure code read (buildings, facilities, snaps,
    access rows, method)."""

    to_lonlat = CoverageModel.to_lonlat

    def snap_summary(self) -> dict[str, Any]:
        return CoverageModel.snap_summary(cast(CoverageModel, self))

    def problem_buildings(self) -> pd.DataFrame:
        return CoverageModel.problem_buildings(cast(CoverageModel, self))

    def __init__(self, shared: Shared, results: list[StreetResult], catalog: Catalog):
        city = shared.city
        self.epsg = shared.epsg
        self.buildings, _, _ = _attributes_xy(city.buildings, self.epsg)
        self.buildings["x"], self.buildings["y"] = shared.bx, shared.by
        fac, _, _ = _attributes_xy(city.facilities, self.epsg)
        for c in ("name", "kind"):
            if c not in fac:
                fac[c] = None
        fac["x"], fac["y"] = shared.fx, shared.fy
        self.facilities = fac
        self.method = NETWORK if any(r.method == NETWORK for r in results) else STRAIGHT_LINE
        ids = self.buildings["id"].to_numpy(np.int64)
        nb, nc = len(ids), len(catalog.category_codes)
        bpos = pd.Index(ids)
        fpos = pd.Series(np.arange(len(fac)), index=fac["id"].to_numpy(np.int64))
        self.dist = np.full((nb, nc), np.inf, dtype=np.float32, order="F")
        self.fac = np.full((nb, nc), -1, dtype=np.int32, order="F")
        snap = Snap.empty(nb)
        fsnap = Snap.empty(len(fac))
        done = np.zeros(nb, dtype=bool)
        owners, legs, vias = [], [], []
        for r in results:
            p = bpos.get_indexer(r.building_ids)
            self.dist[p, :] = r.dist
            rows = fpos.reindex(r.fac_ids.ravel()).fillna(-1).to_numpy().astype(np.int64).reshape(r.fac_ids.shape)
            self.fac[p, :] = np.where(r.fac_ids >= 0, rows, -1)
            for name in ("edge", "offset", "leg", "x", "y", "flags"):
                getattr(snap, name)[p] = getattr(r.snap, name)
            done[p] = True
            owners.append(bpos.get_indexer(r.acc_owner))
            legs.append(r.acc_leg)
            vias.append(r.acc_via)
            q = fpos.reindex(r.fac_owned_ids).to_numpy().astype(np.int64)
            for name in ("edge", "offset", "leg", "x", "y", "flags"):
                getattr(fsnap, name)[q] = getattr(r.fac_snap, name)
        if not done.all():
            raise RuntimeError(f"{int((~done).sum())} buildings were in no street task")
        owner = np.concatenate(owners) if owners else np.zeros(0, np.int64)
        srt = np.argsort(owner, kind="stable")
        leg = np.concatenate(legs)[srt] if legs else np.zeros(0)
        via = np.concatenate(vias)[srt] if vias else np.zeros(0, np.int64)
        self.access = Access(owner[srt], np.full(len(srt), -1), np.zeros(len(srt)), leg, via, nb)
        self.bsnap, self.fsnap = snap, fsnap
        # snaps carry road_edge ids already: the "graph" maps them to themselves
        all_ids = np.unique(np.concatenate([snap.edge[snap.edge >= 0], fsnap.edge[fsnap.edge >= 0]]))
        self.graph = _EdgeIds(np.zeros(0, np.int64), shared.network_report) if self.method != NETWORK else None
        if self.method == NETWORK:
            lookup = np.zeros(int(all_ids.max(initial=0)) + 1, dtype=np.int64)
            lookup[all_ids] = all_ids
            self.graph = _EdgeIds(lookup, shared.network_report)

    def table(self, catalog: Catalog, seconds: dict[str, Any]) -> DistanceTable:
        return DistanceTable(list(catalog.category_codes), self.dist, self.fac, self.method, seconds)


@dataclass
class DaskComputeResult:
    run_id: int
    method: str
    buildings: int
    facilities: int
    categories: int
    rows_written: int
    seconds: dict[str, Any]
    snap: dict[str, Any]
    streets: pd.DataFrame  # per street: buildings, edges and facilities in its halo, halo radius, seconds
    problems: pd.DataFrame
    components: pd.DataFrame = field(default_factory=pd.DataFrame)


def run_streets(client: Any, shared: Shared, streets: list[str], catalog: Catalog) -> list[StreetResult]:
    """In memory (``in_memory``): one task per street on the Dask ``client``, the frames scattered once to
    every worker."""
    data = client.scatter(shared, broadcast=True)
    futures = [client.submit(street_task, data, s, catalog, pure=False, key=f"coverage-street-{s}") for s in streets]
    return cast(list[StreetResult], client.gather(futures))


@dataclass
class Plan:
    """What the driver knows before the tasks run (read with plain tuples, no road geometry): the
    buildings and facilities it stores and sums, the metric CRS, the main network and who reports which
    facility's snap."""

    shared: Shared
    source: Source
    streets: list[str]
    groups: pd.DataFrame


def plan(conn: Connection, catalog: Catalog, *, url: str | None = None) -> Plan:
    """The driver's reads, and the snapshot the tasks will import (the caller's transaction must stay
    open until the tasks have run). ``url``: the database URL the workers use (default: the connection's,
    with its password)."""
    snapshot = str(conn.execute(text("SELECT pg_export_snapshot()")).scalar_one())
    srid = store.storage_srid(conn)
    b = store._points(store._frame(conn, store.BUILDINGS_SQL), srid)
    if len(b) == 0:
        raise NotFound("no buildings in the database: load a city first (gisgov sample / gisgov load)")
    fac = store.load_facilities(conn, srid)
    groups = store._frame(conn, store.GROUPS_SQL)
    topo = store._frame(conn, "SELECT source, target, foot FROM road_edge")
    if len(topo):
        ext = conn.execute(
            text(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) AS e FROM road_edge) q"
            )
        ).one()
        lon, lat = transformer(srid, WGS84).transform([ext[0], ext[2]], [ext[1], ext[3]])
        epsg = metric_epsg_for_bounds((min(lon), min(lat), max(lon), max(lat)))
        topo["foot"] = topo["foot"].astype(bool)
        main_nodes, report = main_component_nodes(topo)
    else:
        epsg = metric_epsg_for_bounds(tuple(b.to_crs(WGS84).total_bounds))
        main_nodes, report = np.zeros(0, np.int64), {}
    bm = b.to_crs(epsg)
    bx, by = bm.geometry.x.to_numpy(), bm.geometry.y.to_numpy()
    fm = fac.to_crs(epsg) if len(fac) else fac
    fx = fm.geometry.x.to_numpy() if len(fm) else np.zeros(0)
    fy = fm.geometry.y.to_numpy() if len(fm) else np.zeros(0)
    streets = b["street"].astype("string").fillna("").to_numpy(dtype=object)
    owner = np.zeros(len(fx), dtype=object)
    if len(fx):
        from scipy.spatial import cKDTree

        _, k = cKDTree(np.column_stack([bx, by])).query(np.column_stack([fx, fy]))
        owner = streets[k]
    shared = Shared(
        city=CityData(buildings=b, facilities=fac, edges=None, nodes=None, gates=None, compounds=None, barriers=None),
        epsg=epsg,
        edges_m=np.zeros(0, dtype=object),
        edge_tree=None,
        bx=bx,
        by=by,
        fx=fx,
        fy=fy,
        barriers_m=np.zeros(0, dtype=object),
        main_nodes=np.sort(main_nodes),
        owner=owner,
        network_report=report,
    )
    if url is None:
        url = conn.engine.url.render_as_string(hide_password=False)
    source = Source(url=url, snapshot=snapshot, srid=srid, epsg=epsg, n_edges=len(topo))
    return Plan(shared, source, sorted(set(streets.tolist())), groups)


def run_streets_db(client: Any, p: Plan, catalog: Catalog) -> list[StreetResult]:
    """One task per street on the Dask ``client``; each task reads its street and halo from PostGIS."""
    main = client.scatter(p.shared.main_nodes, broadcast=True)
    fids = p.shared.city.facilities["id"].to_numpy(np.int64)
    futures = [
        client.submit(
            street_task_db,
            p.source,
            s,
            fids[p.shared.owner == s],
            main,
            catalog,
            pure=False,
            key=f"coverage-street-{s}",
        )
        for s in p.streets
    ]
    return cast(list[StreetResult], client.gather(futures))


def assemble(shared: Shared, results: list[StreetResult], catalog: Catalog) -> tuple[AssembledModel, DistanceTable]:
    m = AssembledModel(shared, results, catalog)
    return m, m.table(catalog, {})


def compute(
    conn: Connection, client: Any, catalog: Catalog, *, progress: Any = None, url: str | None = None
) -> DaskComputeResult:
    """``gisgov coverage compute --dask``: every category for the whole city, one Dask task per street,
    stored and summed exactly as :meth:`gisgov.coverage.service.CoverageService.compute` does."""
    t0 = time.perf_counter()
    steps: dict[str, float] = {}

    def step(name: str, t: float) -> float:
        now = time.perf_counter()
        steps[name] = now - t
        return now

    p = plan(conn, catalog, url=url)
    sums = store.input_checksums(conn)
    shared, streets = p.shared, p.streets
    t = step("plan", t0)
    if progress:
        progress("distances", 0, len(streets))
    results = run_streets_db(client, p, catalog)
    t = step("dask_streets", t)
    if progress:
        progress("distances", len(streets), len(streets))
    model, table = assemble(shared, results, catalog)
    t = step("assemble", t)
    m = cast(Any, model)  # duck-typed CoverageModel (see AssembledModel)
    codes = list(catalog.category_codes)
    srid = store.storage_srid(conn)
    run_id = store.start_run(conn, catalog, model.method, codes, sums)
    store.write_budgets(conn, catalog)
    store.write_snaps(conn, m, srid)
    t = step("write_snaps", t)
    n = store.write_access(conn, m, table, run_id)
    t = step("write_access", t)
    b = model.buildings
    figs = figure_arrays(b, table, catalog, index=UnitIndex.build(b))
    gfig = group_figures(b, p.groups, table, catalog)
    t = step("figures", t)
    store.write_figures(conn, figs, gfig, run_id)
    step("write_figures", t)
    secs = dict(steps, total=time.perf_counter() - t0)
    summary = model.snap_summary()
    store.finish_run(conn, run_id, {"seconds": secs, "snap": summary, "engine": "dask", "streets": len(streets)})
    per_street = pd.DataFrame(
        [
            {
                "street": r.street,
                "buildings": len(r.building_ids),
                "edges": r.edges,
                "facilities": r.facilities,
                "halo_m": r.halo_m,
                "widened": r.widened,
                "seconds": round(r.seconds, 3),
            }
            for r in results
        ]
    )
    return DaskComputeResult(
        run_id,
        model.method,
        len(b),
        len(model.facilities),
        len(codes),
        n,
        secs,
        summary,
        per_street,
        model.problem_buildings(),
    )


def local_client(workers: int = 2, threads_per_worker: int = 1) -> tuple[Any, Any]:
    """(client, cluster): a LocalCluster of ``workers`` processes on this machine; close both when done."""
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=workers, threads_per_worker=threads_per_worker, processes=True, dashboard_address=None
    )
    return Client(cluster), cluster  # type: ignore[no-untyped-call]


def in_memory(city: CityData, catalog: Catalog, client: Any) -> tuple[AssembledModel, DistanceTable]:
    """The Dask path without a database (tests, benchmarks): frames in, assembled distances out."""
    shared, streets = prepare(city, catalog)
    return assemble(shared, run_streets(client, shared, streets, catalog), catalog)


__all__ = [
    "AssembledModel",
    "DaskComputeResult",
    "Plan",
    "Shared",
    "Source",
    "StreetResult",
    "compute",
    "in_memory",
    "local_client",
    "main_component_nodes",
    "plan",
    "prepare",
    "run_streets",
    "run_streets_db",
    "street_task",
    "street_task_db",
]
