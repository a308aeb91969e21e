"""Validator (网格规则校验): every rule break of a plan, located.

A plan is grid polygons, building→grid assignments, or both. Missing polygons are derived from the
assignment (union of the buildings' territories, so they tile the community); missing assignments
are derived from the polygons (point in polygon). Checks: households/people bounds; overlap, gap
and land outside the community beyond the tolerance width; islands (multi-part grids) unless the
grid is marked as an exception; donuts (a grid in another grid's hole); split compounds; buildings in
no grid; buildings whose point lies in another grid than the one they are assigned to. Per grid:
households, people, special groups, buildings, compactness (Polsby–Popper, Reock), barrier crossings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely import STRtree
from shapely.geometry.base import BaseGeometry

from gisgov.gridding.context import CommunityContext
from gisgov.gridding.metrics import polsby_popper, reock
from gisgov.gridding.rules import GridRules
from gisgov.gridding.territory import GRID

HARD_RULES = (
    "households_under",
    "households_over",
    "people_over",
    "overlap",
    "gap",
    "outside",
    "island",
    "donut",
    "split_compound",
    "building_no_grid",
    "assignment_mismatch",
    "empty_grid",
)


@dataclass
class PlanInput:
    codes: list[str]
    atom_grid: np.ndarray | None = None  # label per atom (index into codes), -1 = none
    polygons: list[Any] | None = None  # metric polygon per grid; None = derive from atom_grid
    exceptions: list[str | None] | None = None
    names: list[str | None] | None = None


#: default tolerance (m) of the grid outlines' coverage simplification (rules may set ``outline_simplify_m``).
#: The saw-teeth are the Voronoi edges of compound-edge samples along the streets: ≈ 4 m deep every ≈ 15 m
#: on the sample city. Visvalingam–Whyatt with 8 m (triangles under 64 m²) removes them and keeps the
#: steps of real compound edges (10 m and more); 5 m left most teeth, 12 m cut compound corners.
OUTLINE_SIMPLIFY_M: float = GridRules.outline_simplify_m


def outline_tolerance(ctx: CommunityContext) -> float:
    """The outline simplification tolerance (m) of ``ctx``'s rules (0 = none)."""
    return float(ctx.rules.outline_simplify_m)


def simplify_outlines(polys: list[Any], tol: float, xy: np.ndarray, atom_grid: np.ndarray) -> list[Any]:
    """Grid outlines without saw-teeth: the raw outlines (unions of territory cells) simplified as one
    coverage, so an edge two grids share is simplified once and identically on both sides (no gap, no
    overlap) and the community boundary is kept as it is.

    Guarantee kept: every unit's point (``xy``, grid ``atom_grid``) stays inside its grid's outline. When
    a point would fall outside, the whole coverage is simplified again with half the tolerance, down to
    the raw outlines (never a grid simplified on its own: that would open gaps along its edges)."""
    if tol <= 0 or not polys or not hasattr(shapely, "coverage_simplify"):
        return list(polys)
    arr = np.array([p if p is not None else shapely.Polygon() for p in polys], dtype=object)
    live = np.flatnonzero(~shapely.is_empty(arr))
    if len(live) == 0:
        return list(polys)
    sel = atom_grid >= 0
    pts_g, px, py = atom_grid[sel], xy[sel, 0], xy[sel, 1]
    t = tol
    while t >= 0.25:
        try:
            simple = shapely.coverage_simplify(arr[live], t, simplify_boundary=False)
        except shapely.errors.GEOSException:  # not a valid coverage: keep the raw outlines
            return list(polys)
        out = arr.copy()
        out[live] = simple
        ok = np.ones(len(pts_g), dtype=bool)
        for g in np.unique(pts_g).tolist():
            m = pts_g == g
            ok[m] = shapely.intersects_xy(out[g], px[m], py[m])
        if ok.all() and all(o.is_valid and not o.is_empty for o in out[live]):
            return [_polygonal(o) for o in out.tolist()]
        t /= 2
    return list(polys)


def grid_polygons(ctx: CommunityContext, atom_grid: np.ndarray, k: int, *, simplify: bool = False) -> list[Any]:
    """Union of the atoms' territories per grid (coverage union: they share edges exactly); with
    ``simplify`` simplified along shared edges by :func:`simplify_outlines` (what is shown and saved;
    checks, proposals and their numbering use the raw unions)."""
    raw = raw_grid_polygons(ctx, atom_grid, k)
    return simplify_outlines(raw, outline_tolerance(ctx), ctx.atoms.xy, atom_grid) if simplify else raw


def raw_grid_polygons(ctx: CommunityContext, atom_grid: np.ndarray, k: int) -> list[Any]:
    """Union of the atoms' territories per grid, unsimplified."""
    out: list[BaseGeometry] = []
    cells = ctx.atoms.cell
    for g in range(k):
        idx = np.flatnonzero(atom_grid == g)
        parts = [c for c in cells[idx] if c is not None and not c.is_empty]
        if not parts:
            out.append(shapely.Polygon())
            continue
        u = shapely.union_all(parts, grid_size=GRID)
        if not u.is_valid:
            u = shapely.make_valid(u)
        out.append(_polygonal(u))
    return out


def _polygonal(g: BaseGeometry) -> BaseGeometry:
    if g.is_empty or g.geom_type in ("Polygon", "MultiPolygon"):
        return g
    parts = [p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def _wide(geom: BaseGeometry, tol: float) -> BaseGeometry:
    """Parts of ``geom`` wider than ``tol`` (thin slivers are digitising noise)."""
    geom = _polygonal(geom)
    if geom.is_empty:
        return geom
    parts = shapely.get_parts(geom)
    keep = (
        [p for p in parts if not shapely.buffer(p, -tol / 2).is_empty] if tol > 0 else [p for p in parts if p.area > 0]
    )
    return shapely.union_all(keep) if keep else shapely.Polygon()


def assign_by_polygons(ctx: CommunityContext, polys: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Grid of each atom by its point (first grid when in several) and the count of grids holding it."""
    pts = shapely.points(ctx.atoms.xy)
    out = np.full(ctx.atoms.n, -1, dtype=np.int64)
    hits = np.zeros(ctx.atoms.n, dtype=np.int64)
    valid = [i for i, p in enumerate(polys) if p is not None and not p.is_empty]
    if not valid:
        return out, hits
    tree = STRtree([polys[i] for i in valid])
    a, g = tree.query(pts, predicate="intersects")
    order = np.lexsort((g, a))
    for ai, gi in zip(a[order], g[order], strict=False):
        if out[ai] < 0:
            out[ai] = valid[gi]
        hits[ai] += 1
    return out, hits


def validate(ctx: CommunityContext, plan: PlanInput) -> dict[str, Any]:
    """Full report: per-grid statistics and every rule break (geometry in lon/lat GeoJSON)."""
    r = ctx.rules
    tol = r.tolerance_m
    k = len(plan.codes)
    exc = plan.exceptions or [None] * k
    breaks: list[dict[str, Any]] = []
    derived = plan.polygons is None
    if derived:
        ag = np.asarray(plan.atom_grid, dtype=np.int64)
        polys = grid_polygons(ctx, ag, k)
    else:
        polys = [_polygonal(shapely.make_valid(p)) if p is not None else shapely.Polygon() for p in plan.polygons or []]
        by_poly, _hits = assign_by_polygons(ctx, polys)
        if plan.atom_grid is None:
            ag = by_poly
        else:
            ag = np.asarray(plan.atom_grid, dtype=np.int64)
            for a in np.flatnonzero((ag >= 0) & (by_poly >= 0) & (ag != by_poly)):
                # the point may sit on a shared edge: accept within the tolerance
                if shapely.distance(polys[ag[a]], shapely.Point(ctx.atoms.xy[a])) <= tol:
                    continue
                breaks.append(
                    _brk(
                        ctx,
                        "assignment_mismatch",
                        plan.codes[ag[a]],
                        f"楼栋 building {ctx.atoms.code[a]} is assigned to grid {plan.codes[ag[a]]} but stands "
                        f"in grid {plan.codes[by_poly[a]]}",
                        shapely.Point(ctx.atoms.xy[a]),
                        building=str(ctx.atoms.code[a]),
                    )
                )
    atoms = ctx.atoms
    # per-grid statistics
    H = np.bincount(ag[ag >= 0], weights=atoms.households[ag >= 0], minlength=k).astype(np.int64)
    P = np.bincount(ag[ag >= 0], weights=atoms.people[ag >= 0], minlength=k).astype(np.int64)
    nb = np.bincount(ag[(ag >= 0) & (atoms.building_id >= 0)], minlength=k)
    G = np.zeros((k, len(ctx.group_codes)), dtype=np.int64)
    for j in range(len(ctx.group_codes)):
        G[:, j] = np.bincount(ag[ag >= 0], weights=atoms.groups[ag >= 0, j], minlength=k)
    parr = np.array(polys, dtype=object)
    pp = polsby_popper(parr) if k else np.zeros(0)
    rk = reock(parr) if k else np.zeros(0)
    # barrier crossings inside a grid: adjacent atoms of one grid on both sides of a barrier
    g_ = ctx.graph
    same = (ag[g_.ei] == ag[g_.ej]) & (ag[g_.ei] >= 0) & g_.crossing
    crossings = np.bincount(ag[g_.ei[same]], minlength=k) if k else np.zeros(0, int)

    for g in range(k):
        code = plan.codes[g]
        if polys[g].is_empty and H[g] == 0:
            breaks.append(_brk(ctx, "empty_grid", code, f"网格 grid {code} is empty (no land, no buildings)", None))
            continue
        if H[g] < r.min_households:
            breaks.append(
                _brk(
                    ctx,
                    "households_under",
                    code,
                    f"grid {code} has {H[g]} households, below the minimum "
                    f"{r.min_households} (rule: {r.name} {r.min_households}-{r.max_households} 户)",
                    polys[g],
                    households=int(H[g]),
                )
            )
        if H[g] > r.max_households:
            breaks.append(
                _brk(
                    ctx,
                    "households_over",
                    code,
                    f"grid {code} has {H[g]} households, above the maximum "
                    f"{r.max_households} (rule: {r.name} {r.min_households}-{r.max_households} 户)",
                    polys[g],
                    households=int(H[g]),
                )
            )
        if P[g] > r.max_people:
            breaks.append(
                _brk(
                    ctx,
                    "people_over",
                    code,
                    f"grid {code} has {P[g]} people, above the maximum "
                    f"{r.max_people} (rule: {r.name} ≤{r.max_people} 人)",
                    polys[g],
                    people=int(P[g]),
                )
            )
        parts = [p for p in shapely.get_parts(polys[g]) if not _wide(p, tol).is_empty] if not polys[g].is_empty else []
        if len(parts) > 1 and exc[g] != "multipart":
            parts.sort(key=lambda p: -p.area)
            breaks.append(
                _brk(
                    ctx,
                    "island",
                    code,
                    f"grid {code} is in {len(parts)} separate pieces (飞地); the smaller "
                    f"ones are shown (mark the grid as a 'multipart' exception if intended)",
                    shapely.union_all(parts[1:]),
                    pieces=len(parts),
                )
            )
    # donuts: a grid inside another grid's hole
    for g in range(k):
        for part in shapely.get_parts(polys[g]) if not polys[g].is_empty else []:
            for ring in part.interiors:
                hole = shapely.Polygon(ring)
                inside = [
                    plan.codes[o]
                    for o in range(k)
                    if o != g
                    and not polys[o].is_empty
                    and not _wide(shapely.intersection(polys[o], hole), tol).is_empty
                ]
                if inside:
                    breaks.append(
                        _brk(
                            ctx,
                            "donut",
                            plan.codes[g],
                            f"grid {plan.codes[g]} surrounds grid(s) {', '.join(inside)} (环形网格 donut)",
                            hole,
                            enclosed=inside,
                        )
                    )
    # overlaps
    valid = [i for i in range(k) if not polys[i].is_empty]
    if len(valid) > 1:
        tree = STRtree([polys[i] for i in valid])
        a, b = tree.query([polys[i] for i in valid], predicate="intersects")
        for i, j in zip(a, b, strict=False):
            if i >= j:
                continue
            gi, gj = valid[i], valid[j]
            ov = _wide(shapely.intersection(polys[gi], polys[gj]), tol)
            if not ov.is_empty:
                breaks.append(
                    _brk(
                        ctx,
                        "overlap",
                        plan.codes[gi],
                        f"grids {plan.codes[gi]} and {plan.codes[gj]} overlap by {ov.area:.1f} m² (重叠)",
                        ov,
                        other=plan.codes[gj],
                        area_m2=round(ov.area, 2),
                    )
                )
    union = shapely.union_all([polys[i] for i in valid]) if valid else shapely.Polygon()
    gap = _wide(shapely.difference(ctx.boundary, union), tol)
    for part in shapely.get_parts(gap) if not gap.is_empty else []:
        breaks.append(
            _brk(
                ctx,
                "gap",
                None,
                f"{part.area:.1f} m² of the community belongs to no grid (遗漏 gap)",
                part,
                area_m2=round(part.area, 2),
            )
        )
    outside = _wide(shapely.difference(union, ctx.boundary), tol)
    for part in shapely.get_parts(outside) if not outside.is_empty else []:
        owner = [plan.codes[i] for i in valid if polys[i].intersects(part)]
        breaks.append(
            _brk(
                ctx,
                "outside",
                owner[0] if owner else None,
                f"{part.area:.1f} m² of grid {', '.join(owner)} lies outside community {ctx.code} (越界)",
                part,
                area_m2=round(part.area, 2),
            )
        )
    # compounds split across grids (allowed only when the compound alone exceeds a maximum)
    for c in range(len(ctx.compounds.code)):
        members = ctx.atoms_of_compound(c)
        gs = sorted({int(x) for x in ag[members] if x >= 0})
        if len(gs) <= 1:
            continue
        hc, pc = int(atoms.households[members].sum()), int(atoms.people[members].sum())
        if hc > r.max_households or pc > r.max_people:
            continue
        breaks.append(
            _brk(
                ctx,
                "split_compound",
                plan.codes[gs[0]],
                f"小区 compound {ctx.compounds.code[c]} {ctx.compounds.name[c]} ({hc} households) is split "
                f"across grids {', '.join(plan.codes[x] for x in gs)}; keep it whole (it fits in one grid)",
                ctx.compounds.geom[c],
                compound=str(ctx.compounds.code[c]),
                grids=[plan.codes[x] for x in gs],
            )
        )
    for a in np.flatnonzero((ag < 0) & (atoms.building_id >= 0)):
        breaks.append(
            _brk(
                ctx,
                "building_no_grid",
                None,
                f"楼栋 building {atoms.code[a]} ({atoms.households[a]} households) is in no grid",
                shapely.Point(atoms.xy[a]),
                building=str(atoms.code[a]),
            )
        )

    grids = []
    for g in range(k):
        grids.append(
            {
                "code": plan.codes[g],
                "name": (plan.names or [None] * k)[g],
                "households": int(H[g]),
                "people": int(P[g]),
                "buildings": int(nb[g]),
                "groups": {c: int(G[g, j]) for j, c in enumerate(ctx.group_codes) if G[g, j]},
                "area_m2": round(float(polys[g].area), 1),
                "polsby_popper": round(float(pp[g]), 4),
                "reock": round(float(rk[g]), 4),
                "barrier_crossings": int(crossings[g]) if k else 0,
                "exception": exc[g],
                "status": _status(int(H[g]), int(P[g]), r),
            }
        )
    n_break = sum(1 for b in breaks if b["rule"] in HARD_RULES)
    return {
        "community": ctx.code,
        "rules": r.to_dict(),
        "ok": n_break == 0,
        "breaks_count": n_break,
        "grids": grids,
        "breaks": breaks,
        "summary": {
            "grids": k,
            "within_bounds": int(sum(1 for x in grids if x["status"] == "ok")),
            "households": int(atoms.households.sum()),
            "people": int(atoms.people.sum()),
            "mean_polsby_popper": round(float(np.mean(pp)), 4) if k else None,
            "mean_reock": round(float(np.mean(rk)), 4) if k else None,
        },
        "_polygons": polys,
        "_atom_grid": ag,
    }


def _status(h: int, p: int, r: GridRules) -> str:
    if h > r.max_households or p > r.max_people:
        return "over"
    if h < r.min_households:
        return "under"
    return "ok"


def _brk(
    ctx: CommunityContext, rule: str, grid: str | None, message: str, geom: BaseGeometry | None, **data: Any
) -> dict[str, Any]:
    return {
        "rule": rule,
        "grid": grid,
        "message": message,
        "geometry": shapely.geometry.mapping(ctx.to_lonlat(geom)) if geom is not None and not geom.is_empty else None,
        "data": data,
    }


def public(report: dict[str, Any]) -> dict[str, Any]:
    """The report without its internal (non-JSON) members."""
    return {k: v for k, v in report.items() if not k.startswith("_")}
