"""Automatic partition (自动划分): feasibility first, then an exact CP-SAT model on small
communities or the tree-bipartition heuristic on large ones (chosen automatically, reported), grid
polygons from the units' territories (so they tile the community), codes W→E N→S.

When no plan obeys every rule, ``closest=True`` draws the *closest* plan: the smallest
:class:`Closeness`, compared in this order (issue 11 item 19):

1. breaks as the validator counts them: each bound a grid breaks (households under the minimum,
   households over the maximum, people over the maximum) and each compound split across grids although
   it fits in one grid count one each, all alike;
2. total excess: households below the minimum + households above the maximum + people above the
   maximum, summed over grids;
3. total boundary length between grids.

The search (buildings as units): heuristics at one grid and at the grid counts around the allowed
range, greedy merges/splits of grids, and the exact model with a strictly lexicographic objective
(every grid count 1..n on communities of at most ``SMALL_CLOSEST`` buildings, proven optimal there)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely

from gisgov.gridding import exact, feasibility, heuristic
from gisgov.gridding.codes import number
from gisgov.gridding.context import CommunityContext
from gisgov.gridding.graph import Graph
from gisgov.gridding.rules import GridRules
from gisgov.gridding.units import Units, build_units
from gisgov.gridding.validate import HARD_RULES, PlanInput, grid_polygons, validate

EXACT_MAX_UNITS = 250
#: the validator's rules a closest plan may break (what "closest" trades); any other break in a
#: drafted plan (island, donut, gap, overlap …) is a defect of the draft: status ``rule_breaks``
CLOSEST_TRADES = ("households_under", "households_over", "people_over", "split_compound")
EXACT_MAX_CELLS = 6000  # units × grid slots
#: closest-plan search: communities of at most this many buildings get every grid count 1..n in the
#: exact model (otherwise the counts around the allowed range)
SMALL_CLOSEST = 16
#: seeded heuristic runs tried until one meets every bound (the plan hints the exact solver)
HEURISTIC_RESTARTS = 24


@dataclass
class Proposal:
    community: str
    #: ok (the validator finds no break) | infeasible (no plan drawn) | closest (no plan can meet the
    #: bounds; this one is the closest) | rule_breaks (the validator found a break in the drafted plan
    #: that no plan should have, e.g. a grid in pieces: listed in ``findings``)
    status: str
    method: str | None = None  # exact-cpsat | heuristic
    optimal: bool = False
    solver_status: str | None = None
    #: how the exact solver ran: deterministic (seeded: one worker, deterministic-time budget) or parallel
    solver_mode: str | None = None
    gap: float | None = None
    seconds: float = 0.0
    units: int = 0
    findings: list[dict[str, Any]] = field(default_factory=list)
    plan: PlanInput | None = None
    report: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    #: a closest plan's :class:`Closeness` (breaks, excess, boundary_m); None otherwise
    closeness: dict[str, Any] | None = None

    def public(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("plan", "report")}
        if self.report is not None:
            out["report"] = {k: v for k, v in self.report.items() if not k.startswith("_")}
        if self.plan is not None:
            out["codes"] = list(self.plan.codes)
        return out


def findings_json(ctx: CommunityContext, units: Units, feas: feasibility.Feasibility) -> list[dict[str, Any]]:
    out = []
    for f in feas.findings:
        atoms = np.concatenate([units.atoms[u] for u in f.units]) if f.units else np.zeros(0, np.int64)
        geom = None
        if len(atoms) and len(atoms) < units.n:
            g = shapely.union_all([c for c in ctx.atoms.cell[atoms] if c is not None and not c.is_empty])
            geom = shapely.geometry.mapping(ctx.to_lonlat(g)) if not g.is_empty else None
        out.append(
            {
                "rule": f.rule,
                "message": f.message,
                "units": [str(units.code[u]) for u in f.units[:200]],
                "geometry": geom,
                "data": {k: (int(v) if isinstance(v, (np.integer,)) else v) for k, v in f.data.items()},
            }
        )
    return out


def propose(
    ctx: CommunityContext,
    *,
    rules: GridRules | None = None,
    locked: dict[str, np.ndarray] | None = None,
    method: str = "auto",
    seed: int = 0,
    time_limit_s: float = 10.0,
    closest: bool = False,
    workers: int = 2,
    exact_max_units: int = EXACT_MAX_UNITS,
) -> Proposal:
    """Draft a plan for ``ctx``. ``locked`` maps a kept grid's code to its atoms (kept as they are)."""
    t0 = time.perf_counter()
    if rules is not None and rules != ctx.rules:
        ctx = _with_rules(ctx, rules)
    r = ctx.rules
    locked = locked or {}
    active = np.ones(ctx.atoms.n, bool)
    for atoms_ in locked.values():
        active[atoms_] = False
    units = build_units(ctx.atoms, ctx.compounds, ctx.graph, r, active=active)
    prop = Proposal(ctx.code, "ok", units=units.n)
    if units.split_compounds:
        prop.notes.append(
            "compounds above the maximum, split along whole buildings: "
            + ", ".join(str(ctx.compounds.code[c]) for c in units.split_compounds)
        )
    prop.notes.extend(ctx.atoms.notes)
    feas = feasibility.check(
        units.graph, units.households, units.people, r, codes=units.code, people_estimated=units.people_estimated
    )
    prop.findings = findings_json(ctx, units, feas)
    if not feas.feasible and not closest:
        prop.status = "infeasible"
        prop.seconds = round(time.perf_counter() - t0, 3)
        return prop

    h, p, g = units.households, units.people, units.graph
    labels, tries = _heuristic(g, h, p, r, seed=seed, restarts=HEURISTIC_RESTARTS if feas.feasible else 1)
    if tries > 1:
        prop.notes.append(
            f"heuristic: {tries} seeded restart(s) to find "
            + ("a plan within the bounds" if _within(labels, h, p, r) else "its closest plan")
        )
    heur_ok = _within(labels, h, p, r)
    _kmin, kmax = feasibility.k_range(int(h.sum()), int(p.sum()), r)
    use_exact = method == "exact" or (
        method == "auto" and units.n <= exact_max_units and units.n * max(kmax, 1) <= EXACT_MAX_CELLS
    )
    prop.method = "heuristic"
    need_closest = not feas.feasible
    if use_exact and units.n and feas.feasible:
        k_hi = max(kmax, int(labels.max()) + 1 if len(labels) else 1)
        res = exact.solve(
            g, h, p, r, k_max=k_hi, k_min=1, hint=labels, time_limit_s=time_limit_s, workers=workers, seed=seed
        )
        prop.method = "exact-cpsat"
        prop.solver_status = res.status
        prop.solver_mode = res.mode or None
        prop.optimal = res.optimal
        prop.gap = None if res.gap is None else round(res.gap, 4)
        if res.labels is not None:
            labels = res.labels
        elif res.status == "INFEASIBLE":
            need_closest = True
            prop.findings.append(
                {
                    "rule": "no_plan",
                    "message": "the exact model proved that no plan meets the household "
                    "and people bounds with contiguous grids and whole compounds",
                    "units": [],
                    "geometry": None,
                    "data": {},
                }
            )
    elif not heur_ok and feas.feasible:
        prop.findings.append(
            {
                "rule": "not_found",
                "message": "the heuristic found no plan meeting every bound; "
                "showing its closest plan (try --method exact or more time)",
                "units": [],
                "geometry": None,
                "data": {},
            }
        )
    if not need_closest and closest and not _within(labels, h, p, r):
        need_closest = True
    if need_closest:
        if not closest:
            prop.status = "infeasible"
            prop.seconds = round(time.perf_counter() - t0, 3)
            return prop
        units, labels, info2 = _closest(
            ctx,
            r,
            active,
            units,
            labels,
            seed=seed,
            time_limit_s=time_limit_s,
            workers=workers,
            exact_max_units=exact_max_units,
        )
        h, p = units.households, units.people
        prop.method = info2["method"]
        prop.solver_status = info2.get("status")
        prop.solver_mode = info2.get("mode") or None
        prop.optimal = info2.get("optimal", False)
        prop.closeness = info2["closeness"]
        prop.notes.append(info2["note"])
    labels = heuristic.relabel_dense(labels) if units.n else labels
    if not _within(labels, h, p, r):
        prop.status = "closest"
    # atoms → grids: proposed grids, then locked grids
    k_new = int(labels.max()) + 1 if units.n else 0
    atom_grid = np.full(ctx.atoms.n, -1, dtype=np.int64)
    for u in range(units.n):
        atom_grid[units.atoms[u]] = labels[u]
    locked_codes = list(locked)
    for j, code in enumerate(locked_codes):
        atom_grid[locked[code]] = k_new + j
    k = k_new + len(locked_codes)
    polys = grid_polygons(ctx, atom_grid, k)
    codes = number(ctx.code, polys)
    prop.plan = PlanInput(
        codes, atom_grid, polys, [None] * k, names=[None] * k_new + [f"locked {c}" for c in locked_codes]
    )
    post_check(prop, validate(ctx, prop.plan), closest_plan=need_closest or prop.status == "closest")
    prop.seconds = round(time.perf_counter() - t0, 3)
    return prop


def post_check(prop: Proposal, report: dict[str, Any], *, closest_plan: bool = False) -> Proposal:
    """The full validator's verdict on a drafted plan decides its status: ``ok`` only when the
    validator finds no hard break; ``closest`` when the only breaks are the ones a closest plan trades
    (bounds, split compounds) and the plan is a closest plan (``closest_plan``: the bounds could not be
    met with whole compounds); otherwise ``rule_breaks``, with
    one finding per break (its rule, message and location) and a note saying the draft failed."""
    prop.report = report
    if report["ok"]:
        prop.status = "ok"
        return prop
    hard = [b for b in report["breaks"] if b["rule"] in HARD_RULES]
    defects = [b for b in hard if b["rule"] not in CLOSEST_TRADES]
    if (closest_plan or prop.status == "closest") and not defects:
        prop.status = "closest"
        return prop
    prop.status = "rule_breaks"
    for b in hard[:100]:
        prop.findings.append(
            {
                "rule": b["rule"],
                "message": f"方案校验未通过 the drafted plan fails the validator (rule: {b['rule']}): {b['message']}",
                "units": [],
                "geometry": b["geometry"],
                "data": {"grid": b["grid"], **b["data"]},
            }
        )
    rules = sorted({b["rule"] for b in hard})
    prop.notes.append(
        f"草案未通过校验 the drafted plan breaks {len(hard)} rule(s) ({', '.join(rules)}): "
        "it is not activated; repair it or edit it before activation"
    )
    return prop


def _heuristic(
    g: Graph, h: np.ndarray, p: np.ndarray, r: GridRules, *, seed: int, restarts: int
) -> tuple[np.ndarray, int]:
    """Tree bipartition + local search, restarted with the next seeds (seed, seed+1, …) until a plan
    meets every bound or ``restarts`` runs are spent; the best plan (by :func:`closeness`, boundary
    length left out) and the number of runs. Deterministic: counted in runs, not seconds."""
    best: np.ndarray | None = None
    best_score: tuple[int, int] | None = None
    runs = 0
    for s in range(seed, seed + max(1, restarts)):
        runs += 1
        lab, _ = heuristic.recursive_partition(g, h, p, r, seed=s)
        lab, _ = heuristic.local_search(g, h, p, r, lab, seed=s)
        lab = heuristic.relabel_dense(lab) if len(lab) else lab
        c = closeness(lab, h, p, r)
        sc = (c.breaks, c.excess)
        if best_score is None or sc < best_score:
            best, best_score = lab, sc
        if best_score[0] == 0:
            break
    if best is None:  # unreachable: at least one run
        raise RuntimeError("no heuristic run")
    return best, runs


@dataclass(frozen=True, order=True)
class Closeness:
    """How far a plan is from obeying the rules; the closest plan is the one with the smallest value,
    compared in this order (issue 11 item 19):

    1. ``breaks``: rule breaks as the validator counts them (its ``breaks_count`` for a plan of
       contiguous grids): one per grid and bound it breaks (households under the minimum, households
       over the maximum, people over the maximum; a grid over both maxima counts twice) plus one per
       compound split across grids although it fits in one grid; all count the same;
    2. ``excess``: how far the grids are beyond the bounds, summed over grids: households below the
       minimum + households above the maximum + people above the maximum;
    3. ``boundary``: total boundary length between grids (metres, discounted along barriers).
    """

    breaks: int
    excess: int
    boundary: float

    def public(self) -> dict[str, Any]:
        return {"breaks": self.breaks, "excess": self.excess, "boundary_m": round(self.boundary, 1)}


def closeness(
    labels: np.ndarray,
    h: np.ndarray,
    p: np.ndarray,
    r: GridRules,
    groups: list[list[int]] | None = None,
    graph: Graph | None = None,
) -> Closeness:
    """The :class:`Closeness` of ``labels`` (grid per unit); ``groups`` = the units of each compound
    that fits in one grid (a split counts as a break), ``graph`` for the boundary length (0 without)."""
    lab = np.asarray(labels, dtype=np.int64)
    if len(lab) == 0:
        return Closeness(0, 0, 0.0)
    H = np.bincount(lab, weights=h).astype(np.int64)
    P = np.bincount(lab, weights=p).astype(np.int64)
    used = np.bincount(lab) > 0
    under = np.maximum(0, r.min_households - H)[used]
    over = np.maximum(0, H - r.max_households)[used]
    pover = np.maximum(0, P - r.max_people)[used]
    breaks = int((under > 0).sum() + (over > 0).sum() + (pover > 0).sum())
    breaks += sum(1 for grp in groups or [] if len({int(x) for x in lab[grp]}) > 1)
    boundary = graph.cut_weight(lab) if graph is not None and graph.m else 0.0
    return Closeness(breaks, int(under.sum() + over.sum() + pover.sum()), float(boundary))


def _fitting_groups(bunits: Units, r: GridRules) -> list[list[int]]:
    """Buildings of each compound of several buildings that fits in one grid (splitting it is a break)."""
    groups: dict[int, list[int]] = {}
    for b in range(bunits.n):
        c = int(bunits.compound[b])
        if c >= 0:
            groups.setdefault(c, []).append(b)
    h, p = bunits.households, bunits.people
    return [
        g
        for g in groups.values()
        if len(g) > 1 and int(h[g].sum()) <= r.max_households and int(p[g].sum()) <= r.max_people
    ]


def _grid_pairs(g: Graph, lab: np.ndarray) -> list[tuple[int, int]]:
    a, b = lab[g.ei], lab[g.ej]
    keep = a != b
    return sorted({(int(min(x, y)), int(max(x, y))) for x, y in zip(a[keep], b[keep], strict=False)})


def _merge_split(
    g: Graph, h: np.ndarray, p: np.ndarray, r: GridRules, lab: np.ndarray, groups: list[list[int]], *, seed: int
) -> np.ndarray:
    """Greedy grid-count moves on a closest plan while they lower its :func:`closeness`: merge two
    adjacent grids, or split one grid in two (tree bipartition of its units). The partition heuristics
    keep the grid count they chose (a 410-household, 1,086-person community stayed two grids, 322 + 88
    households, two breaks, where one grid breaks one rule)."""
    lab = heuristic.relabel_dense(np.asarray(lab, dtype=np.int64))
    best = closeness(lab, h, p, r, groups, g)
    for _ in range(max(4, 2 * (int(lab.max()) + 1 if len(lab) else 0))):
        cands: list[tuple[Closeness, np.ndarray]] = []
        for a, b in _grid_pairs(g, lab):
            m = heuristic.relabel_dense(np.where(lab == b, a, lab))
            cands.append((closeness(m, h, p, r, groups, g), m))
        k = int(lab.max()) + 1
        for x in range(k):
            nodes = np.flatnonzero(lab == x)
            if len(nodes) < 2:
                continue
            sub, _ = g.subgraph(nodes)
            if int(sub.components().max()) != 0:
                continue
            part, _ = heuristic.recursive_partition(sub, h[nodes], p[nodes], r, seed=seed, k=2)
            if part.max() < 1:
                continue
            m = lab.copy()
            m[nodes[part >= 1]] = k
            m = heuristic.relabel_dense(m)
            cands.append((closeness(m, h, p, r, groups, g), m))
        if not cands:
            break
        c, m = min(cands, key=lambda t: t[0])
        if not c < best:
            break
        best, lab = c, m
    return lab


def _closest(
    ctx: CommunityContext,
    r: GridRules,
    active: np.ndarray,
    units: Units,
    unit_labels: np.ndarray,
    *,
    seed: int,
    time_limit_s: float,
    workers: int,
    exact_max_units: int,
) -> tuple[Units, np.ndarray, dict[str, Any]]:
    """Closest plan: the smallest :class:`Closeness` found. Buildings become the units (compounds may
    split, each split of a compound that fits in one grid counted as a break); candidates: the
    heuristics at the grid counts around the allowed range (and one grid), greedy merges/splits of
    grids, and the exact model with the lexicographic objective when small enough (every grid count
    1..n on communities of at most ``SMALL_CLOSEST`` buildings)."""
    from dataclasses import replace

    bunits = build_units(ctx.atoms, ctx.compounds, ctx.graph, replace(r, keep_compounds_whole=False), active=active)
    # hint: the unit-level labels, spread to buildings
    hint = np.zeros(bunits.n, dtype=np.int64)
    for b in range(bunits.n):
        hint[b] = unit_labels[units.of_atom[bunits.atoms[b][0]]]
    glist = _fitting_groups(bunits, r)
    h, p, g = bunits.households, bunits.people, bunits.graph

    def score(lab: np.ndarray) -> Closeness:
        return closeness(lab, h, p, r, glist, g)

    # the buildings-level heuristic usually meets every bound (buildings are small) but splits compounds
    hb, _ = heuristic.recursive_partition(g, h, p, r, seed=seed)
    hb, _ = heuristic.local_search(g, h, p, r, hb, seed=seed)
    hb = heuristic.relabel_dense(hb)
    # or start from the whole-compound plan and move single buildings only where a bound is broken
    hm, _ = heuristic.local_search(g, h, p, r, hint, seed=seed, orig=hint, move_cost=np.ones(bunits.n), anneal_moves=0)
    cands: list[tuple[Closeness, np.ndarray, str]] = [
        (score(hb), hb, "heuristic over buildings (closest)"),
        (score(hm), hm, "heuristic, compounds split where needed (closest)"),
        (score(hint), hint, "heuristic over compounds (closest)"),
    ]
    # grid counts around the allowed range, and one grid: outside the range a plan may break fewer rules
    kmin, kmax = feasibility.k_range(int(h.sum()), int(p.sum()), r)
    if bunits.n and int(g.components().max()) == 0:
        for k in sorted({1, kmin - 1, kmin, kmin + 1, kmax - 1, kmax, kmax + 1}):
            if not 1 <= k <= bunits.n:
                continue
            lk = np.zeros(bunits.n, dtype=np.int64)
            if k > 1:
                lk, _ = heuristic.recursive_partition(g, h, p, r, seed=seed, k=k)
                lk, _ = heuristic.local_search(g, h, p, r, lk, seed=seed, anneal_moves=0)
            lk = heuristic.relabel_dense(lk)
            cands.append((score(lk), lk, f"heuristic, {int(lk.max()) + 1} grid(s) (closest)"))
    best = min(cands, key=lambda t: t[0])
    merged = _merge_split(g, h, p, r, best[1], glist, seed=seed)
    if score(merged) < best[0]:
        best = (score(merged), merged, best[2].replace(" (closest)", ", grids merged/split (closest)"))
    info: dict[str, Any] = {"method": best[2]}
    if bunits.n and bunits.n <= 2 * exact_max_units:
        k_hi = bunits.n if bunits.n <= SMALL_CLOSEST else max(kmax + 1, kmin, int(best[1].max()) + 1)
        res = exact.solve(
            g,
            h,
            p,
            r,
            k_max=min(k_hi, bunits.n),
            k_min=1,
            hint=best[1],
            soft=True,
            lexicographic=True,
            groups=glist,
            time_limit_s=time_limit_s,
            workers=workers,
            seed=seed,
        )
        info["status"] = res.status
        info["mode"] = res.mode
        if res.labels is not None:
            lab = heuristic.relabel_dense(res.labels)
            polished = _merge_split(g, h, p, r, lab, glist, seed=seed)
            if score(polished) <= best[0]:
                best = (score(polished), polished, "exact-cpsat (closest)")
                info["optimal"] = res.optimal and score(polished) == score(lab)
        info["method"] = best[2]
    c = best[0]
    info["closeness"] = c.public()
    info["note"] = (
        "closest plan: fewest rule breaks as the validator counts them (bounds broken, compounds split that "
        "fit in one grid), then the least excess beyond the bounds, then the shortest boundaries "
        f"({c.breaks} break(s), excess {c.excess} households/people)"
    )
    return bunits, best[1], info


def _within(labels: np.ndarray, h: np.ndarray, p: np.ndarray, r: GridRules) -> bool:
    if len(labels) == 0:
        return True
    H = np.bincount(labels, weights=h)
    P = np.bincount(labels, weights=p)
    used = np.bincount(labels) > 0
    return bool(((H[used] >= r.min_households) & (H[used] <= r.max_households) & (P[used] <= r.max_people)).all())


def _with_rules(ctx: CommunityContext, rules: GridRules) -> CommunityContext:
    from dataclasses import replace

    from gisgov.gridding.territory import adjacency

    graph = ctx.graph
    if rules.barrier_weight != ctx.rules.barrier_weight or rules.tolerance_m != ctx.rules.tolerance_m:
        graph = adjacency(ctx.atoms.cell, ctx.atoms.xy, ctx.barriers, rules)
    return replace(ctx, rules=rules, graph=graph, _units=None)
