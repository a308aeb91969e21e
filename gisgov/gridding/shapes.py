"""Boundary editing geometry (画网格边界): from a shape the planner drew to the set of units it selects.

Pure functions over arrays (no database): the grid editor's draw, reshape, split and lasso operations
turn a GeoJSON geometry (WGS84 lon/lat) into metric shapely geometry (:func:`edit_geometry`), then into
atoms (:func:`atoms_inside`, :func:`split_sides`), and give atoms that leave a grid to a neighbour
(:func:`give_to_neighbours`).

A unit belongs to a drawn polygon when its point is inside: a building by its point on surface (the
atom's ``xy``), a compound without buildings by its territory cell's point on surface. The drawn line is
never stored: grid outlines are always rebuilt from the units' territory cells, so a drawn or reshaped
edge "snaps" to compound edges, roads and the community boundary, and neighbouring grids stay free of
gaps and overlaps by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from gisgov.errors import InvalidInput

#: how far (metres) a drawn shape may reach beyond the community's bounding box
MARGIN_M = 2_000.0


class EditRefused(InvalidInput):
    """An edit the rules refuse (HTTP 400): a shape that selects nothing, a line that cuts nothing,
    grids that are not neighbours, a grid that is not empty."""

    status_code = 400


def _coords(geom: dict[str, Any]) -> np.ndarray:
    """All positions of a GeoJSON Polygon/LineString as an (n, 2) float array (refused when malformed)."""
    t = geom.get("type")
    c = geom.get("coordinates")
    try:
        if t == "Polygon":
            rings = [np.asarray(r, dtype=float) for r in c]  # type: ignore[union-attr]
            if not rings or any(r.ndim != 2 or r.shape[1] < 2 or len(r) < 4 for r in rings):
                raise ValueError
            return np.concatenate([r[:, :2] for r in rings])
        if t == "LineString":
            line = np.asarray(c, dtype=float)
            if line.ndim != 2 or line.shape[1] < 2 or len(line) < 2:
                raise ValueError
            return line[:, :2]
    except (TypeError, ValueError):
        pass
    raise EditRefused(
        f"图形格式错误：应为 GeoJSON {t or '?'} 坐标 malformed GeoJSON {t or 'geometry'}: a Polygon needs closed rings "
        "of at least 4 [lon, lat] positions, a LineString at least 2 (rule: edit_geometry)"
    )


def vertex_count(geom: dict[str, Any] | None) -> int:
    """Positions in a GeoJSON geometry (0 when absent or malformed), for the request budget."""
    if not geom:
        return 0
    c = geom.get("coordinates")
    n = 0
    stack = [c]
    while stack:
        x = stack.pop()
        if isinstance(x, list | tuple):
            if x and all(isinstance(v, int | float) for v in x):
                n += 1
            else:
                stack.extend(x)
    return n


def edit_geometry(
    geom: dict[str, Any] | None,
    kind: str,
    *,
    to_metric: Callable[[Any], Any],
    bounds_lonlat: tuple[float, float, float, float],
    boundary: BaseGeometry,
) -> BaseGeometry:
    """A drawn GeoJSON geometry (WGS84 lon/lat, CGCS2000 ≈ WGS84) as a metric shapely geometry.

    ``kind`` is ``Polygon`` (draw, reshape, lasso) or ``LineString`` (split). Refused (400, naming the
    rule ``edit_geometry``) when missing, of another type, malformed, self-intersecting, not in lon/lat
    degrees (e.g. metres of a projected CRS), with latitude and longitude swapped, or away from the
    community (``bounds_lonlat`` = its lon/lat bounding box, ``boundary`` = its metric polygon)."""
    if not geom:
        raise EditRefused(f"缺少图形 this edit needs a GeoJSON {kind} in `geometry` (rule: edit_geometry)")
    if geom.get("type") != kind:
        raise EditRefused(
            f"图形类型错误：应为 {kind}，收到 {geom.get('type')!r} this edit needs a GeoJSON {kind}, "
            f"got {geom.get('type')!r} (rule: edit_geometry)"
        )
    xy = _coords(geom)
    if not np.isfinite(xy).all():
        raise EditRefused("坐标不是有限数 coordinates must be finite numbers (rule: edit_geometry)")
    x0, y0, x1, y1 = bounds_lonlat
    pad = 0.05  # degrees (≈ 5 km): "near the community" in lon/lat before the metric check

    def near(px: np.ndarray, py: np.ndarray) -> bool:
        return bool(((px >= x0 - pad) & (px <= x1 + pad) & (py >= y0 - pad) & (py <= y1 + pad)).all())

    if not near(xy[:, 0], xy[:, 1]):
        lon_ok = (xy[:, 0] >= -180) & (xy[:, 0] <= 180)
        lat_ok = (xy[:, 1] >= -90) & (xy[:, 1] <= 90)
        if near(xy[:, 1], xy[:, 0]):
            raise EditRefused(
                "经纬度顺序颠倒：应为 [经度, 纬度] latitude and longitude are swapped: GeoJSON positions are "
                f"[lon, lat], got [{xy[0, 0]:.6f}, {xy[0, 1]:.6f}] (rule: edit_geometry)"
            )
        if not (lon_ok.all() and lat_ok.all()):
            raise EditRefused(
                "坐标须为 WGS84 经纬度（度），不是投影坐标（米） coordinates must be WGS84 longitude/latitude in degrees "
                f"(EPSG:4326, [lon, lat]), got values like [{xy[0, 0]:.6g}, {xy[0, 1]:.6g}]: projected metres? "
                "(rule: edit_geometry)"
            )
        raise EditRefused(
            f"图形不在本社区范围内 the {kind} lies away from the community (lon {x0:.4f}–{x1:.4f}, lat {y0:.4f}–{y1:.4f}); "
            "send WGS84 [lon, lat] positions on the community (rule: edit_geometry)"
        )
    shape = shapely.geometry.shape(geom)
    if kind == "Polygon" and not shape.is_valid:
        raise EditRefused(
            f"多边形无效（自相交）the polygon is not valid ({shapely.is_valid_reason(shape)}): draw it without "
            "crossing edges (rule: edit_geometry)"
        )
    metric: BaseGeometry = to_metric(shape)
    b = boundary.bounds
    box = shapely.box(b[0] - MARGIN_M, b[1] - MARGIN_M, b[2] + MARGIN_M, b[3] + MARGIN_M)
    if not metric.intersects(boundary) or not box.contains(metric):
        raise EditRefused(
            f"图形不在本社区范围内 the {kind} must lie on the community (within {MARGIN_M:g} m of its bounds) "
            "(rule: edit_geometry)"
        )
    return metric


def atoms_inside(xy: np.ndarray, polygon: BaseGeometry) -> np.ndarray:
    """Indices of the points ``xy`` (n, 2) inside ``polygon`` (boundary included)."""
    if len(xy) == 0 or polygon.is_empty:
        return np.zeros(0, dtype=np.int64)
    shapely.prepare(polygon)
    inside = shapely.intersects_xy(polygon, xy[:, 0], xy[:, 1])
    return np.flatnonzero(inside)


def split_sides(outline: BaseGeometry, line: BaseGeometry, xy: np.ndarray) -> list[np.ndarray]:
    """Cut ``outline`` (a grid's polygon) with ``line`` and group the points ``xy`` by the side holding
    them. Returns one index array per side that holds points, largest side (most points) first; parts
    of a multi-part outline the line does not cut join the first side. A point on the line goes to the
    nearest side."""
    from shapely.ops import split

    pieces: list[BaseGeometry] = []
    uncut: list[BaseGeometry] = []
    for part in shapely.get_parts(outline):
        try:
            got = list(shapely.get_parts(split(part, line))) if part.intersects(line) else [part]
        except (shapely.errors.GEOSException, ValueError):
            got = [part]
        got = [p for p in got if p.geom_type == "Polygon" and p.area > 0]
        if len(got) > 1:
            pieces.extend(got)
        else:
            uncut.extend(got)
    if len(pieces) < 2 or len(xy) == 0:
        return []
    arr = np.array(pieces, dtype=object)
    pts = shapely.points(xy)
    dist = np.column_stack([shapely.distance(p, pts) for p in arr])
    side = np.argmin(dist, axis=1)
    groups = [np.flatnonzero(side == k) for k in range(len(arr))]
    if uncut:
        u = shapely.union_all(uncut)
        on_uncut = np.flatnonzero(shapely.distance(u, pts) < dist.min(axis=1))
        groups = [np.setdiff1d(g, on_uncut) for g in groups]
        groups = [g for g in groups if len(g)]
        groups.sort(key=lambda g: -len(g))
        if groups:
            groups[0] = np.union1d(groups[0], on_uncut)
        return groups
    groups = [g for g in groups if len(g)]
    groups.sort(key=lambda g: -len(g))
    return groups


def give_to_neighbours(
    leaving: np.ndarray,
    atom_grid: np.ndarray,
    *,
    indptr: np.ndarray,
    nbr: np.ndarray,
    nbr_edge: np.ndarray,
    length: np.ndarray,
    xy: np.ndarray,
    exclude: int,
) -> np.ndarray:
    """New grids of the atoms ``leaving`` grid ``exclude``: each goes to the grid it shares the longest
    unit-graph border with (a chain of leaving atoms passes the choice along, nearest first), else to the
    grid of the nearest atom in another grid. Never to no grid and never to ``exclude``. Returns one grid
    index per leaving atom; raises :class:`EditRefused` when no other grid holds any atom."""
    out = np.full(len(leaving), -1, dtype=np.int64)
    if len(leaving) == 0:
        return out
    ag = atom_grid.copy()
    ag[leaving] = -2  # pending
    pending = {int(a): k for k, a in enumerate(leaving.tolist())}
    while pending:
        progress: list[tuple[int, int]] = []
        for a in pending:
            score: dict[int, float] = {}
            for o, e in zip(nbr[indptr[a] : indptr[a + 1]], nbr_edge[indptr[a] : indptr[a + 1]], strict=False):
                g = int(ag[o])
                if g >= 0 and g != exclude:
                    score[g] = score.get(g, 0.0) + float(length[e])
            if score:
                progress.append((a, max(sorted(score), key=lambda g: score[g])))
        if not progress:
            break
        for a, g in progress:  # assigned together: a chain moves one ring per round
            ag[a] = g
            out[pending.pop(a)] = g
    if pending:
        others = np.flatnonzero((ag >= 0) & (ag != exclude))
        if len(others) == 0:
            raise EditRefused(
                "没有可接收的相邻网格 no other grid can take the units leaving this grid (rule: edit_neighbour)"
            )
        for a, k in pending.items():
            d = np.hypot(xy[others, 0] - xy[a, 0], xy[others, 1] - xy[a, 1])
            out[k] = ag[others[int(np.argmin(d))]]
    return out


def next_code(community: str, codes: list[str]) -> str:
    """A new grid code: the community code + the next free 3-digit number among ``codes`` (activation
    renumbers the grids west→east, north→south anyway)."""
    used = {int(c[len(community) :]) for c in codes if c.startswith(community) and c[len(community) :].isdigit()}
    n = max(used, default=0) + 1
    if n > 999:
        free = [k for k in range(1, 1000) if k not in used]
        if not free:
            raise EditRefused(f"网格编号已用尽 community {community} has no free grid number (rule: grid_code)")
        n = free[0]
    return f"{community}{n:03d}"
