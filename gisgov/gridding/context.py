"""One community ready for gridding: boundary, atoms (buildings) with territories, compounds,
barriers and the atom adjacency graph, all in a metric CRS. Built from plain frames (pure); the
PostGIS loading lives in :mod:`gisgov.gridding.io`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from gisgov.crs import CGCS2000, metric_epsg_for_bounds, transformer
from gisgov.errors import InvalidInput
from gisgov.gridding.graph import Graph
from gisgov.gridding.rules import GridRules
from gisgov.gridding.territory import GRID, Atoms, Compounds, adjacency, tessellate
from gisgov.gridding.units import Units, build_units


@dataclass
class CommunityContext:
    code: str
    name: str
    rules: GridRules
    epsg: int
    boundary: BaseGeometry  # metric polygon
    atoms: Atoms
    compounds: Compounds
    graph: Graph  # atom adjacency
    barriers: np.ndarray  # metric geometries
    group_codes: list[str]
    building_index: dict[int, int] = field(default_factory=dict)  # building id -> atom
    code_index: dict[str, int] = field(default_factory=dict)  # building/compound code -> atom (first)
    compound_index: dict[str, int] = field(default_factory=dict)  # compound code -> compound idx
    signature: tuple[Any, ...] = ()
    _units: Units | None = None

    def units(self) -> Units:
        if self._units is None:
            self._units = build_units(self.atoms, self.compounds, self.graph, self.rules)
        return self._units

    def to_lonlat(self, geoms: Any) -> Any:
        t = transformer(self.epsg, CGCS2000)
        return shapely.transform(geoms, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))

    def to_metric(self, geoms: Any) -> Any:
        t = transformer(CGCS2000, self.epsg)
        return shapely.transform(geoms, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))

    def atoms_of_compound(self, c: int) -> np.ndarray:
        return np.flatnonzero(self.atoms.compound == c)


def build_context(
    *,
    code: str,
    name: str,
    boundary_lonlat: BaseGeometry | None,
    buildings: pd.DataFrame,
    compounds: pd.DataFrame,
    barriers_lonlat: Sequence[Any] | np.ndarray = (),
    rules: GridRules,
    group_codes: list[str] | None = None,
    signature: tuple[Any, ...] = (),
) -> CommunityContext:
    """Assemble a community for gridding.

    ``buildings``: id, code, compound_id (or NA), households, people, lon, lat and one ``g_<group>``
    column per special group. ``compounds``: id, code, name, geometry (lon/lat shapely)."""
    if boundary_lonlat is None or boundary_lonlat.is_empty:
        raise InvalidInput(f"社区没有边界 community {code} has no boundary polygon (rule: community_geometry)")
    epsg = metric_epsg_for_bounds(boundary_lonlat.bounds)
    t = transformer(CGCS2000, epsg)

    def metric(g: Any) -> Any:
        return shapely.transform(g, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))

    boundary = shapely.set_precision(shapely.make_valid(metric(boundary_lonlat)), GRID)
    group_codes = list(group_codes or [])
    comp = compounds.sort_values("id").reset_index(drop=True) if len(compounds) else compounds
    cgeoms = (
        np.array([shapely.make_valid(metric(g)) for g in comp["geometry"]], dtype=object)
        if len(comp)
        else np.array([], dtype=object)
    )
    # clip compounds to the community and make them disjoint (earlier id wins)
    taken = shapely.Polygon()
    for i in range(len(cgeoms)):
        g = shapely.intersection(cgeoms[i], boundary, grid_size=GRID)
        g = shapely.difference(g, taken, grid_size=GRID) if not taken.is_empty else g
        cgeoms[i] = _poly(g)
        taken = shapely.union(taken, cgeoms[i], grid_size=GRID)
    compounds_ = Compounds(
        comp["id"].to_numpy(np.int64) if len(comp) else np.zeros(0, np.int64),
        comp["code"].to_numpy(object) if len(comp) else np.zeros(0, object),
        comp["name"].to_numpy(object) if len(comp) else np.zeros(0, object),
        cgeoms,
    )
    cidx = {int(cid): i for i, cid in enumerate(compounds_.id)}

    b = buildings.sort_values("code").reset_index(drop=True)
    bx, by = t.transform(b["lon"].to_numpy(float), b["lat"].to_numpy(float)) if len(b) else (np.zeros(0), np.zeros(0))
    comp_of = np.array([cidx.get(int(c), -1) if pd.notna(c) else -1 for c in b["compound_id"]], dtype=np.int64)
    notes: list[str] = []
    # loose buildings standing inside a compound join it (one territory cannot have two owners)
    loose = np.flatnonzero(comp_of < 0)
    if len(loose) and len(cgeoms):
        pts = shapely.points(np.column_stack([bx[loose], by[loose]]))
        tree = shapely.STRtree(cgeoms)
        li, ci = tree.query(pts, predicate="within")
        for a, c in zip(li, ci, strict=False):
            comp_of[loose[a]] = c
            notes.append(
                f"building {b['code'][loose[a]]} has no compound but stands inside compound "
                f"{compounds_.code[c]}: treated as part of it"
            )
    gcols = [f"g_{g}" for g in group_codes]
    groups = b[gcols].to_numpy(np.int64) if gcols else np.zeros((len(b), 0), np.int64)
    codes = b["code"].to_numpy(object)
    hh = b["households"].to_numpy(np.int64)
    pp = b["people"].to_numpy(np.int64)
    est = b["people_estimated"].to_numpy(bool) if "people_estimated" in b else np.zeros(len(b), dtype=bool)
    ids = b["id"].to_numpy(np.int64)
    xy = np.column_stack([bx, by]) if len(b) else np.zeros((0, 2))
    # compounds without buildings are atoms too (their land must belong to some grid)
    empty = [c for c in range(len(cgeoms)) if not (comp_of == c).any() and not cgeoms[c].is_empty]
    if empty:
        ep = np.array([shapely.get_coordinates(shapely.point_on_surface(cgeoms[c]))[0] for c in empty])
        ids = np.concatenate([ids, np.full(len(empty), -1)])
        codes = np.concatenate([codes, compounds_.code[empty]])
        comp_of = np.concatenate([comp_of, np.array(empty, dtype=np.int64)])
        hh = np.concatenate([hh, np.zeros(len(empty), np.int64)])
        pp = np.concatenate([pp, np.zeros(len(empty), np.int64)])
        est = np.concatenate([est, np.zeros(len(empty), dtype=bool)])
        groups = np.concatenate([groups, np.zeros((len(empty), groups.shape[1]), np.int64)])
        xy = np.concatenate([xy, ep])
    atoms = Atoms(ids, codes, comp_of, hh, pp, groups, xy, notes=notes, people_estimated=est)
    if atoms.n == 0:
        raise InvalidInput(
            f"社区没有楼栋也没有小区，无可划分 community {code} has no buildings and no compounds: nothing to divide into grids"
        )
    tessellate(atoms, compounds_, boundary)
    bars = np.array([metric(g) for g in barriers_lonlat], dtype=object) if len(barriers_lonlat) else np.zeros(0, object)
    graph = adjacency(atoms.cell, atoms.xy, bars, rules)
    ctx = CommunityContext(
        code, name, rules, epsg, boundary, atoms, compounds_, graph, bars, group_codes, signature=signature
    )
    ctx.building_index = {int(i): a for a, i in enumerate(atoms.building_id) if i >= 0}
    for a, c in enumerate(atoms.code):
        ctx.code_index.setdefault(str(c), a)
    ctx.compound_index = {str(c): i for i, c in enumerate(compounds_.code)}
    return ctx


def _poly(g: BaseGeometry) -> BaseGeometry:
    if g.is_empty:
        return shapely.Polygon()
    if g.geom_type in ("Polygon", "MultiPolygon"):
        return g
    parts = [p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else shapely.Polygon()
