"""Feasibility first (可行性预检): before solving, find what makes a rule-abiding plan impossible.

Necessary conditions checked, each naming the units that cause it:
- ``count_range``: households H and people P admit a grid count k with ⌈H/max⌉, ⌈P/max_people⌉ ≤ k ≤ ⌊H/min⌋;
- ``unit_over_max``: one unit (a building, or a compound that cannot be split) alone above a maximum;
- ``piece_infeasible``: a connected piece of the unit adjacency graph (an island) that cannot be
  gridded on its own, since grids are contiguous;
- ``bottleneck``: a cut vertex whose hanging pieces are too small to stand alone, so they must share
  its grid, and together exceed the maximum.
Passing them does not prove a plan exists (units are lumpy); the exact solver decides the rest.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gisgov.gridding.graph import Graph, pieces
from gisgov.gridding.rules import GridRules


@dataclass
class Finding:
    rule: str
    message: str
    units: list[int] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Feasibility:
    feasible: bool
    k_min: int
    k_max: int
    households: int
    people: int
    findings: list[Finding]
    component: np.ndarray  # component label per unit

    def summary(self) -> str:
        if self.feasible:
            return (
                f"可行 feasible so far: {self.households} households, {self.people} people → "
                f"{self.k_min}–{self.k_max} grids"
            )
        return "不可行 infeasible: " + "; ".join(f.message for f in self.findings)


def k_range(h: int, p: int, rules: GridRules) -> tuple[int, int]:
    """Allowed grid counts for a piece with ``h`` households and ``p`` people."""
    if h == 0 and p == 0:
        return 0, 0
    kmin = max(math.ceil(h / rules.max_households), math.ceil(p / rules.max_people), 1)
    kmax = h // rules.min_households if rules.min_households > 0 else max(kmin, h)
    return kmin, kmax


def standalone_ok(h: int, p: int, rules: GridRules) -> bool:
    a, b = k_range(h, p, rules)
    return a <= b


def forced_share(h: int, rules: GridRules) -> int:
    """Fewest households of a hanging piece of ``h`` households that must join its link's grid:
    h minus the largest total ≤ h that whole grids can hold (0, or some k·min..k·max)."""
    if h == 0:
        return 0
    lo, hi = rules.min_households, rules.max_households
    if lo == 0:
        return 0
    best = 0
    k = 1
    while k * lo <= h:
        best = max(best, min(h, k * hi))
        k += 1
    return h - best


def check(
    graph: Graph,
    households: np.ndarray,
    people: np.ndarray,
    rules: GridRules,
    *,
    codes: np.ndarray | None = None,
    allow_multipart: bool = False,
) -> Feasibility:
    """Run all feasibility checks on a unit graph."""
    h = np.asarray(households, dtype=np.int64)
    p = np.asarray(people, dtype=np.int64)
    n = graph.n
    name: Callable[[int], str] = (lambda u: str(codes[u])) if codes is not None else (lambda u: f"unit {u}")
    H, P = int(h.sum()), int(p.sum())
    kmin, kmax = k_range(H, P, rules)
    findings: list[Finding] = []
    if kmin > kmax:
        findings.append(
            Finding(
                "count_range",
                f"{H} 户 households / {P} 人 people cannot form grids of {rules.min_households}–{rules.max_households} "
                f"households and ≤ {rules.max_people} people: needs at least {kmin} grids but at most {kmax} fit",
                list(range(n)),
                {"households": H, "people": P, "k_min": kmin, "k_max": kmax},
            )
        )
    over = np.flatnonzero((h > rules.max_households) | (p > rules.max_people))
    for u in over.tolist():
        findings.append(
            Finding(
                "unit_over_max",
                f"{name(u)} alone has {h[u]} households / {p[u]} people, above the maximum "
                f"{rules.max_households} households / {rules.max_people} people of one grid",
                [int(u)],
                {"households": int(h[u]), "people": int(p[u])},
            )
        )
    comp = graph.components() if n else np.zeros(0, dtype=np.int64)
    ncomp = int(comp.max()) + 1 if n else 0
    if not allow_multipart and ncomp > 1:
        sum_min = sum_max = 0
        for c in range(ncomp):
            members = np.flatnonzero(comp == c)
            hc, pc = int(h[members].sum()), int(p[members].sum())
            a, b = k_range(hc, pc, rules)
            sum_min += a
            sum_max += b
            if a > b:
                findings.append(
                    Finding(
                        "piece_infeasible",
                        f"{len(members)} unit(s) ({', '.join(name(u) for u in members[:5])}{' …' if len(members) > 5 else ''}) "
                        f"form a separate piece (飞地, not adjacent to the rest) of {hc} households / {pc} people: "
                        + (
                            f"below the minimum {rules.min_households}, so it cannot be a grid and joining another "
                            f"grid would make that grid non-contiguous"
                            if hc < rules.min_households
                            else f"it cannot be divided into grids of {rules.min_households}–{rules.max_households}"
                        ),
                        [int(u) for u in members],
                        {"households": hc, "people": pc, "k_min": a, "k_max": b},
                    )
                )
        if kmin <= kmax and sum_min > sum_max:
            findings.append(
                Finding(
                    "count_range",
                    "separate pieces together need more grids than the households allow",
                    list(range(n)),
                    {"k_min": sum_min, "k_max": sum_max},
                )
            )
    if not allow_multipart and n:
        findings.extend(_bottlenecks(graph, h, p, rules, name))
        findings.extend(_stranded(graph, h, p, rules, name))
    return Feasibility(not findings, kmin, kmax, H, P, findings, comp)


def _stranded(
    graph: Graph, h: np.ndarray, p: np.ndarray, rules: GridRules, name: Callable[[int], str], budget: int = 3000
) -> list[Finding]:
    """Units below the minimum that no connected group of units containing them can bring into the
    bounds (every way to grow them overshoots a maximum). Bounded search per unit."""
    adj = graph.adj()
    lo, hi, hp = rules.min_households, rules.max_households, rules.max_people
    hl, pl = h.tolist(), p.tolist()
    out = []
    for u in range(graph.n):
        if hl[u] >= lo or hl[u] > hi or pl[u] > hp:
            continue
        seen_sets = set()
        stack = [(frozenset([u]), hl[u], pl[u])]
        found = False
        steps = 0
        while stack and steps < budget:
            steps += 1
            members, sh, sp = stack.pop()
            frontier = {v for m in members for v in adj[m]} - members
            for v in sorted(frontier):
                nh, np_ = sh + hl[v], sp + pl[v]
                if nh > hi or np_ > hp:
                    continue
                if nh >= lo:
                    found = True
                    break
                key = members | {v}
                if key not in seen_sets:
                    seen_sets.add(key)
                    stack.append((key, nh, np_))
            if found:
                break
        if not found and steps < budget:
            nbrs = ", ".join(f"{name(v)} ({hl[v]} households / {pl[v]} people)" for v in adj[u][:6]) or "none"
            out.append(
                Finding(
                    "stranded",
                    f"{name(u)} has {hl[u]} households / {pl[u]} people, below the minimum {lo}, and cannot join its "
                    f"neighbours without exceeding {hi} households or {hp} people (neighbours: {nbrs})",
                    [u, *adj[u]],
                    {"households": hl[u], "people": pl[u]},
                )
            )
    return out


def _bottlenecks(
    graph: Graph, h: np.ndarray, p: np.ndarray, rules: GridRules, name: Callable[[int], str]
) -> list[Finding]:
    """Cut vertices whose forced companions overflow one grid. One DFS (iterative) gives, for each
    cut vertex, the household/people totals of the pieces hanging off it."""
    adj = graph.adj()
    n = graph.n
    disc = [-1] * n
    low = [0] * n
    parent = [-1] * n
    sub_h = h.astype(np.int64).tolist()
    sub_p = p.astype(np.int64).tolist()
    hl, pl = h.tolist(), p.tolist()
    sep: dict[int, list[int]] = {}  # cut vertex -> children whose subtree hangs off it
    comp_total: dict[int, tuple[int, int]] = {}
    root_of = [-1] * n
    t = 0
    for root in range(n):
        if disc[root] >= 0:
            continue
        disc[root] = low[root] = t
        t += 1
        root_of[root] = root
        stack = [(root, iter(adj[root]))]
        while stack:
            u, it = stack[-1]
            pushed = False
            for v in it:
                if disc[v] < 0:
                    parent[v] = u
                    root_of[v] = root
                    disc[v] = low[v] = t
                    t += 1
                    stack.append((v, iter(adj[v])))
                    pushed = True
                    break
                if v != parent[u]:
                    low[u] = min(low[u], disc[v])
            if pushed:
                continue
            stack.pop()
            q = parent[u]
            if q >= 0:
                low[q] = min(low[q], low[u])
                sub_h[q] += sub_h[u]
                sub_p[q] += sub_p[u]
                if low[u] >= disc[q]:
                    sep.setdefault(q, []).append(u)
        comp_total[root] = (sub_h[root], sub_p[root])
    out: list[Finding] = []
    members_cache: dict[int, set[int]] = {}
    for v, children in sorted(sep.items()):
        is_root = parent[v] < 0
        if (is_root and len(children) < 2) or hl[v] > rules.max_households or pl[v] > rules.max_people:
            continue
        th, tp = comp_total[root_of[v]]
        hanging = [(sub_h[c], sub_p[c]) for c in children]
        rest_h = th - hl[v] - sum(x for x, _ in hanging)
        rest_p = tp - pl[v] - sum(y for _, y in hanging)
        if not is_root:
            hanging.append((rest_h, rest_p))
        forced_h = hl[v]
        forced_p = pl[v]
        for ph, pp in hanging:
            share = forced_share(ph, rules)
            forced_h += share
            if share == ph:  # the whole piece must join
                forced_p += pp
        if forced_h > rules.max_households or forced_p > rules.max_people:
            root = root_of[v]
            if root not in members_cache:
                members_cache[root] = {i for i in range(n) if root_of[i] == root}
            parts = pieces(adj, members_cache[root] - {v})
            forced_units: list[int] = [v]
            detail = []
            for part in parts:
                ph = int(h[part].sum())
                share = forced_share(ph, rules)
                if share:
                    forced_units.extend(part if share == ph else [])
                    detail.append(f"{len(part)} unit(s) with {ph} households ({share} must join)")
            out.append(
                Finding(
                    "bottleneck",
                    f"{name(v)} is the only link (瓶颈) to pieces too small to stand alone: "
                    f"{'; '.join(detail)}; with {name(v)}'s own {hl[v]} households they need "
                    f"{forced_h} households / {forced_p} people in one grid, above {rules.max_households} / {rules.max_people}",
                    sorted(set(forced_units)),
                    {"cut_unit": v, "forced_households": forced_h, "forced_people": forced_p},
                )
            )
    return out
