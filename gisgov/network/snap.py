"""Snap points (buildings, facilities, gates) to the nearest walkable edge, with their position along it.

Not the nearest node: a point gets its edge, the distance along that edge from the edge's source
node (``offset``, in the units of ``length_m``) and the straight access leg to it. Legs that cross a
barrier (river, water, rail, wall) are moved to the nearest edge on the same side when one lies
within ``reroute_radius_m``; otherwise they are kept and flagged. Legs longer than ``max_snap_m``
are flagged.

A point whose nearest edge lies on a small piece disconnected from the main network (an isolated
path, a courtyard way) joins the nearest edge of the main network instead when that is at most
``fragment_extra_m`` farther (flag ``main_preferred``); otherwise it stays on the piece and is
flagged ``minor_component``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import shapely

from gisgov.network.graph import WalkGraph

FLAG_LONG = 1
FLAG_BARRIER = 2
FLAG_REROUTED = 4
FLAG_GATE = 8
FLAG_MINOR_COMPONENT = 16
FLAG_NO_NETWORK = 32
FLAG_MAIN_PREFERRED = 64

FRAGMENT_EXTRA_M = 25.0  # default of ``fragment_extra_m``

FLAGS = {
    FLAG_LONG: ("long_snap", "接入距离过长 access leg longer than the snap limit"),
    FLAG_BARRIER: ("crosses_barrier", "接入线穿越水系/铁路 access leg crosses water or rail"),
    FLAG_REROUTED: (
        "rerouted",
        "绕开障碍就近接入同侧道路 nearest street was across a barrier; joined the nearest on the same side",
    ),
    FLAG_GATE: ("via_gate", "经小区出入口 reaches the network through its compound gates"),
    FLAG_MINOR_COMPONENT: ("minor_component", "位于不连通子路网 on a network piece disconnected from the main network"),
    FLAG_NO_NETWORK: ("no_network", "无路网：直线距离×绕行系数 no walking network: straight line × detour factor"),
    FLAG_MAIN_PREFERRED: (
        "main_preferred",
        "最近路段属孤立小路网，改接稍远的主路网 nearest edge was on a disconnected piece; joined the main network, "
        "a little farther",
    ),
}


def flag_names(flags: int) -> list[str]:
    return [name for bit, (name, _) in FLAGS.items() if flags & bit]


@dataclass
class Snap:
    """Where each input point joins the network (arrays aligned with the input points)."""

    edge: np.ndarray  # internal edge index, -1 = no network
    offset: np.ndarray  # metres from the edge's source node along the edge
    leg: np.ndarray  # access leg length (m)
    x: np.ndarray  # snap point (metric CRS)
    y: np.ndarray
    flags: np.ndarray  # bit set of FLAG_*

    def __len__(self) -> int:
        return len(self.edge)

    @classmethod
    def empty(cls, n: int, flags: int = FLAG_NO_NETWORK) -> Snap:
        nan = np.full(n, np.nan)
        return cls(
            np.full(n, -1, dtype=np.int64),
            nan.copy(),
            nan.copy(),
            nan.copy(),
            nan.copy(),
            np.full(n, flags, dtype=np.int32),
        )

    def take(self, idx: np.ndarray) -> Snap:
        return Snap(self.edge[idx], self.offset[idx], self.leg[idx], self.x[idx], self.y[idx], self.flags[idx])


def _locate(graph: WalkGraph, edge: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = graph.geoms[edge]
    raw = shapely.line_locate_point(g, pts)
    sp = shapely.line_interpolate_point(g, raw)
    gl = graph.geom_length[edge]
    scale = np.divide(graph.length[edge], gl, out=np.zeros(len(edge)), where=gl > 0)
    offset = np.clip(raw * scale, 0.0, graph.length[edge])
    return offset, shapely.get_x(sp), shapely.get_y(sp)


def snap_points(
    graph: WalkGraph,
    x: np.ndarray,
    y: np.ndarray,
    *,
    barriers: np.ndarray | None = None,
    max_snap_m: float = 150.0,
    reroute_radius_m: float = 300.0,
    fragment_extra_m: float = FRAGMENT_EXTRA_M,
) -> Snap:
    """Snap points (metric CRS of ``graph``) to their nearest edge; see the module doc."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(x)
    if graph.n_edges == 0 or n == 0:
        return Snap.empty(n)
    pts = cast(np.ndarray, shapely.points(x, y))  # arrays in, an array of points out
    edge, _, raw, exact = graph.pieces.nearest(x, y)
    edge = edge.astype(np.int64)
    if not exact.all():  # the few the k-d tree cannot prove: R-tree nearest
        slow = np.flatnonzero(~exact)
        pi, ei = graph.tree.query_nearest(pts[slow], all_matches=False)
        edge[slow[pi]] = ei
        raw[slow] = shapely.line_locate_point(graph.geoms[edge[slow]], pts[slow])
    gl = graph.geom_length[edge]
    raw = np.clip(raw, 0.0, gl)
    sp = shapely.line_interpolate_point(graph.geoms[edge], raw)
    sx, sy = shapely.get_x(sp), shapely.get_y(sp)
    scale = np.divide(graph.length[edge], gl, out=np.zeros(n), where=gl > 0)
    offset = np.clip(raw * scale, 0.0, graph.length[edge])
    leg = np.hypot(x - sx, y - sy)
    flags = np.zeros(n, dtype=np.int32)
    if fragment_extra_m >= 0:
        _prefer_main(graph, pts, edge, offset, sx, sy, leg, flags, fragment_extra_m)

    if barriers is not None and len(barriers):
        btree = shapely.STRtree(np.asarray(barriers, dtype=object))
        moved = leg > 1e-9
        idx = np.flatnonzero(moved)
        legs = shapely.linestrings(np.stack([np.stack([x[idx], sx[idx]], 1), np.stack([y[idx], sy[idx]], 1)], 2))
        hit = np.unique(idx[btree.query(legs, predicate="intersects")[0]])
        for i in hit:
            best = _reroute(graph, btree, pts[i], reroute_radius_m)
            if best is None:
                flags[i] |= FLAG_BARRIER
            else:
                edge[i], offset[i], sx[i], sy[i], leg[i] = best
                flags[i] |= FLAG_REROUTED
    flags[leg > max_snap_m] |= FLAG_LONG
    flags[graph.edge_component[edge] != 0] |= FLAG_MINOR_COMPONENT
    return Snap(edge, offset, leg, sx, sy, flags)


def _prefer_main(
    graph: WalkGraph,
    pts: np.ndarray,
    edge: np.ndarray,
    offset: np.ndarray,
    sx: np.ndarray,
    sy: np.ndarray,
    leg: np.ndarray,
    flags: np.ndarray,
    extra: float,
) -> None:
    """Move (in place) points whose nearest edge is on a minor component to the nearest edge of the
    main component (0) when that one is at most ``extra`` metres farther."""
    minor = np.flatnonzero(graph.edge_component[edge] != 0)
    if len(minor) == 0 or not (graph.edge_component == 0).any():
        return
    pi, ei = graph.tree.query(pts[minor], predicate="dwithin", distance=leg[minor] + extra)
    main = graph.edge_component[ei] == 0
    pi, ei = pi[main], ei[main]
    if len(pi) == 0:
        return
    d = shapely.distance(graph.geoms[ei], pts[minor[pi]])
    order = np.lexsort((d, pi))
    pi, ei, d = pi[order], ei[order], d[order]
    first = np.ones(len(pi), dtype=bool)
    first[1:] = pi[1:] != pi[:-1]
    idx, best = minor[pi[first]], ei[first].astype(np.int64)
    ok = d[first] <= leg[idx] + extra
    idx, best = idx[ok], best[ok]
    if len(idx) == 0:
        return
    off, x1, y1 = _locate(graph, best, pts[idx])
    edge[idx], offset[idx], sx[idx], sy[idx] = best, off, x1, y1
    px, py = shapely.get_x(pts[idx]), shapely.get_y(pts[idx])
    leg[idx] = np.hypot(px - x1, py - y1)
    flags[idx] |= FLAG_MAIN_PREFERRED


def _reroute(
    graph: WalkGraph, btree: shapely.STRtree, pt: shapely.Point, radius: float
) -> tuple[int, float, float, float, float] | None:
    """Nearest edge within ``radius`` whose access leg crosses no barrier, or None."""
    cand = graph.tree.query(pt, predicate="dwithin", distance=radius)
    if len(cand) == 0:
        return None
    d = shapely.distance(graph.geoms[cand], pt)
    for e in cand[np.argsort(d, kind="stable")]:
        off, sx, sy = _locate(graph, np.array([e]), np.array([pt]))
        leg = shapely.LineString([(pt.x, pt.y), (sx[0], sy[0])])
        if leg.length <= 1e-9 or len(btree.query(leg, predicate="intersects")) == 0:
            return int(e), float(off[0]), float(sx[0]), float(sy[0]), float(leg.length)
    return None


def node_snap(graph: WalkGraph, node_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(edge, offset, found) placing network nodes on an incident edge (offset 0 or its length)."""
    node_ids = np.asarray(node_ids, dtype=np.int64)
    idx = graph.node_index.reindex(node_ids).to_numpy()
    found = ~np.isnan(idx)
    ni = np.where(found, idx, 0).astype(np.int64)
    first_out = np.full(graph.n_nodes, -1, dtype=np.int64)
    first_in = np.full(graph.n_nodes, -1, dtype=np.int64)
    eidx = np.arange(graph.n_edges)
    first_out[graph.u[::-1]] = eidx[::-1]
    first_in[graph.v[::-1]] = eidx[::-1]
    use_out = first_out[ni] >= 0
    edge = np.where(use_out, first_out[ni], first_in[ni])
    offset = np.where(use_out, 0.0, graph.length[np.maximum(edge, 0)])
    found &= edge >= 0
    return np.where(found, edge, -1), np.where(found, offset, np.nan), found
