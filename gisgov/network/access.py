"""Access rows: where a point (building) joins the walking network — one row, or one per gate.

A building in a compound (小区) that has gates reaches the street through those gates unless its
nearest edge is an internal path of the compound: then the graph itself leads to the gates. Its
rows are one per gate, with leg = straight line building → gate (inside the compound) + the gate's
own access leg; the distance is the minimum over the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import shapely

from gisgov.network.graph import WalkGraph
from gisgov.network.snap import FLAG_BARRIER, FLAG_GATE, FLAG_LONG, FLAG_REROUTED, Snap, node_snap, snap_points


@dataclass
class Access:
    owner: np.ndarray  # (m,) owner index (sorted), 0 … n-1
    edge: np.ndarray  # (m,) internal edge, -1 = none
    offset: np.ndarray  # (m,) metres from the edge's source
    leg: np.ndarray  # (m,) metres from the owner to the network point
    via: np.ndarray  # (m,) gate id used, -1 = direct
    n: int  # number of owners

    @property
    def single(self) -> bool:
        return len(self.owner) == self.n

    @classmethod
    def from_snap(cls, snap: Snap) -> Access:
        n = len(snap)
        return cls(np.arange(n, dtype=np.int64), snap.edge, snap.offset, snap.leg, np.full(n, -1, np.int64), n)

    def rows_of(self, owners: np.ndarray) -> np.ndarray:
        """Row indices belonging to the given owners."""
        lo = np.searchsorted(self.owner, owners, "left")
        hi = np.searchsorted(self.owner, owners, "right")
        cnt = hi - lo
        rows: np.ndarray = np.repeat(lo, cnt) + (np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt))
        return rows


def snap_gates(graph: WalkGraph, gates: pd.DataFrame, **snap_kw: Any) -> Snap:
    """Gates (columns x, y, node_id) on the network: their road_node when linked, else snapped."""
    snap = snap_points(graph, gates["x"].to_numpy(float), gates["y"].to_numpy(float), **snap_kw)
    if "node_id" in gates and len(gates):
        nid = pd.to_numeric(gates["node_id"], errors="coerce").fillna(-1).to_numpy(np.int64)
        edge, offset, found = node_snap(graph, nid)
        if found.any():
            snap.edge[found], snap.offset[found] = edge[found], offset[found]
            e = edge[found]
            at_end = offset[found] > 0
            pts = shapely.get_point(graph.geoms[e], np.where(at_end, -1, 0))
            snap.x[found], snap.y[found] = shapely.get_x(pts), shapely.get_y(pts)
            gx, gy = gates["x"].to_numpy(float)[found], gates["y"].to_numpy(float)[found]
            snap.leg[found] = np.hypot(gx - snap.x[found], gy - snap.y[found])
            snap.flags[found] &= ~(FLAG_BARRIER | FLAG_REROUTED | FLAG_LONG)
    return snap


def building_access(
    graph: WalkGraph,
    snap: Snap,
    bx: np.ndarray,
    by: np.ndarray,
    compound: np.ndarray,
    *,
    gates: pd.DataFrame | None = None,
    compound_geoms: pd.Series | None = None,
    max_snap_m: float = 150.0,
    **snap_kw: Any,
) -> tuple[Access, Snap]:
    """Access rows for buildings; routes compound buildings through their gates (see module doc).

    ``compound`` = compound id per building (-1 none); ``gates`` columns id, compound_id, x, y,
    node_id; ``compound_geoms`` = metric polygons indexed by compound id. Returns the access rows
    and the building snap with FLAG_GATE set (and leg flags recomputed) where gates are used.
    """
    n = len(snap)
    if gates is None or len(gates) == 0 or graph.n_edges == 0:
        return Access.from_snap(snap), snap
    gsnap = snap_gates(graph, gates, max_snap_m=max_snap_m, **snap_kw)
    gcomp = gates["compound_id"].to_numpy(np.int64)
    gated = np.isin(compound, gcomp) & (compound >= 0)
    if compound_geoms is not None and gated.any():
        gi = np.flatnonzero(gated)
        polys = compound_geoms.reindex(compound[gi]).to_numpy(object)
        has = ~pd.isna(polys)
        inside = np.zeros(len(gi), dtype=bool)
        inside[has] = shapely.contains_xy(polys[has].astype(object), snap.x[gi][has], snap.y[gi][has])
        gated[gi[inside]] = False  # nearest edge is an internal path: the graph leads to the gates
    if not gated.any():
        return Access.from_snap(snap), snap

    order = np.argsort(gcomp, kind="stable")
    gcomp_s = gcomp[order]
    bi = np.flatnonzero(gated)
    lo = np.searchsorted(gcomp_s, compound[bi], "left")
    hi = np.searchsorted(gcomp_s, compound[bi], "right")
    cnt = hi - lo
    rep_b = np.repeat(bi, cnt)
    gidx = order[np.repeat(lo, cnt) + (np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt))]
    gx, gy = gates["x"].to_numpy(float), gates["y"].to_numpy(float)
    inner = np.hypot(bx[rep_b] - gx[gidx], by[rep_b] - gy[gidx])
    usable = gsnap.edge[gidx] >= 0

    direct = np.flatnonzero(~gated)
    owner = np.concatenate([direct, rep_b[usable]])
    edge = np.concatenate([snap.edge[direct], gsnap.edge[gidx][usable]])
    offset = np.concatenate([snap.offset[direct], gsnap.offset[gidx][usable]])
    leg = np.concatenate([snap.leg[direct], (inner + gsnap.leg[gidx])[usable]])
    via = np.concatenate([np.full(len(direct), -1, np.int64), gates["id"].to_numpy(np.int64)[gidx][usable]])
    # gated buildings whose gates are all off the network keep their direct snap
    lost = bi[~np.isin(bi, rep_b[usable])]
    if len(lost):
        owner = np.concatenate([owner, lost])
        edge = np.concatenate([edge, snap.edge[lost]])
        offset = np.concatenate([offset, snap.offset[lost]])
        leg = np.concatenate([leg, snap.leg[lost]])
        via = np.concatenate([via, np.full(len(lost), -1, np.int64)])
    srt = np.argsort(owner, kind="stable")
    acc = Access(owner[srt], edge[srt], offset[srt], leg[srt], via[srt], n)

    flags = snap.flags.copy()
    used = np.unique(rep_b[usable])
    flags[used] &= ~(FLAG_LONG | FLAG_BARRIER | FLAG_REROUTED)
    flags[used] |= FLAG_GATE
    gate_leg_min = pd.Series(gsnap.leg[gidx][usable]).groupby(rep_b[usable]).min()
    long_gate = gate_leg_min.index.to_numpy()[gate_leg_min.to_numpy() > max_snap_m]
    flags[long_gate] |= FLAG_LONG
    return acc, Snap(snap.edge, snap.offset, snap.leg, snap.x, snap.y, flags)
