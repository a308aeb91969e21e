"""The walking graph: built once from edge arrays (or a GeoDataFrame of edges), held in memory.

All streets are two-way for pedestrians unless an edge is tagged ``oneway_foot`` (walkable only
source → target); edges tagged ``foot = false`` are left out and counted. Weakly connected
components are labelled (0 = the largest) and reported, never dropped.

Distances are computed on the *reversed* adjacency (``rev_csr``): a Dijkstra from a virtual super
source there gives, for every node, the walking distance from that node *to* the nearest source.
The matrix keeps one spare row/column (index ``n_nodes``) for that super source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import shapely
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from gisgov.errors import InvalidInput

if TYPE_CHECKING:
    from gisgov.network.nearest import PieceIndex


FRAGMENTS_LISTED = 20  # the longest disconnected pieces listed in the graph report


class NetworkError(InvalidInput):
    """The edge data cannot make a walking graph (the message names the edge and the rule)."""


@dataclass(eq=False)
class WalkGraph:
    epsg: int  # metric CRS of ``geoms`` and all lengths
    node_ids: np.ndarray  # (N,) external node ids (road_node.id); index = internal node
    edge_ids: np.ndarray  # (E,) external edge ids (road_edge.id)
    u: np.ndarray  # (E,) internal source node
    v: np.ndarray  # (E,) internal target node
    length: np.ndarray  # (E,) metres
    oneway: np.ndarray  # (E,) bool: walkable only u → v
    geoms: np.ndarray  # (E,) LineStrings in ``epsg``, oriented u → v
    component: np.ndarray  # (N,) weak component, 0 = largest
    rev_indptr: np.ndarray
    rev_indices: np.ndarray
    rev_data: np.ndarray
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def n_nodes(self) -> int:
        return len(self.node_ids)

    @property
    def n_edges(self) -> int:
        return len(self.edge_ids)

    @cached_property
    def tree(self) -> shapely.STRtree:
        return shapely.STRtree(self.geoms)

    @cached_property
    def pieces(self) -> PieceIndex:
        """Short straight pieces of every edge in a k-d tree (fast exact nearest-edge search)."""
        from gisgov.network.nearest import PieceIndex

        return PieceIndex.build(self.geoms)

    @cached_property
    def edge_component(self) -> np.ndarray:
        return self.component[self.u] if self.n_edges else np.zeros(0, dtype=np.int32)

    @cached_property
    def geom_length(self) -> np.ndarray:
        return shapely.length(self.geoms)

    @cached_property
    def node_index(self) -> pd.Series:
        """External node id → internal index."""
        return pd.Series(np.arange(self.n_nodes), index=self.node_ids)

    @cached_property
    def edge_index(self) -> pd.Series:
        return pd.Series(np.arange(self.n_edges), index=self.edge_ids)

    @cached_property
    def undirected_csr(self) -> sparse.csr_matrix:
        """Symmetric adjacency (ignores one-way tags): for conservative neighbourhood searches."""
        n = self.n_nodes + 1
        keep = self.u != self.v
        r = np.concatenate([self.u[keep], self.v[keep]])
        c = np.concatenate([self.v[keep], self.u[keep]])
        w = np.concatenate([self.length[keep], self.length[keep]])
        return _csr_min(r, c, w, n)

    def rev_with_source(self, targets: np.ndarray, weights: np.ndarray) -> sparse.csr_matrix:
        """The reversed adjacency plus a super-source row (index ``n_nodes``) → ``targets``."""
        return _with_source(self.rev_indptr, self.rev_indices, self.rev_data, targets, weights)

    def components_table(self) -> pd.DataFrame:
        """One row per weakly connected component: nodes, edges, total length (km)."""
        if self.n_nodes == 0:
            return pd.DataFrame(columns=["component", "nodes", "edges", "length_km", "main"])
        nodes = np.bincount(self.component)
        edges = np.bincount(self.edge_component, minlength=len(nodes))
        km = np.bincount(self.edge_component, weights=self.length, minlength=len(nodes)) / 1000.0
        return pd.DataFrame(
            {
                "component": np.arange(len(nodes)),
                "nodes": nodes,
                "edges": edges,
                "length_km": km.round(3),
                "main": np.arange(len(nodes)) == 0,
            }
        )


def _with_source(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, targets: np.ndarray, weights: np.ndarray
) -> sparse.csr_matrix:
    nnz = int(indptr[-1])
    n = len(indptr) - 1
    indptr = indptr.copy()
    indptr[-1] = nnz + len(targets)
    indices = np.concatenate([indices[:nnz], np.asarray(targets).astype(indices.dtype)])
    data = np.concatenate([data[:nnz], np.asarray(weights, dtype=np.float64)])
    return sparse.csr_matrix((data, indices, indptr), shape=(n, n))


def with_super_source(base: sparse.csr_matrix, targets: np.ndarray, weights: np.ndarray) -> sparse.csr_matrix:
    """``base`` (whose last row is the empty super-source slot) with that row → ``targets``."""
    return _with_source(base.indptr, base.indices, base.data, targets, weights)


def _csr_min(r: np.ndarray, c: np.ndarray, w: np.ndarray, n: int) -> sparse.csr_matrix:
    """CSR matrix keeping the minimum weight of duplicate (row, col) pairs (parallel edges)."""
    if len(r) == 0:
        return sparse.csr_matrix((n, n))
    key = r.astype(np.int64) * n + c
    order = np.lexsort((w, key))
    key, w = key[order], w[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    key, w = key[first], w[first]
    rows, cols = key // n, key % n
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    idx_dtype = np.int32 if n < 2**31 - 1 and len(cols) < 2**31 - 1 else np.int64
    return sparse.csr_matrix((w.astype(np.float64), cols.astype(idx_dtype), indptr.astype(idx_dtype)), shape=(n, n))


def build_graph(
    source: np.ndarray,
    target: np.ndarray,
    length_m: np.ndarray,
    geoms: np.ndarray,
    *,
    epsg: int,
    edge_ids: np.ndarray | None = None,
    foot: np.ndarray | None = None,
    oneway_foot: np.ndarray | None = None,
    node_xy: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> WalkGraph:
    """Build the walking graph from edge arrays.

    ``geoms`` are LineStrings already in the metric CRS ``epsg``. ``node_xy`` = (node ids, x, y) in
    that CRS, when known, is used to orient each geometry source → target (flipped if reversed).
    """
    source = np.asarray(source, dtype=np.int64)
    target = np.asarray(target, dtype=np.int64)
    length_m = np.asarray(length_m, dtype=np.float64)
    geoms = np.asarray(geoms, dtype=object)
    n_in = len(source)
    if not (len(target) == len(length_m) == len(geoms) == n_in):
        raise NetworkError("路段数组长度不一致 edge arrays differ in length (rule: aligned_edge_arrays)")
    edge_ids = np.arange(n_in, dtype=np.int64) if edge_ids is None else np.asarray(edge_ids, dtype=np.int64)
    foot = np.ones(n_in, dtype=bool) if foot is None else np.asarray(foot, dtype=bool)
    oneway = np.zeros(n_in, dtype=bool) if oneway_foot is None else np.asarray(oneway_foot, dtype=bool)

    bad = ~np.isfinite(length_m) | (length_m < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise NetworkError(
            f"路段长度无效 road_edge {edge_ids[i]}: length_m {length_m[i]} is not a finite non-negative number (rule: edge_length)"
        )
    empty = shapely.is_empty(geoms) | shapely.is_missing(geoms)
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise NetworkError(f"路段几何为空 road_edge {edge_ids[i]}: empty geometry (rule: edge_geometry)")

    keep = foot
    report: dict[str, Any] = {"edges_in": int(n_in), "edges_not_foot": int((~foot).sum())}
    source, target, length_m, geoms = source[keep], target[keep], length_m[keep], geoms[keep]
    edge_ids, oneway = edge_ids[keep], oneway[keep]

    if node_xy is not None and len(geoms):
        geoms = _orient(geoms, source, target, *node_xy)

    node_ids, inv = np.unique(np.concatenate([source, target]), return_inverse=True)
    u, v = inv[: len(source)], inv[len(source) :]
    n = len(node_ids)

    # Reversed arcs: forward arc a→b (weight L) becomes row b, column a.
    loop = u == v
    fwd_a = np.concatenate([u[~loop], v[~loop & ~oneway]])
    fwd_b = np.concatenate([v[~loop], u[~loop & ~oneway]])
    w = np.concatenate([length_m[~loop], length_m[~loop & ~oneway]])
    rev = _csr_min(fwd_b, fwd_a, w, n + 1)
    report.update(self_loops=int(loop.sum()), oneway_foot=int(oneway.sum()), parallel_arcs_merged=int(len(w) - rev.nnz))

    if n:
        ncomp, labels = connected_components(rev[:n, :n], directed=True, connection="weak")
        sizes = np.bincount(labels, minlength=ncomp)
        rank = np.empty(ncomp, dtype=np.int32)
        rank[np.argsort(-sizes, kind="stable")] = np.arange(ncomp, dtype=np.int32)
        component = rank[labels]
    else:
        component = np.zeros(0, dtype=np.int32)
        ncomp = 0
    report.update(nodes=int(n), edges=int(len(u)), components=int(ncomp))

    g = WalkGraph(
        epsg=epsg,
        node_ids=node_ids,
        edge_ids=edge_ids,
        u=u.astype(np.int64),
        v=v.astype(np.int64),
        length=length_m,
        oneway=oneway,
        geoms=geoms,
        component=component,
        rev_indptr=rev.indptr,
        rev_indices=rev.indices,
        rev_data=rev.data,
        report=report,
    )
    if n:
        comp = g.components_table()
        report["main_component_share"] = float(comp["nodes"].iloc[0] / n)
        report["minor_components"] = int(len(comp) - 1)
        report["minor_component_edges"] = int(comp["edges"].iloc[1:].sum())
        report["minor_component_km"] = round(float(comp["length_km"].iloc[1:].sum()), 3)
        km = comp["length_km"].to_numpy(dtype=np.float64)
        report["main_component_km"] = float(km[0])
        n_edges = comp["edges"].to_numpy(dtype=np.int64)
        order = 1 + np.argsort(-km[1:], kind="stable")[:FRAGMENTS_LISTED]
        report["fragments"] = [
            {"component": int(i), "edges": int(n_edges[i]), "length_m": round(float(km[i]) * 1000, 1)} for i in order
        ]
    return g


def _orient(geoms: np.ndarray, source: Any, target: Any, node_ids: Any, nx: np.ndarray, ny: np.ndarray) -> np.ndarray:
    """Flip geometries whose start lies at the target node rather than the source node."""
    idx = pd.Series(np.arange(len(node_ids)), index=np.asarray(node_ids, dtype=np.int64))
    si = idx.reindex(source).to_numpy()
    ti = idx.reindex(target).to_numpy()
    ok = ~(np.isnan(si) | np.isnan(ti))
    if not ok.any():
        return geoms
    si = np.where(ok, si, 0).astype(np.int64)
    ti = np.where(ok, ti, 0).astype(np.int64)
    start = shapely.get_point(geoms, 0)
    sx, sy = shapely.get_x(start), shapely.get_y(start)
    d_src = np.hypot(sx - nx[si], sy - ny[si])
    d_tgt = np.hypot(sx - nx[ti], sy - ny[ti])
    flip = ok & (d_tgt < d_src)
    if flip.any():
        geoms = geoms.copy()
        geoms[flip] = shapely.reverse(geoms[flip])
    return geoms


def graph_from_edges(
    edges: Any,
    *,
    epsg: int | None = None,
    nodes: Any = None,
    source_col: str = "source",
    target_col: str = "target",
    id_col: str | None = "id",
) -> WalkGraph:
    """Build the graph from a GeoDataFrame of edges (road_edge rows, or OSM edges from pyrosm).

    Columns: ``source``/``target`` node ids (names configurable: pyrosm uses ``u``/``v``), optional
    ``length_m`` (computed from the projected geometry when missing), ``foot``, ``oneway_foot``.
    ``nodes`` (GeoDataFrame with ``id``) orients geometries. The metric CRS is
    :func:`gisgov.crs.metric_epsg_for_bounds` of the data unless given.
    """
    from gisgov.crs import WGS84, metric_epsg_for_bounds

    if edges.crs is None:
        raise NetworkError("路段缺少坐标系 edges have no CRS (rule: crs_required)")
    if epsg is None:
        epsg = metric_epsg_for_bounds(tuple(edges.to_crs(WGS84).total_bounds))
    e = edges.to_crs(epsg)
    geoms = shapely.line_merge(e.geometry.values)  # MultiLineStrings from some sources
    multi = shapely.get_type_id(geoms) != 1
    if multi.any():
        i = int(np.flatnonzero(multi)[0])
        raise NetworkError(
            f"路段几何须为单条线 edge {e.index[i]}: geometry is not a single LineString (rule: edge_linestring)"
        )
    length = e["length_m"].to_numpy(dtype=float) if "length_m" in e else shapely.length(geoms)
    ids = e[id_col].to_numpy() if id_col and id_col in e else np.arange(len(e))
    node_xy = None
    if nodes is not None and len(nodes):
        n = nodes.to_crs(epsg)
        node_xy = (n["id"].to_numpy(dtype=np.int64), n.geometry.x.to_numpy(), n.geometry.y.to_numpy())
    return build_graph(
        e[source_col].to_numpy(),
        e[target_col].to_numpy(),
        length,
        geoms,
        epsg=epsg,
        edge_ids=ids,
        foot=e["foot"].to_numpy(dtype=bool) if "foot" in e else None,
        oneway_foot=e["oneway_foot"].to_numpy(dtype=bool) if "oneway_foot" in e else None,
        node_xy=node_xy,
    )
