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

Inputs reach the tasks by ``Client.scatter`` of the city's frames (one copy per worker). On a
multi-machine cluster where the city is too big for that, a task would read its own halo from PostGIS by
bounding box (``ST_DWithin(geom, outline, cap + margin)``) or from GeoParquet with dask-geopandas;
``street_task`` takes the frames, so only the reading changes. Dask is imported inside functions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, cast

import numpy as np
import pandas as pd
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sqlalchemy import Connection

from gisgov.coverage import store
from gisgov.coverage.catalog import Catalog
from gisgov.coverage.figures import UnitIndex, figure_arrays, group_figures
from gisgov.coverage.model import NETWORK, STRAIGHT_LINE, CityData, CoverageModel, DistanceTable, _attributes_xy
from gisgov.crs import WGS84, metric_epsg_for_bounds
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


def street_task(shared: Shared, street: str, catalog: Catalog, margin: float | None = None) -> StreetResult:
    """One street with its halo: distances of its buildings to every catalog category (exact; see module)."""
    t0 = time.perf_counter()
    city, cap = shared.city, float(catalog.distance_cap_m)
    streets = city.buildings["street"].astype("string").fillna("").to_numpy(dtype=object)
    rows = np.flatnonzero(streets == street)
    outline = shapely.convex_hull(shapely.multipoints(np.column_stack([shared.bx[rows], shared.by[rows]])))
    owned = np.flatnonzero(shared.owner == street)
    radius = cap + (_margin(catalog) if margin is None else float(margin))
    if len(owned):  # the owned facilities' own snaps must fit too
        far = shapely.distance(outline, shapely.points(shared.fx[owned], shared.fy[owned]))
        radius = max(radius, float(far.max()) + _margin(catalog))
    b = city.buildings.iloc[rows]
    comp_ids = pd.to_numeric(b["compound_id"], errors="coerce").dropna().astype(np.int64).unique()
    gates = city.gates[city.gates["compound_id"].isin(comp_ids)] if city.gates is not None else None
    compounds = city.compounds[city.compounds["id"].isin(comp_ids)] if city.compounds is not None else None
    widened = 0
    while True:
        zone = shapely.buffer(outline, radius)
        near: Any = shapely.distance(outline, shapely.points(shared.fx, shared.fy)) <= cap if len(shared.fx) else []
        frows = np.union1d(np.flatnonzero(near), owned).astype(np.int64)
        facilities = city.facilities.iloc[frows]
        graph = None
        edges = None
        if shared.edge_tree is not None and city.edges is not None:
            erows = np.sort(shared.edge_tree.query(zone, predicate="intersects"))
            edges = city.edges.iloc[erows]
            if len(edges):
                graph = graph_from_edges(edges, epsg=shared.epsg, nodes=city.nodes)
                main = np.isin(graph.node_ids, shared.main_nodes)
                graph = replace(graph, component=np.where(main, 0, 1).astype(np.int32))
        barriers = None
        if len(shared.barriers_m):
            brows = np.flatnonzero(shapely.intersects(shared.barriers_m, zone))
            barriers = city.barriers.iloc[brows] if city.barriers is not None else None
        halo = CityData(
            buildings=b,
            facilities=facilities,
            edges=edges,
            nodes=city.nodes,
            gates=gates,
            compounds=compounds,
            barriers=barriers,
            graph=graph,
        )
        model = CoverageModel(halo, catalog.network, cap, epsg=shared.epsg)
        whole = shared.edge_tree is None or (edges is not None and len(edges) == len(shared.edges_m))
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
    own = np.isin(model.facilities["id"].to_numpy(np.int64), city.facilities["id"].to_numpy(np.int64)[owned])
    return StreetResult(
        street=street,
        building_ids=bids,
        dist=np.asarray(table.dist, dtype=np.float32),
        fac_ids=fac_ids,
        snap=_with_edge_ids(model.bsnap, edge_ids),
        acc_owner=bids[model.access.owner],
        acc_leg=model.access.leg,
        acc_via=model.access.via,
        fac_owned_ids=model.facilities["id"].to_numpy(np.int64)[own],
        fac_snap=_with_edge_ids(model.fsnap.take(np.flatnonzero(own)), edge_ids),
        method=model.method,
        halo_m=radius,
        widened=widened,
        edges=0 if edges is None else len(edges),
        facilities=len(facilities),
        seconds=time.perf_counter() - t0,
    )


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
    """One task per street on the Dask ``client``; the frames are scattered once to every worker."""
    data = client.scatter(shared, broadcast=True)
    futures = [client.submit(street_task, data, s, catalog, pure=False, key=f"coverage-street-{s}") for s in streets]
    return cast(list[StreetResult], client.gather(futures))


def assemble(shared: Shared, results: list[StreetResult], catalog: Catalog) -> tuple[AssembledModel, DistanceTable]:
    m = AssembledModel(shared, results, catalog)
    return m, m.table(catalog, {})


def compute(conn: Connection, client: Any, catalog: Catalog, *, progress: Any = None) -> DaskComputeResult:
    """``gisgov coverage compute --dask``: every category for the whole city, one Dask task per street,
    stored and summed exactly as :meth:`gisgov.coverage.service.CoverageService.compute` does."""
    t0 = time.perf_counter()
    steps: dict[str, float] = {}

    def step(name: str, t: float) -> float:
        now = time.perf_counter()
        steps[name] = now - t
        return now

    sums = store.input_checksums(conn)
    city = store.load_city(conn, footprints=False)
    t = step("load_city", t0)
    shared, streets = prepare(city, catalog)
    t = step("prepare", t)
    if progress:
        progress("distances", 0, len(streets))
    results = run_streets(client, shared, streets, catalog)
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
    gfig = group_figures(b, city.groups, table, catalog)
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
    "Shared",
    "StreetResult",
    "compute",
    "in_memory",
    "local_client",
    "main_component_nodes",
    "prepare",
    "run_streets",
    "street_task",
]
