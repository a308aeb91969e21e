"""Repair (网格修复): fix an existing plan's rule breaks while moving as few buildings as possible and
keeping compounds whole. Grids keep their identity (codes); the repaired polygons are rebuilt from
the territories, so overlaps and gaps disappear with the fix.

1. units = compounds (whole unless above a maximum) and loose buildings; each unit starts in the
   grid holding most of its buildings (a split compound is thereby reunited);
2. unassigned units join the adjacent grid with the fewest households; detached pieces of a grid
   (islands, unless marked as exceptions) join the neighbouring grid they border most;
3. when the number of grids cannot satisfy the bounds (k outside ⌈H/max⌉, ⌈P/max people⌉ … ⌊H/min⌋:
   e.g. 7 grids for 7,581 people at ≤ 1,000 people each), the count is changed with the fewest moves:
   the largest grid is split in two (a new code) or the adjacent pair with the fewest households is
   merged (the smaller grid's code retired), one grid at a time, and the answer says so;
4. local search (and on small communities the CP-SAT repair model) minimises, in this order:
   rule breaks, households outside the bounds, buildings moved, boundary length.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from gisgov.gridding import exact, heuristic
from gisgov.gridding.context import CommunityContext
from gisgov.gridding.feasibility import k_range
from gisgov.gridding.graph import Graph, pieces
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
    exc: list[str | None] = list(plan.exceptions) if plan.exceptions else [None] * K
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
    codes = list(plan.codes)
    names: list[str | None] = list(plan.names) if plan.names is not None else [None] * K
    exc = list(exc)
    lab, change = _fit_count(ctx, units.graph, h, p, r, lab, codes, exc, names, move_cost, seed=seed)
    K = len(codes)
    if change["added"] or change["removed"]:
        cur_fit = lab.copy()  # the count change is forced: further moves are counted from here
    else:
        cur_fit = cur
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
        orig=cur_fit,
        move_cost=move_cost,
        allow_empty=False,
        anneal_moves=0,
    )
    method = "local-search"
    optimal = False
    solver_mode: str | None = None
    if units.n <= exact_max_units and not multipart:
        cand = []
        for u in range(units.n):
            near = {int(lab[u]), int(cur_fit[u])} | {int(lab[v]) for v in adj[u]}
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
            current=cur_fit,
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
                new_pen == old_pen and _moves(res.labels, cur_fit, move_cost) <= _moves(lab, cur_fit, move_cost)
            ):
                lab = res.labels
            method = "exact-cpsat"
            optimal = res.optimal
            solver_mode = res.mode or None
    new_ag = ag.copy()
    for u, atoms in enumerate(units.atoms):
        new_ag[atoms] = lab[u]
    old_code = [plan.codes[g] if g >= 0 else None for g in ag.tolist()]
    moved = [
        str(ctx.atoms.code[a])
        for a in range(ctx.atoms.n)
        if ctx.atoms.building_id[a] >= 0 and (codes[new_ag[a]] if new_ag[a] >= 0 else None) != old_code[a]
    ]
    polys = grid_polygons(ctx, new_ag, K)
    new_plan = PlanInput(codes, new_ag, polys, exc, names if plan.names is not None else None)
    after = validate(ctx, new_plan)
    return {
        "grids_before": len(plan.codes),
        "grids_after": K,
        "grids_added": change["added"],
        "grids_removed": change["removed"],
        "notes": change["notes"],
        "community": ctx.code,
        "method": method,
        "solver_mode": solver_mode,
        "optimal": optimal,
        "buildings_moved": len(moved),
        "moved": moved,
        "breaks_before": before["breaks_count"],
        "breaks_after": after["breaks_count"],
        "seconds": round(time.perf_counter() - t0, 3),
        "plan": new_plan,
        "report": after,
    }


def _next_code(community: str, codes: list[str]) -> str:
    """A code not in ``codes``: the community code and the next free 3-digit sequence number
    (activation renumbers codes in reading order anyway)."""
    taken = set(codes)
    seqs = [int(c[len(community) :]) for c in codes if c.startswith(community) and c[len(community) :].isdigit()]
    n = max(seqs, default=len(codes)) + 1
    while f"{community}{n:03d}" in taken:
        n += 1
    return f"{community}{n:03d}"


def _fit_count(
    ctx: CommunityContext,
    g: Graph,
    h: np.ndarray,
    p: np.ndarray,
    r: GridRules,
    lab: np.ndarray,
    codes: list[str],
    exc: list[str | None],
    names: list[str | None],
    move_cost: np.ndarray,
    *,
    seed: int,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Change the number of grids when it cannot satisfy the bounds: split the largest grid (a new
    code; the part holding more buildings keeps the old one) while there are too few, merge the
    adjacent pair with the fewest households (the grid with fewer buildings joins the other, its code
    retired) while there are too many. ``codes``, ``exc`` and ``names`` are updated in place; grids
    marked as multipart exceptions are left alone. Returns the labels and what changed."""
    lab = np.asarray(lab, dtype=np.int64).copy()
    K0 = len(codes)
    kmin, kmax = k_range(int(h.sum()), int(p.sum()), r)
    lo, hi = min(kmin, kmax), max(kmin, kmax)
    target = min(max(K0, lo), hi) if K0 else K0
    added: list[str] = []
    removed: list[str] = []
    while len(codes) < target:
        K = len(codes)
        H = np.bincount(lab, weights=h, minlength=K)
        P = np.bincount(lab, weights=p, minlength=K)
        order = sorted(range(K), key=lambda x: (-H[x], -P[x], x))
        done = False
        for x in order:
            nodes = np.flatnonzero(lab == x)
            if exc[x] == "multipart" or len(nodes) < 2:
                continue
            sub, _ = g.subgraph(nodes)
            part, _ = heuristic.recursive_partition(sub, h[nodes], p[nodes], r, seed=seed, k=2)
            if part.max() < 1:
                continue
            side = part >= 1
            # the side holding more buildings keeps the code: fewer buildings change grid
            if move_cost[nodes[side]].sum() > move_cost[nodes[~side]].sum():
                side = ~side
            lab[nodes[side]] = K
            code = _next_code(ctx.code, codes)
            codes.append(code)
            exc.append(None)
            names.append(None)
            added.append(code)
            done = True
            break
        if not done:
            break
    while len(codes) > target:
        K = len(codes)
        H = np.bincount(lab, weights=h, minlength=K)
        a_, b_ = lab[g.ei], lab[g.ej]
        pairs = {
            (int(min(x, y)), int(max(x, y)))
            for x, y in zip(a_.tolist(), b_.tolist(), strict=False)
            if x != y and exc[x] != "multipart" and exc[y] != "multipart"
        }
        if not pairs:
            break
        x, y = min(pairs, key=lambda t: (H[t[0]] + H[t[1]], t))
        bx = move_cost[lab == x].sum()
        by = move_cost[lab == y].sum()
        keep, drop = (x, y) if bx >= by else (y, x)
        lab[lab == drop] = keep
        lab[lab > drop] -= 1
        removed.append(codes.pop(drop))
        exc.pop(drop)
        names.pop(drop)
    notes: list[str] = []
    if added or removed:
        H_, P_ = int(h.sum()), int(p.sum())
        why = (
            f"{H_} 户 households / {P_} 人 people need "
            + (f"{kmin}–{kmax}" if kmin <= kmax else f"at least {kmin} and at most {kmax}")
            + f" grids of {r.min_households}–{r.max_households} households and ≤ {r.max_people} people"
        )
        change = (
            f"网格数调整 grid count changed {K0} → {len(codes)} ({why}): "
            + (f"added {', '.join(added)} (the largest grid split in two)" if added else "")
            + (f"removed {', '.join(removed)} (merged into its neighbour)" if removed else "")
        )
        notes.append(change)
    return lab, {"added": added, "removed": removed, "notes": notes}


def _penalty(lab: np.ndarray, h: np.ndarray, p: np.ndarray, r: GridRules, K: int) -> tuple[int, int]:
    H = np.bincount(lab, weights=h, minlength=K)
    P = np.bincount(lab, weights=p, minlength=K)
    under = np.maximum(0, r.min_households - H) * (H > 0)
    over = np.maximum(0, H - r.max_households)
    pover = np.maximum(0, P - r.max_people)
    return int((under > 0).sum() + (over > 0).sum() + (pover > 0).sum()), int(under.sum() + over.sum() + pover.sum())


def _moves(lab: np.ndarray, cur: np.ndarray, cost: np.ndarray) -> float:
    return float(cost[(cur >= 0) & (lab != cur)].sum())
