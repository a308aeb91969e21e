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

import heapq
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
    #: units whose people count is an estimate (households × household size: no resident records)
    people_estimated: int = 0
    #: what the reader must know besides the findings (estimates, the bound that caps a grid, a
    #: search stopped early), each "中文 English"
    notes: list[str] = field(default_factory=list)
    #: units the stranded check could not decide within its budget (neither reported nor cleared)
    unchecked: list[int] = field(default_factory=list)

    def summary(self) -> str:
        if self.feasible:
            head = (
                f"可行 feasible so far: {self.households} households, {self.people} people → "
                f"{self.k_min}–{self.k_max} grids"
            )
        else:
            head = "不可行 infeasible: " + "; ".join(f.message for f in self.findings)
        return "; ".join([head, *self.notes])


def _zh_en(zh: str, en: str) -> str:
    return f"{zh} {en}"


def household_cap(rules: GridRules) -> int:
    """Households one grid can hold when every person is estimated at ``rules.household_size`` per
    household: the people maximum expressed in households (at most the household maximum)."""
    if rules.household_size <= 0:
        return rules.max_households
    return min(rules.max_households, int(math.floor(rules.max_people / rules.household_size)))


def against_maxima(h: int, p: int, rules: GridRules, *, estimated: bool) -> tuple[str, str, list[str]]:
    """``h`` households and ``p`` people each compared with its own maximum, and the bounds broken
    (["households"], ["people"], both or none): so that 410 households over the people maximum is
    not read as 410 above 500. Returns (中文, English, broken)."""
    hi, hp = rules.max_households, rules.max_people
    broken = [b for b, over in (("households", h > hi), ("people", p > hp)) if over]
    est_zh = f"，人数按每户 {rules.household_size:g} 人估算" if estimated else ""
    est_en = f", people estimated at {rules.household_size:g} per household" if estimated else ""
    zh = f"{h} 户（{'超过' if h > hi else '未超'}户数上限 {hi}）、{p} 人（{'超过' if p > hp else '未超'}人数上限 {hp}{est_zh}）"
    en = (
        f"{h} households ({'>' if h > hi else '≤'} the household maximum {hi}) and {p} people "
        f"({'>' if p > hp else '≤'} the people maximum {hp}{est_en})"
    )
    if broken:
        which_zh = "、".join({"households": "户数上限", "people": "人数上限"}[b] for b in broken)
        zh += f"：起作用的是{which_zh}"
        en += f": the {' and '.join(broken)} bound{'s' if len(broken) > 1 else ''} bind{'' if len(broken) > 1 else 's'}"
    return zh, en, broken


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
    people_estimated: np.ndarray | None = None,
) -> Feasibility:
    """Run all feasibility checks on a unit graph. ``people_estimated`` marks the units whose people
    count is households × ``rules.household_size`` (no resident records): findings and notes then say
    the counts are estimates and how far the people maximum caps a grid."""
    h = np.asarray(households, dtype=np.int64)
    p = np.asarray(people, dtype=np.int64)
    n = graph.n
    est = np.zeros(n, bool) if people_estimated is None else np.asarray(people_estimated, bool)
    name: Callable[[int], str] = (lambda u: str(codes[u])) if codes is not None else (lambda u: f"unit {u}")
    H, P = int(h.sum()), int(p.sum())
    kmin, kmax = k_range(H, P, rules)
    lo, hi, hp = rules.min_households, rules.max_households, rules.max_people
    any_est = bool(est.any())
    findings: list[Finding] = []
    notes: list[str] = []
    if any_est:
        cap = household_cap(rules)
        zh = f"{int(est.sum())}/{n} 个单元无居民记录，人数按每户 {rules.household_size:g} 人估算"
        en = (
            f"people are estimated for {int(est.sum())} of {n} unit(s) (no resident records): "
            f"households × {rules.household_size:g}"
        )
        if cap < hi:
            zh += f"；估算人数下，人数上限 {hp} 人使每个网格最多约 {cap} 户（低于户数上限 {hi} 户）"
            en += f"; with estimated people the people maximum {hp} caps a grid at about {cap} households, below the household maximum {hi}"
        notes.append(_zh_en(zh, en))
    if kmin > kmax:
        k_h = math.ceil(H / hi) if hi else 0
        k_p = math.ceil(P / hp) if hp else 0
        binding = "people" if k_p > k_h else "households"
        est_zh = "（人数为估算）" if any_est else ""
        est_en = " (people estimated)" if any_est else ""
        findings.append(
            Finding(
                "count_range",
                _zh_en(
                    f"{H} 户、{P} 人{est_zh}无法分成每格 {lo}–{hi} 户且不超过 {hp} 人的网格："
                    f"按户数至少需要 {k_h} 个网格，按人数至少需要 {k_p} 个，"
                    f"但每格至少 {lo} 户时最多只能分 {kmax} 个网格（起作用的是"
                    f"{'人数上限' if binding == 'people' else '户数上限'}）",
                    f"{H} households / {P} people{est_en} cannot form grids of {lo}–{hi} households and ≤ {hp} "
                    f"people: the {binding} bound needs at least {kmin} grids ({k_h} for households, {k_p} for "
                    f"people) but at most {kmax} grids of ≥ {lo} households fit",
                ),
                list(range(n)),
                {
                    "households": H,
                    "people": P,
                    "k_min": kmin,
                    "k_max": kmax,
                    "k_min_households": k_h,
                    "k_min_people": k_p,
                    "binding": binding,
                    "people_estimated": any_est,
                },
            )
        )
    over = np.flatnonzero((h > hi) | (p > hp))
    for u in over.tolist():
        zh, en, broken = against_maxima(int(h[u]), int(p[u]), rules, estimated=bool(est[u]))
        findings.append(
            Finding(
                "unit_over_max",
                _zh_en(f"单元单独就有 {zh}，一个网格容纳不下", f"{name(u)} alone has {en}: no grid can hold it"),
                [int(u)],
                {
                    "households": int(h[u]),
                    "people": int(p[u]),
                    "binding": broken,
                    "people_estimated": bool(est[u]),
                },
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
                small = hc < lo
                findings.append(
                    Finding(
                        "piece_infeasible",
                        _zh_en(
                            f"{len(members)} 个单元自成一块（飞地，与其余部分不相邻），共 {hc} 户、{pc} 人："
                            + (
                                f"低于下限 {lo} 户，不能单独成格，并入别的网格又会使该网格不连续"
                                if small
                                else f"无法分成每格 {lo}–{hi} 户、不超过 {hp} 人的网格"
                            ),
                            f"{len(members)} unit(s) ({', '.join(name(u) for u in members[:5])}"
                            f"{' …' if len(members) > 5 else ''}) form a separate piece (not adjacent to the rest) "
                            f"of {hc} households / {pc} people: "
                            + (
                                f"below the minimum {lo}, so it cannot be a grid and joining another "
                                f"grid would make that grid non-contiguous"
                                if small
                                else f"it cannot be divided into grids of {lo}–{hi} households and ≤ {hp} people"
                            ),
                        ),
                        [int(u) for u in members],
                        {"households": hc, "people": pc, "k_min": a, "k_max": b},
                    )
                )
        if kmin <= kmax and sum_min > sum_max:
            findings.append(
                Finding(
                    "count_range",
                    _zh_en(
                        f"各块分别成格共需至少 {sum_min} 个网格，但户数最多只够 {sum_max} 个",
                        f"separate pieces together need at least {sum_min} grids but their households allow at "
                        f"most {sum_max}",
                    ),
                    list(range(n)),
                    {"k_min": sum_min, "k_max": sum_max},
                )
            )
    unchecked: list[int] = []
    if not allow_multipart and n:
        findings.extend(_bottlenecks(graph, h, p, rules, name, est))
        findings.extend(_stranded(graph, h, p, rules, name, unchecked=unchecked))
    if unchecked:
        notes.append(
            _zh_en(
                f"有 {len(unchecked)} 个单元在搜索预算内未能判定是否无法并入网格（未报告为问题，也未确认无问题）",
                f"the stranded check stopped early (search budget) for {len(unchecked)} unit(s): "
                f"{', '.join(name(u) for u in unchecked[:5])}{' …' if len(unchecked) > 5 else ''} "
                f"(neither reported nor cleared)",
            )
        )
    return Feasibility(not findings, kmin, kmax, H, P, findings, comp, int(est.sum()), notes, unchecked)


#: search budget of the exact stranded check: nodes per unit and in all (a node = one connected set
#: tried). Each unit is first decided in polynomial time (greedy growth, reachable total); only the
#: rare unit neither settles is searched, and units left when a budget runs out are reported as
#: unchecked (``Feasibility.unchecked``), never as stranded or as fine.
STRANDED_UNIT_BUDGET = 20_000
STRANDED_TOTAL_BUDGET = 200_000


def _stranded(
    graph: Graph,
    h: np.ndarray,
    p: np.ndarray,
    rules: GridRules,
    name: Callable[[int], str],
    *,
    unit_budget: int = STRANDED_UNIT_BUDGET,
    total_budget: int = STRANDED_TOTAL_BUDGET,
    unchecked: list[int] | None = None,
) -> list[Finding]:
    """Units below the minimum that no connected group of units containing them can bring into the
    bounds (every way to grow them overshoots a maximum).

    A unit u is fine when some connected set S ∋ u has min ≤ households(S) ≤ max and people(S) ≤
    max people. Decided in order: (1) greedy growth from u, smallest neighbour first, that reaches
    the minimum (every unit of the set found is then fine too); (2) the units u can reach through
    units small enough to join it hold fewer than the minimum in all: stranded; (3) an exact
    include/exclude search over connected sets, bounded by ``unit_budget`` / ``total_budget``
    nodes. Units still undecided are appended to ``unchecked``."""
    adj = graph.adj()
    lo, hi, hp = rules.min_households, rules.max_households, rules.max_people
    hl, pl = h.tolist(), p.tolist()
    n = graph.n
    todo = [u for u in range(n) if not (hl[u] >= lo or hl[u] > hi or pl[u] > hp)]
    fine = [False] * n
    stranded: list[int] = []
    spent = 0
    masks: list[int] | None = None
    for u in todo:
        if fine[u]:
            continue
        found = _grow_greedy(adj, hl, pl, u, lo, hi, hp)
        if found is not None:
            for v in found:
                fine[v] = True
            continue
        if _reachable_households(adj, hl, pl, u, hi, hp) < lo:
            stranded.append(u)
            continue
        if masks is None:
            masks = _masks(adj)
        budget = min(unit_budget, total_budget - spent)
        verdict, used, witness = _search(masks, hl, pl, u, lo, hi, hp, budget)
        spent += used
        if verdict is True:
            for v in witness:
                fine[v] = True
        elif verdict is False:
            stranded.append(u)
        elif unchecked is not None:
            unchecked.append(u)
    out = []
    for u in sorted(stranded):
        nbrs = ", ".join(f"{name(v)} ({hl[v]} households / {pl[v]} people)" for v in adj[u][:6]) or "none"
        out.append(
            Finding(
                "stranded",
                _zh_en(
                    f"单元有 {hl[u]} 户、{pl[u]} 人，低于下限 {lo} 户，且与相邻单元组成的任何连片都会超过 {hi} 户"
                    f"或 {hp} 人（夹心）",
                    f"{name(u)} has {hl[u]} households / {pl[u]} people, below the minimum {lo}, and cannot join "
                    f"its neighbours without exceeding {hi} households or {hp} people (neighbours: {nbrs})",
                ),
                [u, *adj[u]],
                {"households": hl[u], "people": pl[u]},
            )
        )
    return out


def _grow_greedy(
    adj: list[list[int]], hl: list[int], pl: list[int], u: int, lo: int, hi: int, hp: int
) -> list[int] | None:
    """Grow a connected set from ``u``, always adding the frontier unit with the fewest households
    (then people, then index) that still fits; the set once it reaches ``lo`` households, else None."""
    sh, sp = hl[u], pl[u]
    members = [u]
    inset = {u}
    heap: list[tuple[int, int, int]] = []
    queued = {u}
    for v in adj[u]:
        if v not in queued:
            queued.add(v)
            heapq.heappush(heap, (hl[v], pl[v], v))
    while heap:
        hv, pv, v = heapq.heappop(heap)
        if sh + hv > hi or sp + pv > hp:
            continue  # sums only grow: v never fits later either
        sh, sp = sh + hv, sp + pv
        members.append(v)
        inset.add(v)
        if sh >= lo:
            return members
        for w in adj[v]:
            if w not in queued:
                queued.add(w)
                heapq.heappush(heap, (hl[w], pl[w], w))
    return None


def _reachable_households(adj: list[list[int]], hl: list[int], pl: list[int], u: int, hi: int, hp: int) -> int:
    """Households of the units reachable from ``u`` through units that could each join it alone
    (an upper bound on any connected set around ``u`` within the maxima)."""
    room_h, room_p = hi - hl[u], hp - pl[u]
    seen = {u}
    stack = [u]
    total = hl[u]
    while stack:
        x = stack.pop()
        for v in adj[x]:
            if v not in seen and hl[v] <= room_h and pl[v] <= room_p:
                seen.add(v)
                total += hl[v]
                stack.append(v)
    return total


def _masks(adj: list[list[int]]) -> list[int]:
    """Neighbourhood bitmask of every unit."""
    out = []
    for nb in adj:
        m = 0
        for w in nb:
            m |= 1 << w
        out.append(m)
    return out


def _search(
    nbr: list[int], hl: list[int], pl: list[int], u: int, lo: int, hi: int, hp: int, budget: int
) -> tuple[bool | None, int, list[int]]:
    """Exact search for a connected set around ``u`` within the bounds: include/exclude branching on
    frontier units, so each connected set is visited once (bitmasks as Python ints). Returns
    (True + the set, False, or None when ``budget`` nodes ran out), and the nodes used."""
    stack = [(1 << u, 0, nbr[u], hl[u], pl[u])]  # (set, excluded, neighbourhood, households, people)
    nodes = 0
    while stack:
        if nodes >= budget:
            return None, nodes, []
        nodes += 1
        s, x, ns, sh, sp = stack.pop()
        front = ns & ~s & ~x
        pick = -1
        best = -1
        while front:
            b = front & -front
            front ^= b
            v = b.bit_length() - 1
            nh, np_ = sh + hl[v], sp + pl[v]
            if nh > hi or np_ > hp:
                x |= b  # never fits in any larger set either
                continue
            if nh >= lo:
                members = [i for i in range(len(nbr)) if (s | b) >> i & 1]
                return True, nodes, members
            if hl[v] > best:
                pick, best = v, hl[v]
        if pick < 0:
            continue
        b = 1 << pick
        stack.append((s, x | b, ns, sh, sp))  # without pick
        stack.append((s | b, x, ns | nbr[pick], sh + hl[pick], sp + pl[pick]))  # with pick (tried first)
    return False, nodes, []


def _bottlenecks(
    graph: Graph,
    h: np.ndarray,
    p: np.ndarray,
    rules: GridRules,
    name: Callable[[int], str],
    estimated: np.ndarray | None = None,
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
            est = bool(estimated is not None and len(forced_units) and np.asarray(estimated)[forced_units].any())
            zh, en, broken = against_maxima(forced_h, forced_p, rules, estimated=est)
            out.append(
                Finding(
                    "bottleneck",
                    _zh_en(
                        f"该单元是通往若干过小单元块的唯一连接（瓶颈），这些块不能单独成格，"
                        f"连同它自身的 {hl[v]} 户必须同在一个网格，共 {zh}",
                        f"{name(v)} is the only link (bottleneck) to pieces too small to stand alone: "
                        f"{'; '.join(detail)}; with {name(v)}'s own {hl[v]} households one grid would need {en}",
                    ),
                    sorted(set(forced_units)),
                    {
                        "cut_unit": v,
                        "forced_households": forced_h,
                        "forced_people": forced_p,
                        "binding": broken,
                        "people_estimated": est,
                    },
                )
            )
    return out
