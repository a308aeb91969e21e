"""Issue 11, item 16: every territory cell is one piece.

A real community's compounds (from residential land use) have irregular outlines: L-shaped,
notched, concave. The Voronoi cell of a building clipped to such a compound can fall apart, and so
can the land outside compounds that a compound's edge hands to its nearest building; a plan built
from such cells then holds islands and donuts. Here a community is built like one cut from a real
city: blocks separated by roads, an irregular compound per block, buildings scattered inside (some
a metre or two from the compound edge), loose buildings on the open land between compounds. Every
cell must be a single polygon, the cells must tile the community exactly, and each cell must still
hold its building.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely

from gisgov.gridding.context import build_context
from gisgov.gridding.rules import GridRules
from gisgov.gridding.territory import Atoms, Compounds, tessellate
from tests.grid_city import lonlat

CODE = "340104001001"


def _irregular_compound(rng: np.random.Generator, x0: float, y0: float, w: float, h: float) -> shapely.Polygon:
    """An L-shaped, U-shaped (notched) or comb-like compound inside the block (x0, y0, w, h)."""
    kind = rng.integers(0, 3)
    box = shapely.box(x0, y0, x0 + w, y0 + h)
    if kind == 0:  # L: one corner cut away
        cx, cy = rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.65) * h
        cut = shapely.box(x0 + cx, y0 + cy, x0 + w + 1, y0 + h + 1)
    elif kind == 1:  # U: a deep notch from the top
        a, b = sorted(rng.uniform(0.25, 0.75, size=2) * w)
        b = max(b, a + 0.15 * w)
        cut = shapely.box(x0 + a, y0 + rng.uniform(0.2, 0.45) * h, x0 + b, y0 + h + 1)
    else:  # comb: two narrow notches from the right (very concave)
        cut = shapely.union(
            shapely.box(x0 + 0.3 * w, y0 + 0.25 * h, x0 + w + 1, y0 + 0.4 * h),
            shapely.box(x0 + 0.3 * w, y0 + 0.6 * h, x0 + w + 1, y0 + 0.75 * h),
        )
    poly = shapely.difference(box, cut)
    # a slightly irregular outline: jitter the vertices by up to a metre
    coords = np.asarray(poly.exterior.coords)[:-1]
    coords = coords + rng.uniform(-1.0, 1.0, size=coords.shape)
    out = shapely.make_valid(shapely.Polygon(coords))
    return max(shapely.get_parts(out), key=lambda g: g.area)


def _points_inside(rng: np.random.Generator, poly, n: int, near_edge: int) -> list[tuple[float, float]]:
    """``n`` building positions inside ``poly``; ``near_edge`` of them 1–2.5 m inside its outline."""
    pts: list[tuple[float, float]] = []
    inner = shapely.buffer(poly, -3.0)
    x0, y0, x1, y1 = poly.bounds
    while len(pts) < n - near_edge:
        p = shapely.Point(rng.uniform(x0, x1), rng.uniform(y0, y1))
        if inner.contains(p):
            pts.append((p.x, p.y))
    ring = shapely.buffer(poly, -rng.uniform(1.0, 2.5)).exterior
    for d in rng.uniform(0, ring.length, size=near_edge):
        p = ring.interpolate(d)
        pts.append((p.x, p.y))
    return pts


def realistic_community(seed: int, nx: int = 4, ny: int = 3):
    """Blocks of 160×130 m between 18 m roads, an irregular compound in each, 6–14 buildings per
    compound, loose buildings along the roads. Returns metric boundary, compounds and buildings."""
    rng = np.random.default_rng(seed)
    road, bw, bh = 18.0, 160.0, 130.0
    width, height = road + nx * (bw + road), road + ny * (bh + road)
    boundary = shapely.box(0, 0, width, height)
    compounds, buildings = [], []
    for j in range(ny):
        for i in range(nx):
            x0, y0 = road + i * (bw + road) + rng.uniform(0, 8), road + j * (bh + road) + rng.uniform(0, 8)
            poly = _irregular_compound(rng, x0, y0, bw - 12, bh - 12)
            compounds.append(poly)
            n = int(rng.integers(6, 15))
            for x, y in _points_inside(rng, poly, n, near_edge=max(2, n // 3)):
                hh = int(rng.integers(10, 90))
                buildings.append((x, y, hh, len(compounds)))
    taken = shapely.union_all(compounds)
    open_land = shapely.difference(boundary, shapely.buffer(taken, 4.0))
    for x, y in _points_inside(rng, open_land, 10, near_edge=0):
        buildings.append((x, y, int(rng.integers(0, 30)), None))
    return boundary, compounds, buildings


def _context(seed: int):
    boundary, compounds, buildings = realistic_community(seed)
    comp = pd.DataFrame(
        [
            {"id": c, "code": f"{CODE}{c:04d}", "name": f"小区{c}", "geometry": lonlat(g)}
            for c, g in enumerate(compounds, 1)
        ]
    )
    rows = []
    pts = lonlat(shapely.points([(x, y) for x, y, _, _ in buildings]))
    for k, ((_x, _y, hh, c), p) in enumerate(zip(buildings, pts, strict=True), 1):
        rows.append(
            {
                "id": k,
                "code": f"{CODE}{k:05d}",
                "compound_id": c,
                "households": hh,
                "people": int(round(hh * 2.6)),
                "lon": p.x,
                "lat": p.y,
            }
        )
    b = pd.DataFrame(rows)
    b["compound_id"] = b["compound_id"].astype("Int64")
    return build_context(
        code=CODE, name="测试社区", boundary_lonlat=lonlat(boundary), buildings=b, compounds=comp, rules=GridRules()
    )


def _assert_exact_single_cells(cells, xy, area) -> None:
    kinds = {g.geom_type for g in cells if not g.is_empty}
    broken = [i for i, g in enumerate(cells) if g.geom_type != "Polygon" or g.is_empty]
    assert not broken, f"{len(broken)} cell(s) not a single polygon: {broken[:10]} ({kinds})"
    union = shapely.union_all(cells, grid_size=0.01)
    assert shapely.symmetric_difference(union, area).area < 1.0
    assert sum(g.area for g in cells) == pytest.approx(area.area, abs=1.0)  # no overlap
    inside = shapely.covers(shapely.buffer(cells, 0.02), shapely.points(xy))
    assert inside.all(), f"cells lost their building: {np.flatnonzero(~inside)[:10]}"


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_every_cell_is_one_piece_in_a_real_looking_community(seed):
    ctx = _context(seed)
    assert len(ctx.compounds.geom) == 12 and (ctx.atoms.compound >= 0).sum() >= 72
    _assert_exact_single_cells(ctx.atoms.cell, ctx.atoms.xy, ctx.boundary)


def test_voronoi_cell_clipped_by_a_notched_compound_is_merged():
    """The smallest case: a U-shaped compound (notch 40 m wide, 80 m deep), A low in the right arm,
    B and C in the left arm; B's Voronoi cell reaches across the notch into the right arm, so
    clipped to the compound it falls in two pieces."""
    area = shapely.box(0, 0, 120, 120)
    u = shapely.difference(shapely.box(10, 10, 110, 110), shapely.box(40, 30, 80, 111))
    xy = np.array([[103.0, 46.0], [33.0, 72.0], [18.0, 93.0], [60.0, 115.0]])
    comp = np.array([0, 0, 0, -1])
    atoms = Atoms(
        np.arange(4),
        np.array(["A", "B", "C", "L"], dtype=object),
        comp,
        np.array([50, 50, 50, 5]),
        np.array([130, 130, 130, 13]),
        np.zeros((4, 0), np.int64),
        xy,
    )
    compounds = Compounds(np.array([1]), np.array(["K"], dtype=object), np.array(["小区"], dtype=object), np.array([u]))
    tessellate(atoms, compounds, area)
    _assert_exact_single_cells(atoms.cell, xy, area)
