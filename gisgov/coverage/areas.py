"""Honest service areas (服务圈) and the gap map (服务盲区).

A service area is drawn from what a walker can really reach, not from a hull:

1. every edge contributes the part of it from which a source is within the budget — whole edges,
   partial edges (cut at the exact offset) and the stretch around a source on the same edge;
2. the access legs of the buildings that are within the budget (building → its street point, or
   building → gate → street) are added;
3. those lines are buffered by ``width`` (catalog ``network.area_width_m``, default 25 m: half a
   street plus its frontage) and dissolved;
4. buildings *beyond* the budget that the buffer would swallow are cut out (their footprint, or a
   5 m disc around their point), so no building with a network distance over the budget lies
   inside the area.

Gaps: buildings beyond the budget, grouped into areas (discs of ``gap_radius`` around them,
dissolved, minus the service area when given), each with its building and household count.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely
from shapely import ops

from gisgov.coverage.model import NETWORK, CoverageModel
from gisgov.network import FLAG_GATE, NodeDistances, Sources, node_distances

HOLE_RADIUS_M = 5.0


def reachable_intervals(model: CoverageModel, s: Sources, nd: NodeDistances, budget: float):
    """Per edge: list of (lo, hi) offsets (m) from which the nearest source is within ``budget``."""
    g = model.graph
    L = g.length
    du, dv = nd.dist[g.u], nd.dist[g.v]
    ra = np.where(~g.oneway, np.minimum(L, budget - du), np.where(du <= budget, 0.0, -1.0))
    rb = np.maximum(0.0, L - (budget - dv))  # interval [rb, L] when dv <= budget
    has_a = du <= budget
    has_b = dv <= budget
    full = (has_a & has_b & (ra >= rb)) | (has_a & (ra >= L)) | (has_b & (rb <= 0))
    out: dict[int, list[tuple[float, float]]] = {}
    for e in np.flatnonzero((has_a | has_b) & ~full):
        iv = []
        if has_a[e] and ra[e] >= 0:
            iv.append((0.0, float(ra[e])))
        if has_b[e]:
            iv.append((float(rb[e]), float(L[e])))
        out[int(e)] = iv
    # sources on an edge: the stretch around each
    ok = s.edge >= 0
    for e, t, leg in zip(s.edge[ok], s.offset[ok], s.leg[ok], strict=False):
        r = budget - leg
        if r < 0:
            continue
        hi = t if g.oneway[e] else min(float(L[e]), t + r)
        out.setdefault(int(e), []).append((max(0.0, t - r), hi))
    return np.flatnonzero(full), out


def _merge(iv):
    iv = sorted(iv)
    out = [list(iv[0])]
    for lo, hi in iv[1:]:
        if lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return out


def _edge_parts(model: CoverageModel, full: np.ndarray, partial: dict) -> list:
    g = model.graph
    parts = list(g.geoms[full])
    fullset = set(full.tolist())
    for e, iv in partial.items():
        if e in fullset:
            continue
        geom, L, gl = g.geoms[e], g.length[e], g.geom_length[e]
        scale = gl / L if L > 0 else 0.0
        for lo, hi in _merge(iv):
            if hi - lo >= L - 1e-9:
                parts.append(geom)
            elif hi > lo:
                parts.append(ops.substring(geom, lo * scale, hi * scale))
            else:
                parts.append(shapely.line_interpolate_point(geom, lo * scale))
    return parts


def _legs(model: CoverageModel, idx: np.ndarray) -> list:
    """Access legs of buildings ``idx``: building → snap point, or building → gate → its street point."""
    idx = idx[(model.bsnap.flags[idx] & FLAG_GATE) == 0]  # gated buildings: see _gate_legs
    if len(idx) == 0:
        return []
    b = model.buildings
    bx, by = b["x"].to_numpy()[idx], b["y"].to_numpy()[idx]
    sx, sy = model.bsnap.x[idx], model.bsnap.y[idx]
    ok = np.isfinite(sx)
    lines = shapely.linestrings(np.stack([np.stack([bx[ok], sx[ok]], 1), np.stack([by[ok], sy[ok]], 1)], 2))
    return list(lines)


def service_area(
    model: CoverageModel,
    rows: np.ndarray,
    budget: float,
    dist: np.ndarray,
    *,
    width: float | None = None,
    within: np.ndarray | None = None,
):
    """Area (metric polygon) from which the nearest facility among ``rows`` is within ``budget``.

    ``dist``: the buildings' network distance to those facilities (for legs and holes);
    ``within``: optional mask of buildings to consider (an area of interest).
    """
    width = model.params.area_width_m if width is None else width
    sel = np.ones(len(dist), dtype=bool) if within is None else within
    reach = np.flatnonzero(sel & (dist <= budget))
    beyond = np.flatnonzero(sel & ~(dist <= budget))
    if model.method != NETWORK:
        return _straight_area(model, rows, budget, width, beyond)
    s = model.sources(rows)
    nd = node_distances(model.graph, s, limit=budget)
    full, partial = reachable_intervals(model, s, nd, budget)
    lines = _edge_parts(model, full, partial) + _legs(model, reach)
    if model.access is not None and (model.access.via >= 0).any():
        lines += _gate_legs(model, reach)
    lines = [ln for ln in lines if ln.geom_type == "LineString" and ln.length > 0]
    if not lines:
        return shapely.Polygon()
    area = shapely.buffer(shapely.MultiLineString(lines), width)
    return _cut_holes(model, area, beyond)


def _gate_legs(model: CoverageModel, reach: np.ndarray) -> list:
    acc = model.access
    rows = acc.rows_of(reach)
    rows = rows[acc.via[rows] >= 0]
    if len(rows) == 0:
        return []
    g = model.graph
    b = model.buildings
    e, t = acc.edge[rows], acc.offset[rows]
    scale = np.divide(g.geom_length[e], g.length[e], out=np.zeros(len(e)), where=g.length[e] > 0)
    street = shapely.line_interpolate_point(g.geoms[e], t * scale)
    gate_xy = model.gate_xy.reindex(acc.via[rows]).to_numpy()
    bx, by = b["x"].to_numpy()[acc.owner[rows]], b["y"].to_numpy()[acc.owner[rows]]
    out = []
    for x0, y0, (gx, gy), p in zip(bx, by, gate_xy, street, strict=False):
        out.append(shapely.LineString([(x0, y0), (gx, gy), (p.x, p.y)]))
    return out


def _cut_holes(model: CoverageModel, area, beyond: np.ndarray):
    if len(beyond) == 0 or area.is_empty:
        return area
    b = model.buildings
    pts = shapely.points(b["x"].to_numpy()[beyond], b["y"].to_numpy()[beyond])
    hit = beyond[shapely.intersects(area, shapely.buffer(pts, HOLE_RADIUS_M))]
    if len(hit) == 0:
        return area
    holes = shapely.buffer(shapely.points(b["x"].to_numpy()[hit], b["y"].to_numpy()[hit]), HOLE_RADIUS_M)
    if model.footprints is not None:
        fp = model.footprints[hit]
        has = ~shapely.is_missing(fp)
        holes = np.where(has, shapely.union(holes, np.where(has, fp, holes)), holes)
    return shapely.difference(area, shapely.union_all(holes))


def _straight_area(model: CoverageModel, rows, budget, width, beyond):
    """No network: discs of budget / detour factor around the facilities (labelled straight-line)."""
    f = model.facilities
    r = budget / model.params.detour_factor
    discs = shapely.buffer(shapely.points(f["x"].to_numpy()[rows], f["y"].to_numpy()[rows]), r)
    return _cut_holes(model, shapely.union_all(discs), beyond)


def gap_areas(
    model: CoverageModel,
    dist: np.ndarray,
    budget: float,
    *,
    radius: float | None = None,
    within: np.ndarray | None = None,
    area=None,
) -> pd.DataFrame:
    """Uncovered buildings grouped into gap polygons (metric): geometry, buildings, households."""
    radius = model.params.gap_radius_m if radius is None else radius
    sel = np.ones(len(dist), dtype=bool) if within is None else within
    idx = np.flatnonzero(sel & ~(dist <= budget))
    cols = ["geometry", "buildings", "households", "building_ids"]
    if len(idx) == 0:
        return pd.DataFrame(columns=cols)
    b = model.buildings
    pts = shapely.points(b["x"].to_numpy()[idx], b["y"].to_numpy()[idx])
    blob = shapely.union_all(shapely.buffer(pts, radius))
    if area is not None and not area.is_empty:
        # the served land is not part of a gap (an uncovered building is never inside the area)
        blob = shapely.difference(blob, area)
    polys = [p for p in shapely.get_parts(blob) if not p.is_empty]
    if not polys:
        return pd.DataFrame(columns=cols)
    tree = shapely.STRtree(polys)
    pi, gi = tree.query(pts, predicate="intersects")
    hh = (
        pd.to_numeric(b["households"], errors="coerce").fillna(0).to_numpy(float)
        if "households" in b
        else np.zeros(len(b))
    )
    ids = b["id"].to_numpy()
    rows = []
    # a point may touch two neighbouring parts: keep its first
    first = pd.Series(gi).groupby(pi).first()
    for k, poly in enumerate(polys):
        mine = idx[first.index.to_numpy()[first.to_numpy() == k]]
        if len(mine) == 0:
            continue
        rows.append(
            {
                "geometry": poly,
                "buildings": len(mine),
                "households": float(hh[mine].sum()),
                "building_ids": ids[mine].tolist(),
            }
        )
    return pd.DataFrame(rows, columns=cols).sort_values("households", ascending=False, ignore_index=True)
