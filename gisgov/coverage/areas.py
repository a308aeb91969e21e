"""Honest service areas (服务圈) and the gap map (服务盲区).

A service area is drawn from what a walker can really reach, not from a hull, so that every point
inside it is within the budget (walking the network, then straight to the point):

1. every edge contributes the part of it from which a source is within the budget — whole edges,
   partial edges (cut at the exact offset) and the stretch around a source on the same edge;
2. streets whose every point has at least ``width`` (catalog ``network.area_width_m``, 25 m) of the
   budget left are buffered by ``width``; the others are cut into STEP_M pieces, each buffered by the
   budget left at its farthest point (at most ``width``), so the area narrows to nothing where the
   budget runs out;
3. the access legs of the buildings within the budget (building → its street point, or building →
   gate → street point) are buffered by the budget the building has left (at least LEG_MIN_M);
4. a buffer that reaches across water or rail keeps only the part on its own street's side;
5. buildings *beyond* the budget that the area touches are cut out whole (their footprint, or a
   5 m disc around their point when the city has no footprints).

Gaps: buildings beyond the budget, grouped into areas (discs of ``gap_radius`` around them,
dissolved, minus the service area when given), each with its building and household count.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import shapely
from shapely import ops

from gisgov.coverage.model import NETWORK, CoverageModel
from gisgov.network import FLAG_GATE, NodeDistances, Sources, node_distances

HOLE_RADIUS_M = 5.0  # beyond-budget buildings without a footprint: a disc this wide is cut out
STEP_M = 5.0  # street parts near the edge of the area are cut into pieces this long
LEG_MIN_M = 1.0  # a reachable building's leg is buffered at least this much (the building lies inside)


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


def _edge_distance(model: CoverageModel, s: Sources, nd: NodeDistances, e: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Walking distance to the nearest source from the point at offset ``t`` of edge ``e`` (metres;
    inf beyond the node distances' limit), as :func:`gisgov.network.point_distances` reads it."""
    g = model.graph
    assert g is not None  # network method
    L = g.length[e]
    d_u = np.where(~g.oneway[e] | (t <= 0), t + nd.dist[g.u[e]], np.inf)
    d = np.minimum(d_u, L - t + nd.dist[g.v[e]])
    ok = s.edge >= 0
    if ok.any():
        se, st, sl = s.edge[ok], s.offset[ok], s.leg[ok]
        on = np.flatnonzero(np.isin(e, se))
        for k in range(len(se)):  # sources sharing an edge with a sampled point: straight along it
            mine = on[e[on] == se[k]]
            if len(mine) == 0:
                continue
            tt = t[mine]
            direct = np.where((st[k] >= tt) | ~g.oneway[se[k]], np.abs(st[k] - tt) + sl[k], np.inf)
            d[mine] = np.minimum(d[mine], direct)
    return np.asarray(d, dtype=np.float64)


def _street_pieces(model: CoverageModel, s: Sources, nd: NodeDistances, budget: float, width: float):
    """Reachable street parts with their buffer width: (core lines buffered by ``width``, frontier
    pieces as (lines, widths)). Along an edge the distance d(t) is 1-Lipschitz, so on a piece [a, b]
    it never exceeds (d(a) + d(b) + (b − a)) / 2; a piece is buffered by the budget left at that bound
    (at most ``width``), so a point within the buffer is reachable within the budget."""
    g = model.graph
    assert g is not None  # network method
    full, partial = reachable_intervals(model, s, nd, budget)
    cand = np.unique(np.concatenate([full.astype(np.int64), np.fromiter(partial, dtype=np.int64, count=len(partial))]))
    empty = np.zeros(0, dtype=object)
    if len(cand) == 0:
        return empty, empty, np.zeros(0)
    L = g.length[cand]
    n = np.maximum(1, np.ceil(L / STEP_M).astype(np.int64))
    e = np.repeat(cand, n + 1)
    k = np.arange(len(e)) - np.repeat(np.cumsum(n + 1) - (n + 1), n + 1)
    t = np.minimum(L[np.searchsorted(cand, e)], k * np.repeat(L / n, n + 1))
    d = _edge_distance(model, s, nd, e, t)
    last = np.cumsum(n + 1) - 1
    lo = np.setdiff1d(np.arange(len(e)), last)  # piece i spans samples lo[i] .. lo[i] + 1
    hi = lo + 1
    bound = np.maximum(np.maximum(d[lo], d[hi]), (d[lo] + d[hi] + (t[hi] - t[lo])) / 2)
    bound = np.where(np.isfinite(bound), bound, np.inf)
    left = budget - bound
    pe = e[lo]
    worst = pd.Series(left).groupby(pe).min()
    core_edges = worst.index.to_numpy()[worst.to_numpy() >= width]
    core = np.isin(pe, core_edges)
    keep = ~core & (left > 0)
    pe, a, b, r = pe[keep], t[lo][keep], t[hi][keep], np.minimum(width, left[keep])
    scale = np.divide(g.geom_length[pe], g.length[pe], out=np.zeros(len(pe)), where=g.length[pe] > 0)
    p0 = shapely.line_interpolate_point(g.geoms[pe], a * scale)
    p1 = shapely.line_interpolate_point(g.geoms[pe], b * scale)
    xy0 = np.column_stack([shapely.get_x(p0), shapely.get_y(p0)])
    xy1 = np.column_stack([shapely.get_x(p1), shapely.get_y(p1)])
    lines = shapely.linestrings(np.stack([xy0, xy1], axis=1)) if len(pe) else empty
    return g.geoms[core_edges], lines, r


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
    core, pieces, piece_r = _street_pieces(model, s, nd, budget, width)
    # legs: every point of a leg is at most the building's distance away, so its buffer is the budget
    # the building has left (at least LEG_MIN_M so the building itself lies inside)
    leg_lines, leg_r = _legs_with(model, reach, dist)
    if model.access is not None and (model.access.via >= 0).any():
        gl, gr = _gate_legs(model, reach, s, nd)
        leg_lines, leg_r = leg_lines + gl, leg_r + gr
    legs = np.asarray(leg_lines, dtype=object)
    legs_r = np.minimum(width, np.maximum(LEG_MIN_M, budget - np.asarray(leg_r, dtype=float)))
    polys: list[np.ndarray] = []
    lines: list[np.ndarray] = []
    if len(core):
        polys.append(shapely.buffer(core, width))
        lines.append(core)
    if len(pieces):
        polys.append(shapely.buffer(pieces, piece_r))
        lines.append(pieces)
    if len(legs):
        polys.append(shapely.buffer(legs, legs_r))
        lines.append(legs)
    if not polys:
        return shapely.Polygon()
    poly, line = np.concatenate(polys), np.concatenate(lines)
    poly = _not_across_barriers(model, poly, line)
    area = shapely.union_all(poly[~shapely.is_empty(poly)])
    return _cut_holes(model, area, beyond)


def _legs_with(model: CoverageModel, reach: np.ndarray, dist: np.ndarray) -> tuple[list[Any], list[float]]:
    """Direct access legs of the reachable buildings and each one's building distance."""
    idx = reach[(model.bsnap.flags[reach] & FLAG_GATE) == 0]
    lines = _legs(model, idx)
    ok = np.isfinite(model.bsnap.x[idx])
    return lines, list(dist[idx[ok]])


def _not_across_barriers(model: CoverageModel, poly: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Buffers that reach across water or rail keep only the parts on their own line's side."""
    if model.barriers is None or len(model.barriers) == 0:
        return poly
    bar = np.asarray(model.barriers, dtype=object)
    bar = np.where(shapely.get_dimensions(bar) < 2, shapely.buffer(bar, 0.25), bar)
    tree = shapely.STRtree(bar)
    pi, bi = tree.query(poly, predicate="intersects")
    if len(pi) == 0:
        return poly
    out = poly.copy()
    hit = np.unique(pi)
    cut = [shapely.union_all(bar[bi[pi == i]]) for i in hit]
    diff = shapely.difference(poly[hit], np.asarray(cut, dtype=object))
    parts, owner = shapely.get_parts(diff, return_index=True)
    own = shapely.intersects(parts, line[hit][owner]) if len(parts) else np.zeros(0, dtype=bool)
    for j, i in enumerate(hit):
        mine = parts[(owner == j) & own]
        out[i] = shapely.union_all(mine) if len(mine) else shapely.Polygon()
    return out


def _gate_legs(model: CoverageModel, reach: np.ndarray, s: Sources, nd: NodeDistances) -> tuple[list[Any], list[float]]:
    """Building → gate → street paths of the reachable gated buildings and each path's distance."""
    acc = model.access
    rows = acc.rows_of(reach)
    rows = rows[acc.via[rows] >= 0]
    if len(rows) == 0:
        return [], []
    g = model.graph
    assert g is not None  # network method
    b = model.buildings
    e, t = acc.edge[rows], acc.offset[rows]
    scale = np.divide(g.geom_length[e], g.length[e], out=np.zeros(len(e)), where=g.length[e] > 0)
    street = shapely.line_interpolate_point(g.geoms[e], t * scale)
    gate_xy = model.gate_xy.reindex(acc.via[rows]).to_numpy()
    bx, by = b["x"].to_numpy()[acc.owner[rows]], b["y"].to_numpy()[acc.owner[rows]]
    out = []
    for x0, y0, (gx, gy), p in zip(bx, by, gate_xy, street, strict=False):
        out.append(shapely.LineString([(x0, y0), (gx, gy), (p.x, p.y)]))
    return out, list(_edge_distance(model, s, nd, e, t) + acc.leg[rows])


def _cut_holes(model: CoverageModel, area, beyond: np.ndarray):
    """Cut out every building beyond the budget that the area touches: its whole footprint when the
    city has footprints, else a disc of HOLE_RADIUS_M around its point."""
    if len(beyond) == 0 or area.is_empty:
        return area
    b = model.buildings
    holes = shapely.buffer(shapely.points(b["x"].to_numpy()[beyond], b["y"].to_numpy()[beyond]), HOLE_RADIUS_M)
    if model.footprints is not None:
        fp = np.asarray(model.footprints, dtype=object)[beyond]
        has = ~(shapely.is_missing(fp) | shapely.is_empty(fp))
        holes[has] = shapely.union(holes[has], fp[has])
    hit = shapely.intersects(area, holes)
    if not hit.any():
        return area
    return shapely.difference(area, shapely.union_all(holes[hit]))


def _straight_area(model: CoverageModel, rows: np.ndarray, budget: float, width: float, beyond: np.ndarray) -> Any:
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
