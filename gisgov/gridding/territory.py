"""Territories: the community divided among its buildings (a tessellation), and the adjacency graph.

Every building (and every compound without buildings) is an *atom* and gets a cell; the cells tile
the available area exactly, so any assignment of atoms to grids gives grid polygons that tile the
community (不重不漏). Compound land goes to the compound's buildings (Voronoi inside the compound);
land outside compounds (roads, open space) goes to the nearest building or compound edge
(属地兜底). All coordinates here are metric (a projected CRS); pure shapely/numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely import STRtree
from shapely.geometry.base import BaseGeometry

from gisgov.gridding.graph import Graph
from gisgov.gridding.rules import GridRules

SAMPLE_SPACING_M = 20.0
GRID = 0.01  # overlay precision (1 cm): snap-rounding keeps every overlay robust
MAX_SAMPLES_PER_RING = 200


@dataclass
class Atoms:
    """Buildings (and empty compounds) of one community, with their territory cells."""

    building_id: np.ndarray  # int64, -1 for an empty compound's atom
    code: np.ndarray  # building code (or compound code for an empty compound)
    compound: np.ndarray  # index into the compound arrays, -1 = loose building
    households: np.ndarray  # int64
    people: np.ndarray  # int64
    groups: np.ndarray  # (n, G) int64 special-group counts
    xy: np.ndarray  # (n, 2) seed point (building position)
    cell: np.ndarray = field(
        default_factory=lambda: np.empty(0, dtype=object)
    )  # shapely geometries (territory), set by tessellate()
    notes: list[str] = field(default_factory=list)
    #: per atom: people = households × household size (no resident records); empty = not known
    people_estimated: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    @property
    def n(self) -> int:
        return len(self.building_id)


@dataclass
class Compounds:
    id: np.ndarray
    code: np.ndarray
    name: np.ndarray
    geom: np.ndarray  # shapely polygons (metric), clipped to the available area, disjoint


def _ring_samples(poly: BaseGeometry, spacing: float) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for part in shapely.get_parts(poly):
        for ring in [part.exterior, *part.interiors]:
            n = int(min(MAX_SAMPLES_PER_RING, max(4, ring.length // spacing)))
            d = np.linspace(0, ring.length, n, endpoint=False)
            out.append(shapely.get_coordinates(shapely.line_interpolate_point(ring, d)))
    return out


def _voronoi_cells(seeds: np.ndarray, clip: BaseGeometry, envelope: BaseGeometry) -> np.ndarray:
    """Voronoi cell of each seed (by input order), intersected with ``clip``. Duplicate seeds: the
    first gets the cell, the others an empty geometry."""
    n = len(seeds)
    out = np.array([shapely.Polygon()] * n, dtype=object)
    if n == 0 or clip.is_empty:
        return out
    rounded = np.round(seeds, 3)
    _, first = np.unique(rounded, axis=0, return_index=True)
    first = np.sort(first)
    if len(first) == 1:
        out[first[0]] = clip
        return out
    vor = shapely.voronoi_polygons(shapely.multipoints(seeds[first]), extend_to=envelope, ordered=True)
    cells = shapely.get_parts(vor)
    if len(cells) != len(first):  # defensive: fall back to point-in-cell matching
        tree = STRtree(cells)
        idx = tree.query(shapely.points(seeds[first]), predicate="intersects")
        cells2 = np.array([shapely.Polygon()] * len(first), dtype=object)
        for a, b in zip(*idx, strict=False):
            if cells2[a].is_empty:
                cells2[a] = cells[b]
        cells = cells2
    snapped = _snap(cells)
    # snap-rounding can leave a cell as a polygon plus a collapsed sliver line: keep the polygon
    mixed = shapely.get_type_id(snapped) == 7
    if mixed.any():
        snapped[mixed] = [_polygonal(g) for g in snapped[mixed]]
    out[first] = shapely.intersection(snapped, clip, grid_size=GRID)
    return out


def _snap(geoms: np.ndarray) -> np.ndarray:
    """Geometries snapped to the overlay grid; a cell GEOS cannot snap as a whole (a sliver that
    collapses into a hole without a shell) is snapped vertex by vertex and made valid."""
    try:
        return shapely.set_precision(geoms, GRID)
    except shapely.errors.GEOSException:
        out = np.empty(len(geoms), dtype=object)
        for i, g in enumerate(geoms):
            try:
                out[i] = shapely.set_precision(g, GRID)
            except shapely.errors.GEOSException:
                out[i] = _polygonal(shapely.make_valid(shapely.set_precision(g, GRID, mode="pointwise")))
        return out


def _polygonal(g: BaseGeometry | None) -> BaseGeometry:
    """Only the polygonal part of a geometry (intersections may leave lines/points)."""
    if g is None or g.is_empty:
        return shapely.Polygon()
    if g.geom_type in ("Polygon", "MultiPolygon"):
        return g
    parts = [p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def tessellate(atoms: Atoms, compounds: Compounds, area: BaseGeometry) -> Atoms:
    """Fill ``atoms.cell`` so that the cells tile ``area`` (metric polygon). Compounds' polygons must
    already be clipped to ``area`` and disjoint."""
    n = atoms.n
    env = shapely.box(*shapely.buffer(area, 50).bounds)
    comp_union = shapely.union_all(compounds.geom, grid_size=GRID) if len(compounds.geom) else shapely.Polygon()
    rest = _polygonal(shapely.difference(area, comp_union, grid_size=GRID))
    parts_of: list[list[Any]] = [[] for _ in range(n)]

    # 1. inside each compound: Voronoi of its buildings
    by_comp: dict[int, list[int]] = {}
    for a in range(n):
        if atoms.compound[a] >= 0:
            by_comp.setdefault(int(atoms.compound[a]), []).append(a)
    for c, members in by_comp.items():
        cg = compounds.geom[c]
        if cg.is_empty:
            continue
        if len(members) == 1:
            parts_of[members[0]].append(cg)
            continue
        cells = _voronoi_cells(atoms.xy[members], cg, shapely.box(*shapely.buffer(cg, 50).bounds))
        for a, cell in zip(members, cells, strict=False):
            parts_of[a].append(cell)

    # 2. outside compounds: Voronoi of loose buildings + compound edge samples
    seeds, owner = [], []
    loose = np.flatnonzero(atoms.compound < 0)
    if len(loose):
        seeds.append(atoms.xy[loose])
        owner.append(loose)
    for c, members in by_comp.items():
        cg = compounds.geom[c]
        if cg.is_empty:
            continue
        mxy = atoms.xy[members]
        for pts in _ring_samples(cg, SAMPLE_SPACING_M):
            d = ((pts[:, None, :] - mxy[None, :, :]) ** 2).sum(-1)
            seeds.append(pts)
            owner.append(np.asarray(members)[d.argmin(1)])
    if seeds and not rest.is_empty:
        s = np.concatenate(seeds)
        o = np.concatenate(owner)
        cells = _voronoi_cells(s, rest, env)
        # a clipped cell may fall apart (the clip is concave): keep the piece at its seed, give the
        # others to the neighbour sharing most boundary with them
        main: list[tuple[int, BaseGeometry]] = []
        orphans: list[BaseGeometry] = []
        for k, cell in enumerate(cells):
            cell = _polygonal(cell)
            if cell.is_empty:
                continue
            ps = shapely.get_parts(cell)
            if len(ps) == 1:
                main.append((int(o[k]), ps[0]))
                continue
            pt = shapely.Point(s[k])
            dist = shapely.distance(ps, pt)
            j = int(np.argmin(dist))
            main.append((int(o[k]), ps[j]))
            orphans.extend(p for i, p in enumerate(ps) if i != j)
        for a, p in main:
            parts_of[a].append(p)
        _adopt_orphans(orphans, parts_of)

    cells = np.empty(n, dtype=object)
    for a in range(n):
        kept = [p for p in parts_of[a] if not p.is_empty]
        cells[a] = _polygonal(shapely.union_all(kept, grid_size=GRID)) if kept else shapely.Polygon()
    atoms.cell = one_piece(exact_cover(cells, area), atoms.xy, atoms.compound)
    return atoms


def exact_cover(cells: np.ndarray, area: BaseGeometry) -> np.ndarray:
    """Cells that tile ``area`` exactly: overlaps removed (the later cell gives way) and the slivers
    no cell covers given to the cell sharing the longest border with them.

    Both come from rounding to the 1 cm overlay grid: the compounds' Voronoi cells and the land
    outside compounds meet along the compound outline, each side rounding its own vertices, so a
    slanting outline leaves centimetre-wide slivers (about 3 m² in a community of 0.3 km²)."""
    out = np.array([_polygonal(g) if g is not None else shapely.Polygon() for g in cells], dtype=object)
    idx = np.flatnonzero([not g.is_empty for g in out])
    if len(idx) == 0:
        return out
    tree = STRtree(out[idx])
    a, b = tree.query(out[idx], predicate="intersects")
    keep = a < b
    a, b = idx[a[keep]], idx[b[keep]]
    if len(a):
        inner = shapely.relate_pattern(out[a], out[b], "2********")
        for i, j in zip(a[inner].tolist(), b[inner].tolist(), strict=True):
            out[j] = _polygonal(shapely.difference(out[j], out[i], grid_size=GRID))
    gaps = _polygonal(shapely.difference(area, shapely.union_all(out[idx], grid_size=GRID), grid_size=GRID))
    if gaps.is_empty:
        return out
    tree = STRtree(out[idx])
    for piece in shapely.get_parts(gaps):
        cand = idx[tree.query(piece, predicate="intersects")]
        if len(cand):
            border = shapely.length(shapely.intersection(shapely.boundary(out[cand]), piece.boundary))
            owner = int(cand[int(np.argmax(border))])
        else:
            owner = int(idx[int(np.argmin(shapely.distance(out[idx], piece)))])
        out[owner] = _polygonal(shapely.union(out[owner], piece, grid_size=GRID))
    return out


def one_piece(cells: np.ndarray, xy: np.ndarray, compound: np.ndarray) -> np.ndarray:
    """Cells made single polygons without changing their union (the tessellation stays exact).

    A Voronoi cell clipped to a concave compound (L-shaped, notched) can fall apart, and so can the
    land outside a compound that its edge hands to the nearest building. Each cell keeps the piece
    holding its building (the nearest piece when none holds it); every other piece goes to the cell
    it shares the longest border with, preferring cells of the same compound (compound land stays
    with the compound's buildings). Pieces touching only other stray pieces wait until those are
    placed; a piece touching no cell along a border (an island of a multipart community) goes to
    the nearest cell."""
    n = len(cells)
    out = np.array([shapely.Polygon()] * n, dtype=object)
    strays: list[tuple[BaseGeometry, int]] = []  # (piece, compound of the cell it came from)
    for a in range(n):
        g = cells[a]
        if g is None or g.is_empty:
            continue
        ps = [p for p in shapely.get_parts(g) if not p.is_empty and p.area > 0]
        if len(ps) <= 1:
            out[a] = ps[0] if ps else shapely.Polygon()
            continue
        keep = int(np.argmin(shapely.distance(ps, shapely.Point(xy[a]))))
        out[a] = ps[keep]
        strays.extend((p, int(compound[a])) for i, p in enumerate(ps) if i != keep)
    if not strays:
        return out
    owned: list[list[BaseGeometry]] = [[g] if not g.is_empty else [] for g in out]
    pending = strays
    while pending:
        owners = [a for a in range(n) for _ in owned[a]]
        polys = [p for a in range(n) for p in owned[a]]
        tree = STRtree(polys)
        left: list[tuple[BaseGeometry, int]] = []
        for piece, comp in pending:
            best: tuple[bool, float] | None = None
            best_owner = -1
            for c in tree.query(piece, predicate="intersects").tolist():
                border = float(shapely.length(shapely.intersection(piece.boundary, polys[c].boundary)))
                if border <= 0:
                    continue
                score = (comp >= 0 and int(compound[owners[c]]) == comp, border)
                if best is None or score > best:
                    best, best_owner = score, owners[c]
            if best_owner < 0:
                left.append((piece, comp))
            else:
                owned[best_owner].append(piece)
        if len(left) == len(pending):  # islands: the nearest cell
            for piece, _comp in left:
                d = shapely.distance(np.asarray(polys, dtype=object), piece)
                owned[owners[int(np.argmin(d))]].append(piece)
            break
        pending = left
    for a in range(n):
        if len(owned[a]) > 1:
            out[a] = _polygonal(shapely.union_all(owned[a], grid_size=GRID))
    return out


def _adopt_orphans(orphans: list[Any], parts_of: list[list[Any]]) -> None:
    pending = list(orphans)
    for _ in range(5):
        if not pending:
            return
        owners = [a for a, ps in enumerate(parts_of) for _ in ps]
        polys = [p for ps in parts_of for p in ps]
        if not polys:
            return
        tree = STRtree(polys)
        left = []
        for orphan in pending:
            cand = tree.query(orphan, predicate="intersects")
            best, best_len = None, 0.0
            for c in cand:
                L = shapely.length(shapely.intersection(orphan.boundary, polys[c].boundary))
                if best_len < L:
                    best, best_len = owners[c], L
            if best is None:
                left.append(orphan)
            else:
                parts_of[best].append(orphan)
        pending = left
    for orphan in pending:  # isolated scraps: nearest owner
        polys = [(a, p) for a, ps in enumerate(parts_of) for p in ps]
        d = [shapely.distance(orphan, p) for _, p in polys]
        parts_of[polys[int(np.argmin(d))][0]].append(orphan)


def adjacency(cells: np.ndarray, xy: np.ndarray, barriers: np.ndarray, rules: GridRules) -> Graph:
    """Rook adjacency of territory cells (shared boundary longer than the tolerance), with the edges
    whose seed-to-seed segment crosses a barrier (arterial road, river) flagged and discounted."""
    n = len(cells)
    valid = np.array([c is not None and not c.is_empty for c in cells])
    idx = np.flatnonzero(valid)
    if len(idx) < 2:
        return Graph.empty(n)
    tree = STRtree(cells[idx])
    a, b = tree.query(cells[idx], predicate="intersects")
    keep = a < b
    a, b = idx[a[keep]], idx[b[keep]]
    shared = shapely.length(shapely.intersection(shapely.boundary(cells[a]), shapely.boundary(cells[b])))
    ok = shared > max(rules.tolerance_m, 1e-6)
    a, b, shared = a[ok], b[ok], shared[ok]
    crossing = crossing_flags(xy[a], xy[b], barriers)
    weight = np.where(crossing, shared * rules.barrier_weight, shared)
    return Graph(n, a, b, shared, crossing, weight)


def crossing_flags(p: np.ndarray, q: np.ndarray, barriers: np.ndarray) -> np.ndarray:
    """Whether each segment p→q crosses any barrier geometry."""
    out = np.zeros(len(p), dtype=bool)
    if len(p) == 0 or barriers is None or len(barriers) == 0:
        return out
    segs = shapely.linestrings(np.stack([p, q], axis=1))
    tree = STRtree(np.asarray(barriers, dtype=object))
    si, _ = tree.query(segs, predicate="intersects")
    out[np.unique(si)] = True
    return out
