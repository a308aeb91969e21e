"""Incremental editing (增量校验): move one building or one compound between two grids and re-check
only those two grids — totals, polygons, pieces, split compound — plus the units that cannot leave
each grid without disconnecting it (cut vertices of the grid's unit graph)."""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import shapely

from gisgov.errors import InvalidInput
from gisgov.gridding.context import CommunityContext
from gisgov.gridding.graph import articulation_points
from gisgov.gridding.metrics import polsby_popper, reock
from gisgov.gridding.territory import GRID
from gisgov.gridding.validate import (
    PlanInput,
    _polygonal,
    _status,
    _wide,
    outline_tolerance,
    raw_grid_polygons,
    simplify_outlines,
    validate,
)


class PlanEditor:
    """A plan held in memory for fast edits (polygons derived from the assignment)."""

    def __init__(self, ctx: CommunityContext, plan: PlanInput):
        self.ctx = ctx
        self.codes = list(plan.codes)
        self.index = {c: k for k, c in enumerate(self.codes)}
        self.exceptions = list(plan.exceptions or [None] * len(self.codes))
        self.atom_grid = np.asarray(plan.atom_grid, dtype=np.int64).copy()
        k = len(self.codes)
        a = ctx.atoms
        sel = self.atom_grid >= 0
        self.H = np.bincount(self.atom_grid[sel], weights=a.households[sel], minlength=k).astype(np.int64)
        self.P = np.bincount(self.atom_grid[sel], weights=a.people[sel], minlength=k).astype(np.int64)
        #: raw outlines (unions of territory cells) and the displayed/saved ones (coverage-simplified)
        self.raw = raw_grid_polygons(ctx, self.atom_grid, k)
        self.polys = simplify_outlines(self.raw, outline_tolerance(ctx), ctx.atoms.xy, self.atom_grid)
        #: grid codes whose displayed outline changed in the last :meth:`rebuild` beyond the grids rebuilt
        self.outline_changed: set[str] = set()
        # unit key per atom: a compound's atoms share one key, loose buildings their own
        self.key = np.where(a.compound >= 0, a.compound, -1 - np.arange(a.n))

    def copy(self) -> PlanEditor:
        """An independent editor with the same state (what a move changes is copied; the rest is shared)."""
        c = copy.copy(self)
        c.atom_grid, c.H, c.P, c.polys = self.atom_grid.copy(), self.H.copy(), self.P.copy(), list(self.polys)
        c.raw, c.outline_changed = list(self.raw), set()
        c.codes, c.exceptions, c.index = list(self.codes), list(self.exceptions), dict(self.index)
        return c

    def plan(self) -> PlanInput:
        return PlanInput(self.codes, self.atom_grid.copy(), None, self.exceptions)

    def report(self) -> dict[str, Any]:
        return validate(self.ctx, self.plan())

    def atoms_for(self, *, building: str | None = None, compound: str | None = None) -> np.ndarray:
        ctx = self.ctx
        if compound is not None:
            c = ctx.compound_index.get(str(compound))
            if c is None:
                raise InvalidInput(f"小区 compound {compound} is not in community {ctx.code}")
            return ctx.atoms_of_compound(c)
        a = ctx.code_index.get(str(building))
        if a is None or ctx.atoms.building_id[a] < 0:
            raise InvalidInput(f"楼栋 building {building} is not in community {ctx.code}")
        return np.array([a])

    def stuck_units(self, g: int) -> list[str]:
        """Units (compound or building codes) whose removal would disconnect grid ``g``."""
        ctx = self.ctx
        atoms = np.flatnonzero(self.atom_grid == g)
        if len(atoms) < 3:
            return []
        keys = self.key[atoms]
        uniq, inv = np.unique(keys, return_inverse=True)
        local = {int(a): int(u) for a, u in zip(atoms, inv, strict=False)}
        adj: list[set[int]] = [set() for _ in range(len(uniq))]
        gr = ctx.graph
        for a in atoms.tolist():
            ua = local[a]
            for o in gr.nbr[gr.indptr[a] : gr.indptr[a + 1]].tolist():
                uo = local.get(o)
                if uo is not None and uo != ua:
                    adj[ua].add(uo)
        cut = articulation_points([sorted(s) for s in adj])
        out = []
        for u in cut:
            k = int(uniq[u])
            out.append(str(ctx.compounds.code[k]) if k >= 0 else str(ctx.atoms.code[-1 - k]))
        return sorted(out)

    def move(self, to_grid: str, *, building: str | None = None, compound: str | None = None) -> dict[str, Any]:
        """Move a building or a whole compound to ``to_grid``; returns the two grids re-checked."""
        t0 = time.perf_counter()
        if to_grid not in self.index:
            raise InvalidInput(f"未知网格 unknown grid {to_grid}")
        atoms = self.atoms_for(building=building, compound=compound)
        b = self.index[to_grid]
        touched = sorted({int(x) for x in self.atom_grid[atoms] if x >= 0} | {b})
        a_ = self.ctx.atoms
        for g in set(self.atom_grid[atoms].tolist()):
            if g >= 0:
                sel = atoms[self.atom_grid[atoms] == g]
                self.H[g] -= int(a_.households[sel].sum())
                self.P[g] -= int(a_.people[sel].sum())
        self.atom_grid[atoms] = b
        self.H[b] += int(a_.households[atoms].sum())
        self.P[b] += int(a_.people[atoms].sum())
        self.rebuild(touched)
        touched += [self.index[c] for c in sorted(self.outline_changed)]
        grids = [self.grid_row(g) for g in touched]
        return {
            "moved": {"building": building, "compound": compound, "to": to_grid, "atoms": int(len(atoms))},
            "grids": grids,
            "ms": round((time.perf_counter() - t0) * 1000, 2),
        }

    def outline(self, g: int) -> Any:
        """Grid ``g``'s raw outline (union of its units' territory cells)."""
        return self.raw[g]

    def rebuild(self, grids: list[int] | set[int]) -> None:
        """Rebuild the outlines of ``grids`` from their atoms' territory cells (coverage union), then
        simplify the whole coverage again (shared edges identical on both sides); grids whose displayed
        outline changed beyond ``grids`` are listed in :attr:`outline_changed` (by code)."""
        cells = self.ctx.atoms.cell
        for g in grids:
            idx = np.flatnonzero(self.atom_grid == g)
            parts = [c for c in cells[idx] if c is not None and not c.is_empty]
            self.raw[g] = _polygonal(shapely.union_all(parts, grid_size=GRID)) if parts else shapely.Polygon()
        old = self.polys
        self.polys = simplify_outlines(self.raw, outline_tolerance(self.ctx), self.ctx.atoms.xy, self.atom_grid)
        self.outline_changed = {
            self.codes[g]
            for g in range(len(self.codes))
            if g not in grids and not shapely.equals_exact(old[g], self.polys[g], 0.0)
        }

    def reorder(self, codes: list[str]) -> None:
        """Put the grids in the order ``codes`` (the same set of codes as now)."""
        if sorted(codes) != sorted(self.codes):
            raise InvalidInput("网格编码不一致 reorder needs the same grid codes")
        perm = np.array([self.index[c] for c in codes], dtype=np.int64)  # new position -> old index
        inv = np.empty(len(perm), dtype=np.int64)
        inv[perm] = np.arange(len(perm))
        self.codes = list(codes)
        self.exceptions = [self.exceptions[g] for g in perm.tolist()]
        self.H, self.P = self.H[perm], self.P[perm]
        self.polys = [self.polys[g] for g in perm.tolist()]
        self.raw = [self.raw[g] for g in perm.tolist()]
        sel = self.atom_grid >= 0
        self.atom_grid[sel] = inv[self.atom_grid[sel]]
        self.index = {c: k for k, c in enumerate(self.codes)}

    def assign(self, atoms: np.ndarray, g: int, *, rebuild: bool = True) -> set[int]:
        """Put ``atoms`` into grid index ``g`` (-1 = no grid), keeping H/P up to date; returns the grid
        indices touched (old grids and ``g``). Outlines are rebuilt unless ``rebuild`` is False."""
        atoms = np.asarray(atoms, dtype=np.int64)
        a_ = self.ctx.atoms
        old = self.atom_grid[atoms]
        moving = atoms[old != g]
        touched = {int(x) for x in self.atom_grid[moving] if x >= 0}
        if len(moving) == 0:
            return set()
        sel = self.atom_grid[moving] >= 0
        np.subtract.at(self.H, self.atom_grid[moving][sel], a_.households[moving][sel])
        np.subtract.at(self.P, self.atom_grid[moving][sel], a_.people[moving][sel])
        self.atom_grid[moving] = g
        if g >= 0:
            self.H[g] += int(a_.households[moving].sum())
            self.P[g] += int(a_.people[moving].sum())
            touched.add(g)
        if rebuild:
            self.rebuild(touched)
        return touched

    def add_grid(self, code: str, exception: str | None = None) -> int:
        """Append an empty grid ``code``; returns its index."""
        if code in self.index:
            raise InvalidInput(f"网格编码重复 grid {code} exists already")
        self.codes.append(code)
        self.exceptions.append(exception)
        self.index[code] = len(self.codes) - 1
        self.H = np.append(self.H, 0).astype(np.int64)
        self.P = np.append(self.P, 0).astype(np.int64)
        self.polys.append(shapely.Polygon())
        self.raw.append(shapely.Polygon())
        return len(self.codes) - 1

    def remove_grid(self, g: int) -> None:
        """Remove grid index ``g``, which must hold no atom; later indices shift down by one."""
        if (self.atom_grid == g).any():
            raise InvalidInput(f"网格非空 grid {self.codes[g]} still holds units")
        del self.codes[g], self.exceptions[g], self.polys[g], self.raw[g]
        self.H = np.delete(self.H, g)
        self.P = np.delete(self.P, g)
        self.atom_grid[self.atom_grid > g] -= 1
        self.index = {c: k for k, c in enumerate(self.codes)}

    def grid_row(self, g: int) -> dict[str, Any]:
        ctx, r = self.ctx, self.ctx.rules
        poly = self.polys[g]
        parts = (
            [p for p in shapely.get_parts(poly) if not _wide(p, r.tolerance_m).is_empty] if not poly.is_empty else []
        )
        breaks: list[dict[str, Any]] = []
        h, p = int(self.H[g]), int(self.P[g])
        if h < r.min_households:
            breaks.append({"rule": "households_under", "message": f"{h} households < {r.min_households}"})
        if h > r.max_households:
            breaks.append({"rule": "households_over", "message": f"{h} households > {r.max_households}"})
        if p > r.max_people:
            breaks.append({"rule": "people_over", "message": f"{p} people > {r.max_people}"})
        if len(parts) > 1 and self.exceptions[g] != "multipart":
            parts.sort(key=lambda x: -x.area)
            breaks.append(
                {
                    "rule": "island",
                    "message": f"grid in {len(parts)} pieces",
                    "geometry": shapely.geometry.mapping(ctx.to_lonlat(shapely.union_all(parts[1:]))),
                }
            )
        atoms = np.flatnonzero(self.atom_grid == g)
        for c in sorted({int(x) for x in ctx.atoms.compound[atoms] if x >= 0}):
            members = ctx.atoms_of_compound(c)
            if (self.atom_grid[members] != g).any():
                hc = int(ctx.atoms.households[members].sum())
                if hc <= r.max_households and int(ctx.atoms.people[members].sum()) <= r.max_people:
                    breaks.append(
                        {
                            "rule": "split_compound",
                            "message": f"compound {ctx.compounds.code[c]} is split",
                            "compound": str(ctx.compounds.code[c]),
                        }
                    )
        return {
            "code": self.codes[g],
            "households": h,
            "people": p,
            "status": _status(h, p, r),
            "polsby_popper": round(float(polsby_popper([poly])[0]), 4) if not poly.is_empty else 0.0,
            "reock": round(float(reock([poly])[0]), 4) if not poly.is_empty else 0.0,
            "geometry": shapely.geometry.mapping(ctx.to_lonlat(poly)) if not poly.is_empty else None,
            "breaks": breaks,
            "cannot_leave": self.stuck_units(g),
        }
