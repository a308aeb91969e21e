"""Repair (网格修复): fix an existing plan's rule breaks while moving as few buildings as possible and
keeping compounds whole. Grids keep their identity (codes); the repaired polygons are rebuilt from
the territories, so overlaps and gaps disappear with the fix.

1. units = compounds (whole unless above a maximum) and loose buildings; each unit starts in the
   grid holding most of its buildings (a split compound is thereby reunited);
2. unassigned units join the adjacent grid with the fewest households; detached pieces of a grid
   (islands, unless marked as exceptions) join the neighbouring grid they border most;
3. local search (and on small communities the CP-SAT repair model) minimises, in this order:
   rule breaks, households outside the bounds, buildings moved, boundary length.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from gisgov.gridding import exact, heuristic
from gisgov.gridding.context import CommunityContext
from gisgov.gridding.graph import pieces
from gisgov.gridding.rules import GridRules
from gisgov.gridding.units import build_units
from gisgov.gridding.validate import PlanInput, grid_polygons, validate


def repair(
    ctx: CommunityContext,
    plan: PlanInput,
    *,
    seed: int = 0,
    time_limit_s: float = 5.0,
    exact_max_units: int = 250,
    workers: int = 2,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    r = ctx.rules
    before = validate(ctx, plan)
    units = build_units(ctx.atoms, ctx.compounds, ctx.graph, r)
    K = len(plan.codes)
    ag = np.asarray(plan.atom_grid, dtype=np.int64)
    np.array([(ctx.atoms.building_id[a] >= 0).sum() for a in units.atoms], dtype=float)
    cur = np.full(units.n, -1, dtype=np.int64)
    move_cost = np.zeros(units.n)
    for u, atoms in enumerate(units.atoms):
        labs = ag[atoms]
        labs = labs[labs >= 0]
        if len(labs):
            vals, cnt = np.unique(labs, return_counts=True)
            cur[u] = vals[np.argmax(cnt)]
            move_cost[u] = cnt.max()
    adj = units.graph.adj()
    lab = cur.copy()
    h, p = units.households, units.people
    # unassigned units: to the adjacent grid with the fewest households (repeat as assignments spread)
    for _ in range(units.n):
        free = np.flatnonzero(lab < 0)
        if not len(free):
            break
        H = np.bincount(lab[lab >= 0], weights=h[lab >= 0], minlength=K)
        progress = False
        for u in free.tolist():
            opts = {int(lab[v]) for v in adj[u] if lab[v] >= 0}
            if opts:
                lab[u] = min(opts, key=lambda g: (H[g], g))
                progress = True
        if not progress:
            break
    for u in np.flatnonzero(lab < 0).tolist():  # isolated and unassigned: nearest grid by unit order
        lab[u] = 0
    # detached pieces: keep each grid's largest piece, hand the others to the neighbour they border most
    exc = plan.exceptions or [None] * K
    for g in range(K):
        if exc[g] == "multipart":
            continue
        ps = pieces(adj, np.flatnonzero(lab == g).tolist())
        if len(ps) <= 1:
            continue
        ps.sort(key=lambda c: (-int(h[c].sum()), c[0]))
        for piece in ps[1:]:
            border: dict[int, float] = {}
            sp = set(piece)
            for u in piece:
                for v, e in zip(
                    adj[u],
                    units.graph.nbr_edge[units.graph.indptr[u] : units.graph.indptr[u + 1]].tolist(),
                    strict=False,
                ):
                    if v not in sp and lab[v] != g:
                        border[int(lab[v])] = border.get(int(lab[v]), 0.0) + float(units.graph.length[e])
            if border:
                lab[piece] = max(border, key=lambda k: (border[k], -k))
    fixed = np.zeros(units.n, bool)
    multipart = {g for g in range(K) if exc[g] == "multipart"}
    if multipart:
        fixed = np.isin(lab, list(multipart))
    lab, _ = heuristic.local_search(
        units.graph,
        h,
        p,
        r,
        lab,
        seed=seed,
        fixed=fixed,
        orig=cur,
        move_cost=move_cost,
        allow_empty=False,
        anneal_moves=0,
    )
    method = "local-search"
    optimal = False
    if units.n <= exact_max_units and not multipart:
        cand = []
        for u in range(units.n):
            near = {int(lab[u]), int(cur[u])} | {int(lab[v]) for v in adj[u]}
            for v in adj[u]:
                near |= {int(lab[w]) for w in adj[v]}
            cand.append(sorted(x for x in near if x >= 0))
        res = exact.solve(
            units.graph,
            h,
            p,
            r,
            k_max=K,
            k_min=K,
            hint=lab,
            soft=True,
            current=cur,
            move_cost=move_cost,
            candidates=cand,
            time_limit_s=time_limit_s,
            workers=workers,
            seed=seed,
        )
        if res.labels is not None:
            new_pen = _penalty(res.labels, h, p, r, K)
            old_pen = _penalty(lab, h, p, r, K)
            if new_pen < old_pen or (
                new_pen == old_pen and _moves(res.labels, cur, move_cost) <= _moves(lab, cur, move_cost)
            ):
                lab = res.labels
            method = "exact-cpsat"
            optimal = res.optimal
    new_ag = ag.copy()
    for u, atoms in enumerate(units.atoms):
        new_ag[atoms] = lab[u]
    moved = [str(ctx.atoms.code[a]) for a in range(ctx.atoms.n) if ctx.atoms.building_id[a] >= 0 and new_ag[a] != ag[a]]
    polys = grid_polygons(ctx, new_ag, K)
    new_plan = PlanInput(list(plan.codes), new_ag, polys, list(exc), plan.names)
    after = validate(ctx, new_plan)
    return {
        "community": ctx.code,
        "method": method,
        "optimal": optimal,
        "buildings_moved": len(moved),
        "moved": moved,
        "breaks_before": before["breaks_count"],
        "breaks_after": after["breaks_count"],
        "seconds": round(time.perf_counter() - t0, 3),
        "plan": new_plan,
        "report": after,
    }


def _penalty(lab: np.ndarray, h: np.ndarray, p: np.ndarray, r: GridRules, K: int) -> tuple[int, int]:
    H = np.bincount(lab, weights=h, minlength=K)
    P = np.bincount(lab, weights=p, minlength=K)
    under = np.maximum(0, r.min_households - H) * (H > 0)
    over = np.maximum(0, H - r.max_households)
    pover = np.maximum(0, P - r.max_people)
    return int((under > 0).sum() + (over > 0).sum() + (pover > 0).sum()), int(under.sum() + over.sum() + pover.sum())


def _moves(lab: np.ndarray, cur: np.ndarray, cost: np.ndarray) -> float:
    return float(cost[(cur >= 0) & (lab != cur)].sum())
