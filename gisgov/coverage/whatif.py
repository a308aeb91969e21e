"""What-if edits: add, move or remove one facility and update only its category, locally.

* add: one Dijkstra from the new facility limited to the distance cap; a building's distance
  becomes min(old, new).
* remove: only buildings whose nearest facility was the removed one can change. The facilities
  that can matter for them lie within 2 × cap (undirected) of it; one multi-source Dijkstra from
  those, limited to the cap, gives their new distances. Exact, because a facility farther than
  2 × cap cannot be within the cap of a building that was within the cap of the removed one.
* move = remove, then add at the new place.

Nothing is written here; :mod:`gisgov.coverage.store` persists a committed edit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from gisgov.coverage.model import NETWORK, CoverageModel
from gisgov.errors import InvalidInput, NotFound
from gisgov.network import Access, Snap, Sources, node_distances, point_distances
from gisgov.network.graph import WalkGraph

NEW = -2  # facility row of the facility being added (not in the model yet)


def check_lonlat(lon: float, lat: float, bbox: tuple[float, float, float, float], *, what: str = "lon/lat") -> None:
    """A position a caller gives (lon, lat in degrees) must be finite and inside the region box
    (``GISGOV_REGION_BBOX``, China by default): 422 naming ``what`` and the rule otherwise."""
    try:
        lon, lat = float(lon), float(lat)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInput(f"坐标必须是数值 {what} must be numbers (rule: finite_coordinates)") from None
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise InvalidInput(
            f"坐标必须是有限数 {what} must be finite numbers, got ({lon}, {lat}) (rule: finite_coordinates)"
        )
    x0, y0, x1, y1 = bbox
    if not (x0 <= lon <= x1 and y0 <= lat <= y1):
        raise InvalidInput(
            f"坐标超出区域范围 {what} ({lon:g}, {lat:g}) lies outside the region lon {x0:g}–{x1:g}, "
            f"lat {y0:g}–{y1:g} (setting GISGOV_REGION_BBOX; rule: point_in_region)"
        )


def city_extent(model: CoverageModel) -> tuple[float, float, float, float]:
    """Bounds (metric) of the city's buildings and walking network."""
    b = model.buildings
    x0, y0 = float(np.nanmin(b["x"])), float(np.nanmin(b["y"]))
    x1, y1 = float(np.nanmax(b["x"])), float(np.nanmax(b["y"]))
    if model.graph is not None and model.graph.n_edges:
        import shapely

        gx0, gy0, gx1, gy1 = shapely.total_bounds(model.graph.geoms)
        x0, y0, x1, y1 = min(x0, gx0), min(y0, gy0), max(x1, gx1), max(y1, gy1)
    return x0, y0, x1, y1


def _outside(ext: tuple[float, float, float, float], x: float, y: float) -> float:
    """How far (m) the point lies outside the box (0 inside; inf when not finite)."""
    if not (math.isfinite(x) and math.isfinite(y)):
        return math.inf
    x0, y0, x1, y1 = ext
    return math.hypot(max(x0 - x, 0.0, x - x1), max(y0 - y, 0.0, y - y1))


def position(
    model: CoverageModel, lon: float, lat: float, srid: int, *, what: str = "位置 position"
) -> tuple[float, float]:
    """Metric (x, y) of a position a caller gives in the storage CRS (lon/lat degrees), refused unless it
    is a finite lon/lat pair (rule: lonlat_range), not swapped (rule: lonlat_swapped) and within the
    distance cap of the city's buildings and streets (rule: point_near_city): farther out, a facility
    could change nothing, and "0 buildings change" would be a wrong answer."""
    from gisgov.crs import transformer

    try:
        lon, lat = float(lon), float(lat)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInput(f"坐标必须是数值 {what}: lon/lat must be numbers (rule: finite_coordinates)") from None
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise InvalidInput(
            f"坐标必须是有限数 {what}: lon/lat must be finite numbers, got ({lon}, {lat}) (rule: finite_coordinates)"
        )
    tr = transformer(srid, model.epsg)
    ext = city_extent(model)
    margin = model.cap

    def near(a: float, b: float) -> bool:
        if not (-180.0 <= a <= 180.0 and -90.0 <= b <= 90.0):
            return False
        x, y = (float(v) for v in tr.transform(a, b))
        return _outside(ext, x, y) <= margin

    if near(lon, lat):
        x, y = (float(v) for v in tr.transform(lon, lat))
        return x, y
    if near(lat, lon):
        raise InvalidInput(
            f"经纬度顺序颠倒 {what} ({lon:g}, {lat:g}) looks like latitude, longitude: give the longitude first "
            f"({lat:g}, {lon:g}) (rule: lonlat_swapped)"
        )
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise InvalidInput(
            f"经纬度超出范围 {what} ({lon:g}, {lat:g}) is not a longitude, latitude in degrees "
            "(lon −180…180, lat −90…90; projected metres are not accepted) (rule: lonlat_range)"
        )
    off = _outside(ext, *(float(v) for v in tr.transform(lon, lat)))
    far = "far" if not math.isfinite(off) else f"{off / 1000:.1f} km"
    raise InvalidInput(
        f"位置远离本市数据范围 {what} ({lon:g}, {lat:g}) lies {far} outside the city's buildings and streets "
        f"(allowed: the distance cap, {margin:.0f} m) (rule: point_near_city)"
    )


def access_check(model: CoverageModel, snap: Snap, *, what: str = "位置 position") -> list[str]:
    """Refuse a facility off the walking network (access leg over ``network.max_access_m``: the straight
    line would be counted as a walk; rule: off_network); warnings for a long leg or one across water."""
    from gisgov.network.snap import FLAG_BARRIER, FLAG_LONG

    if model.method != NETWORK:
        return []
    leg = float(snap.leg[0])
    cap = model.params.max_access_m
    if snap.edge[0] < 0 or not leg <= cap:
        raise InvalidInput(
            f"位置不在步行路网上 {what} is off the walking network: the nearest walkable street is {leg:.0f} m away, "
            f"more than {cap:.0f} m (setting network.max_access_m); map the path to it first (rule: off_network)"
        )
    out = []
    if snap.flags[0] & FLAG_LONG:
        out.append(
            f"接入距离较长 access leg {leg:.0f} m is longer than {model.params.max_snap_m:.0f} m: counted as walked "
            "in a straight line (rule: long_access)"
        )
    if snap.flags[0] & FLAG_BARRIER:
        out.append("接入线穿越水系或铁路 the access leg crosses water or rail (rule: crosses_barrier)")
    return out


@dataclass
class WhatIf:
    op: str
    category: str
    before: np.ndarray  # distance per building before
    after: np.ndarray  # after
    fac_after: np.ndarray  # facility row after (NEW = the added facility)
    changed: np.ndarray  # building indices whose distance changed
    new_snap: Snap | None = None
    seconds: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # bilingual, each naming its rule


def _single(model: CoverageModel, snap: Snap, limit: float):
    s = Sources(snap.edge, snap.offset, snap.leg)
    if model.method == NETWORK:
        nd = node_distances(model.graph, s, limit=limit)
        return point_distances(model.graph, nd, s, model.reader, limit=limit)[0]
    return model.straight_line(np.array([snap.x[0]]), np.array([snap.y[0]]), limit=limit)[0]


def add(model: CoverageModel, category: str, dist: np.ndarray, fac: np.ndarray, x: float, y: float) -> WhatIf:
    """Add a facility of ``category`` at metric (x, y)."""
    t0 = time.perf_counter()
    if model.method == NETWORK:
        snap = model._snap(np.array([x]), np.array([y]))
        warnings = access_check(model, snap)
    else:
        warnings = []
        snap = Snap.empty(1)
        snap.x[:], snap.y[:] = x, y
    d_new = _single(model, snap, model.cap)
    better = d_new < dist
    after = np.where(better, d_new, dist)
    fac_after = np.where(better, NEW, fac)
    return WhatIf(
        "add",
        category,
        dist,
        after,
        fac_after,
        np.flatnonzero(better),
        snap,
        {"total": time.perf_counter() - t0},
        warnings,
    )


def _undirected_reach(g: WalkGraph, s: Sources, limit: float) -> np.ndarray:
    """Distance from every node to the (single) source ignoring one-way tags (a lower bound)."""
    from scipy.sparse.csgraph import dijkstra

    from gisgov.network.graph import with_super_source

    e, t, leg = int(s.edge[0]), float(s.offset[0]), float(s.leg[0])
    m = with_super_source(g.undirected_csr, np.array([g.u[e], g.v[e]]), np.array([t + leg, g.length[e] - t + leg]))
    return dijkstra(m, directed=True, indices=g.n_nodes, limit=limit)[: g.n_nodes]


def remove(
    model: CoverageModel, category: str, rows: np.ndarray, dist: np.ndarray, fac: np.ndarray, row: int
) -> WhatIf:
    """Remove facility ``row`` (a row of ``model.facilities``) from ``category`` (its facility ``rows``)."""
    t0 = time.perf_counter()
    if row not in set(rows.tolist()):
        raise NotFound(
            f"设施不属于该类别 facility row {row} is not a facility of category {category!r} (rule: facility_in_category)"
        )
    affected = np.flatnonzero(fac == row)
    remaining = rows[rows != row]
    after, fac_after = dist.copy(), fac.copy()
    if len(affected):
        if model.method == NETWORK and len(remaining):
            g = model.graph
            s_rem = model.sources(remaining)
            reach = _undirected_reach(g, model.sources(np.array([row])), 2 * model.cap + float(g.length.max()))
            e = s_rem.edge
            ok = e >= 0
            near = np.zeros(len(remaining), dtype=bool)
            near[ok] = np.minimum(reach[g.u[e[ok]]], reach[g.v[e[ok]]]) <= 2 * model.cap + g.length[e[ok]]
            local = remaining[near]
            sub = _subset_access(model.access, affected)
            if len(local):
                s = model.sources(local)
                nd = node_distances(g, s, limit=model.cap)
                d, k = point_distances(g, nd, s, sub, limit=model.cap)
                after[affected] = d
                fac_after[affected] = np.where(k >= 0, local[np.maximum(k, 0)], -1)
            else:
                after[affected], fac_after[affected] = np.inf, -1
        elif len(remaining):
            d, f = model.distances_from_rows(remaining)
            after[affected], fac_after[affected] = d[affected], f[affected]
        else:
            after[affected], fac_after[affected] = np.inf, -1
    changed = affected[after[affected] != dist[affected]]
    return WhatIf("remove", category, dist, after, fac_after, changed, None, {"total": time.perf_counter() - t0})


def move(
    model: CoverageModel,
    category: str,
    rows: np.ndarray,
    dist: np.ndarray,
    fac: np.ndarray,
    row: int,
    x: float,
    y: float,
) -> WhatIf:
    t0 = time.perf_counter()
    r = remove(model, category, rows, dist, fac, row)
    a = add(model, category, r.after, r.fac_after, x, y)
    changed = np.flatnonzero(a.after != dist)
    return WhatIf(
        "move",
        category,
        dist,
        a.after,
        a.fac_after,
        changed,
        a.new_snap,
        {"total": time.perf_counter() - t0},
        a.warnings,
    )


def _subset_access(acc: Access, owners: np.ndarray) -> Access:
    rows = acc.rows_of(owners)
    local_owner = np.searchsorted(owners, acc.owner[rows])
    return Access(local_owner, acc.edge[rows], acc.offset[rows], acc.leg[rows], acc.via[rows], len(owners))
