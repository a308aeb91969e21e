"""Exact partition with OR-Tools CP-SAT: every unit in one grid, household/people bounds, contiguity
by a rooted spanning forest (each non-root unit points to a neighbour of its grid with a smaller
depth; each grid has exactly one root), minimum total boundary (cut weight).

Two modes share the model:
- *propose*: grids are anonymous; symmetry broken by numbering grids in order of their smallest unit
  (the root), so optimality can be proven on small communities;
- *repair*: grids keep their identity (labels of an existing plan), moving a building costs.
Bounds can be hard or *soft* (closest plan: fewest rule breaks, then the least excess). With
``lexicographic=True`` the soft objective is strictly ordered as the closest plan is defined
(``gisgov.gridding.propose.Closeness``): a rule break (a bound broken by a grid, or a group split)
outweighs any excess, a unit of excess outweighs the whole boundary length (see :func:`lex_weights`).
Reproducible when a seed is given (the default): one worker, budget in deterministic seconds
(``max_deterministic_time``), the wall clock only a safety net that the result reports if it ever
stops the search. ``seed=None`` runs the parallel portfolio (≤ 2 workers), which differs run to run.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

from gisgov.gridding.graph import Graph
from gisgov.gridding.rules import GridRules

W_VIOL = 100_000_000
W_SPLIT = 1_000_000
W_DEV = 1_000


def lex_weights(
    graph: Graph, households: np.ndarray, people: np.ndarray, rules: GridRules, k_max: int
) -> tuple[int, int]:
    """Weights (per break, per unit of excess) that make the soft objective strictly lexicographic:
    breaks, then excess, then boundary. A unit of excess costs more than every boundary edge cut at
    once; a break more than the largest possible excess (``k_max`` grids each at most the minimum
    under, every household over, every person over) plus the whole boundary."""
    w_dev = sum(_weights(graph)) + 1
    max_dev = int(k_max) * int(rules.min_households) + int(np.sum(households)) + int(np.sum(people))
    return w_dev * (max_dev + 1), w_dev


@dataclass
class ExactResult:
    labels: np.ndarray | None
    status: str  # OPTIMAL | FEASIBLE | INFEASIBLE | UNKNOWN | MODEL_INVALID
    optimal: bool
    objective: float | None
    bound: float | None
    wall_s: float
    deterministic_s: float
    #: how the solver ran: "deterministic (1 worker, seed S, D deterministic s)" or "parallel (…)"
    mode: str = ""
    #: the same inputs and seed give the same answer (False in parallel mode, or when the wall-clock
    #: safety net stopped a deterministic run)
    reproducible: bool = False

    @property
    def gap(self) -> float | None:
        if self.objective is None or self.bound is None or self.objective == 0:
            return None
        return max(0.0, (self.objective - self.bound) / abs(self.objective))


def _weights(graph: Graph) -> list[int]:
    """Integer cut costs (metres, at least 1 so every boundary counts)."""
    return [max(1, int(round(w))) for w in graph.weight.tolist()]


def _params(time_limit_s: float, workers: int, seed: int | None) -> tuple[cp_model.CpSolver, str]:
    """Solver parameters and a description of the mode.

    With a seed: one worker and a deterministic-time budget, so a run is reproducible bit for bit
    (two workers in parallel share solutions at moments that depend on the machine's load, and a
    wall-clock cap stops them at different points: two seed-0 runs differed in 42 buildings).
    Without a seed: a parallel portfolio of ≤ 2 workers (the machines are shared)."""
    solver = cp_model.CpSolver()
    prm = solver.parameters
    prm.max_deterministic_time = float(time_limit_s)
    # a safety net only: a deterministic run it stops is reported as not reproducible
    prm.max_time_in_seconds = float(time_limit_s) * 4 + 5
    if seed is not None:
        prm.num_workers = 1
        prm.random_seed = int(seed)
        return solver, f"deterministic (1 worker, seed {seed}, {float(time_limit_s):g} deterministic s)"
    prm.num_workers = max(1, min(2, workers))
    return solver, f"parallel ({prm.num_workers} worker(s), not reproducible)"


class _PartitionModel:
    """The CP-SAT partition model, built in named steps (in this order: the variables are created
    in the same order whatever the mode, which keeps a one-worker run reproducible)."""

    def __init__(
        self,
        graph: Graph,
        households: np.ndarray,
        people: np.ndarray,
        rules: GridRules,
        *,
        k_max: int,
        current: np.ndarray | None,
        candidates: list[list[int]] | None,
    ) -> None:
        self.graph = graph
        self.rules = rules
        self.n = n = graph.n
        self.h = [int(x) for x in households]
        self.p = [int(x) for x in people]
        self.K = K = int(k_max)
        self.m = cp_model.CpModel()
        self.current = current
        self.repair = repair = current is not None
        if candidates is None:
            candidates = [list(range(min(i + 1, K))) if not repair else list(range(K)) for i in range(n)]
        self.x: list[dict[int, cp_model.IntVar]] = [
            {k: self.m.new_bool_var(f"x{i}_{k}") for k in candidates[i]} for i in range(n)
        ]
        for i in range(n):
            self.m.add_exactly_one(self.x[i].values())
        self.members: list[list[int]] = [[] for _ in range(K)]
        for i in range(n):
            for k in self.x[i]:
                self.members[k].append(i)
        self.used: list[cp_model.IntVar] = []
        self.root_of: list[dict[int, Any]] = [dict() for _ in range(n)]
        self.cut: list[cp_model.IntVar] = []
        self.depth: list[cp_model.IntVar] = []
        self.arcs: dict[tuple[int, int], cp_model.IntVar] = {}
        self.viol: list[cp_model.IntVar] = []
        self.dev: list[cp_model.IntVar] = []
        self.splits: list[cp_model.IntVar] = []

    def add_roots(self, k_min: int) -> None:
        """Grid used + one root per used grid; at least ``k_min`` grids."""
        m, K = self.m, self.K
        self.used = [m.new_bool_var(f"used{k}") for k in range(K)]
        if not self.repair:
            self._ordered_roots()
        else:
            self._kept_roots()
        m.add(sum(self.used) >= k_min)

    def _ordered_roots(self) -> None:
        """Propose mode: the root of a grid is its smallest unit; grids numbered in root order."""
        m, K, x, used, root_of = self.m, self.K, self.x, self.used, self.root_of
        # prefix-or m[i][k]: grid k has a unit with index <= i; the root of grid k is its smallest unit
        prev: list[Any] = [0] * K
        for i in range(self.n):
            last = list(prev)  # row i-1
            for k in range(K):
                if k in x[i]:
                    cur = m.new_bool_var(f"m{i}_{k}")
                    m.add(cur >= x[i][k])
                    if not isinstance(last[k], int):
                        m.add(cur >= last[k])
                        m.add(cur <= last[k] + x[i][k])
                        root_of[i][k] = cur - last[k]
                    else:
                        m.add(cur <= x[i][k])
                        root_of[i][k] = cur
                    # ordering: grid k+1 may start at i only if grid k started before i
                    if k >= 1:
                        before = last[k - 1]
                        if isinstance(before, int):
                            m.add(cur == 0)
                        else:
                            m.add(cur <= before)
                    prev[k] = cur
        for k in range(K):
            if isinstance(prev[k], int):
                m.add(used[k] == 0)
            else:
                m.add(used[k] == prev[k])
        for k in range(K - 1):
            m.add(used[k] >= used[k + 1])

    def _kept_roots(self) -> None:
        """Repair mode: grids keep their labels; any member may be the root."""
        m, x, used = self.m, self.x, self.used
        for k in range(self.K):
            rs = []
            for i in self.members[k]:
                r = m.new_bool_var(f"r{i}_{k}")
                m.add_implication(r, x[i][k])
                self.root_of[i][k] = r
                rs.append(r)
            m.add(sum(rs) == used[k])
            for i in self.members[k]:
                m.add_implication(x[i][k], used[k])

    def add_cuts(self) -> None:
        """One variable per edge: set when its two units are in different grids."""
        m, x = self.m, self.x
        for e, (i, j) in enumerate(zip(self.graph.ei.tolist(), self.graph.ej.tolist(), strict=False)):
            c = m.new_bool_var(f"c{e}")
            for k in set(x[i]) | set(x[j]):
                xi = x[i].get(k, 0)
                xj = x[j].get(k, 0)
                if isinstance(xi, int) and isinstance(xj, int):
                    continue
                m.add(c >= xi - xj)
                m.add(c >= xj - xi)
            self.cut.append(c)

    def add_contiguity(self) -> None:
        """Parent arcs within a grid, depth strictly decreasing towards the root."""
        m, n = self.m, self.n
        adj: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        for e, (i, j) in enumerate(zip(self.graph.ei.tolist(), self.graph.ej.tolist(), strict=False)):
            adj[i].append((j, e))
            adj[j].append((i, e))
        self.depth = depth = [m.new_int_var(0, max(0, n - 1), f"d{i}") for i in range(n)]
        for i in range(n):
            out = []
            for j, e in adj[i]:
                a = m.new_bool_var(f"a{i}_{j}")
                self.arcs[(i, j)] = a
                m.add_implication(a, self.cut[e].Not())
                m.add(depth[i] >= depth[j] + 1).only_enforce_if(a)
                out.append(a)
            m.add(sum(out) + sum(self.root_of[i].values()) == 1)

    def add_bounds(self, soft: bool) -> None:
        """Household and people bounds per used grid: hard, or soft (a break and its excess counted)."""
        m, x, h, p, rules, used = self.m, self.x, self.h, self.p, self.rules, self.used
        for k in range(self.K):
            members = self.members[k]
            hs = sum(h[i] * x[i][k] for i in members) if members else 0
            ps = sum(p[i] * x[i][k] for i in members) if members else 0
            if not soft:
                m.add(hs >= rules.min_households * used[k])
                m.add(hs <= rules.max_households * used[k])
                m.add(ps <= rules.max_people * used[k])
                continue
            under = m.new_int_var(0, rules.min_households, f"under{k}")
            over = m.new_int_var(0, max(sum(h), 1), f"over{k}")
            pover = m.new_int_var(0, max(sum(p), 1), f"pover{k}")
            m.add(hs + under >= rules.min_households * used[k])
            m.add(hs - over <= rules.max_households * used[k])
            m.add(ps - pover <= rules.max_people * used[k])
            for v, big, nm in (
                (under, rules.min_households, "vu"),
                (over, max(sum(h), 1), "vo"),
                (pover, max(sum(p), 1), "vp"),
            ):
                b = m.new_bool_var(f"{nm}{k}")
                m.add(v <= big * b)
                self.viol.append(b)
                self.dev.append(v)

    def add_groups(self, groups: list[list[int]] | None) -> None:
        """Groups kept together softly (compounds when buildings are the units): one break per split group."""
        m, x = self.m, self.x
        for gi, grp in enumerate(groups or []):
            if len(grp) < 2:
                continue
            ks = sorted(set().union(*(set(x[i]) for i in grp)))
            ys = []
            for k in ks:
                y = m.new_bool_var(f"y{gi}_{k}")
                for i in grp:
                    if k in x[i]:
                        m.add_implication(x[i][k], y)
                ys.append(y)
            s_ = m.new_bool_var(f"split{gi}")
            m.add(sum(ys) <= 1 + len(ks) * s_)
            self.splits.append(s_)

    def set_objective(self, soft: bool, move_cost: np.ndarray | None, lexicographic: bool = False) -> None:
        """Minimise rule breaks and excess (soft), split groups, buildings moved (repair), then the
        boundary length. ``lexicographic`` (propose mode, soft): breaks (bounds and split groups alike),
        then excess, then boundary, with weights from :func:`lex_weights`."""
        w = _weights(self.graph)
        viol, dev, x = self.viol, self.dev, self.x
        obj: Any = sum(wi * c for wi, c in zip(w, self.cut, strict=False))
        if lexicographic:
            w_break, w_dev = lex_weights(self.graph, np.array(self.h), np.array(self.p), self.rules, self.K)
            self.m.minimize(w_break * (sum(viol) + sum(self.splits)) + w_dev * sum(dev) + obj)
            return
        if soft:
            obj = W_VIOL * sum(viol) + W_DEV * sum(dev) + obj
        if self.splits:
            obj = W_SPLIT * sum(self.splits) + obj
        if self.current is not None and move_cost is not None:
            current = self.current
            mc = [int(round(c)) for c in move_cost]
            moved: list[Any] = []
            for i in range(self.n):
                ci = int(current[i])
                if ci >= 0 and mc[i] > 0:
                    stay = x[i].get(ci)
                    moved.append(mc[i] * (1 - stay) if stay is not None else mc[i])
            if moved:
                big = sum(w) + 1
                obj = (
                    (W_VIOL * sum(viol) + W_DEV * sum(dev) if soft else 0)
                    + big * sum(moved)
                    + sum(wi * c for wi, c in zip(w, self.cut, strict=False))
                )
        self.m.minimize(obj)

    def add_hint(self, hint: np.ndarray) -> None:
        _add_hint(self.m, self.graph, hint, self.x, self.cut, self.arcs, self.depth, self.repair)

    def run(self, time_limit_s: float, workers: int, seed: int | None) -> ExactResult:
        solver, mode = _params(time_limit_s, workers, seed)
        status = solver.solve(self.m)
        wall_cut = solver.wall_time >= solver.parameters.max_time_in_seconds * 0.99
        reproducible = seed is not None and not (
            wall_cut and status not in (cp_model.OPTIMAL, cp_model.INFEASIBLE, cp_model.MODEL_INVALID)
        )
        if seed is not None and not reproducible:
            mode += "; stopped by the wall-clock safety net, so not reproducible"
        name = solver.status_name(status)
        labels = None
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            x = self.x
            labels = np.array(
                [next(k for k, v in x[i].items() if solver.boolean_value(v)) for i in range(self.n)], dtype=np.int64
            )
        return ExactResult(
            labels,
            name,
            status == cp_model.OPTIMAL,
            solver.objective_value if labels is not None else None,
            solver.best_objective_bound if labels is not None else None,
            solver.wall_time,
            solver.deterministic_time if hasattr(solver, "deterministic_time") else 0.0,
            mode,
            reproducible,
        )


def solve(
    graph: Graph,
    households: np.ndarray,
    people: np.ndarray,
    rules: GridRules,
    *,
    k_max: int,
    k_min: int = 1,
    hint: np.ndarray | None = None,
    soft: bool = False,
    current: np.ndarray | None = None,
    move_cost: np.ndarray | None = None,
    candidates: list[list[int]] | None = None,
    groups: list[list[int]] | None = None,
    time_limit_s: float = 10.0,
    workers: int = 2,
    seed: int | None = 0,
    lexicographic: bool = False,
) -> ExactResult:
    """Solve the partition model.

    Propose mode when ``current`` is None (anonymous grids, ``k_min``..``k_max`` of them).
    Repair mode when ``current`` gives an existing label per unit (-1 = unassigned): labels 0..k_max-1
    keep their identity, ``candidates[i]`` restricts the labels unit i may take, and moving unit i off
    its current label costs ``move_cost[i]`` (buildings moved).

    With a ``seed`` (the default 0) the run is deterministic (one worker, deterministic time: see
    ``ExactResult.mode``/``reproducible``) and ``workers`` is not used; ``seed=None`` runs ``workers``
    (≤ 2) in parallel. ``lexicographic`` (with ``soft``, propose mode): the closest-plan objective
    (breaks, bounds and split ``groups`` counted alike, then excess, then boundary; see
    :func:`lex_weights`)."""
    if lexicographic and (not soft or current is not None):
        raise ValueError("lexicographic applies to the soft propose model only")
    model = _PartitionModel(graph, households, people, rules, k_max=k_max, current=current, candidates=candidates)
    model.add_roots(k_min)
    model.add_cuts()
    model.add_contiguity()
    model.add_bounds(soft)
    model.add_groups(groups)
    model.set_objective(soft, move_cost, lexicographic)
    if hint is not None:
        model.add_hint(hint)
    return model.run(time_limit_s, workers, seed)


def canonical(labels: np.ndarray) -> np.ndarray:
    """Relabel grids in order of their smallest unit (the propose model's symmetry breaking)."""
    out = np.empty_like(labels)
    seen: dict[int, int] = {}
    for i, g in enumerate(labels.tolist()):
        out[i] = seen.setdefault(g, len(seen))
    return out


def _add_hint(
    m: cp_model.CpModel,
    graph: Graph,
    hint: np.ndarray,
    x: list[dict[int, cp_model.IntVar]],
    cut: list[cp_model.IntVar],
    arcs: dict[tuple[int, int], cp_model.IntVar],
    depth: list[cp_model.IntVar],
    repair: bool,
) -> None:
    lab = np.asarray(hint) if repair else canonical(np.asarray(hint))
    n = graph.n
    for i in range(n):
        for k, v in x[i].items():
            m.add_hint(v, int(lab[i] == k))
    for e, (i, j) in enumerate(zip(graph.ei.tolist(), graph.ej.tolist(), strict=False)):
        m.add_hint(cut[e], int(lab[i] != lab[j]))
    adj = graph.adj()
    d = [-1] * n
    parent = [-1] * n
    for i in range(n):  # BFS from each grid's smallest unit
        if d[i] >= 0:
            continue
        d[i] = 0
        dq = deque([i])
        while dq:
            u = dq.popleft()
            for w in adj[u]:
                if d[w] < 0 and lab[w] == lab[u]:
                    d[w] = d[u] + 1
                    parent[w] = u
                    dq.append(w)
    for (i, j), a in arcs.items():
        m.add_hint(a, int(parent[i] == j))
    for i in range(n):
        m.add_hint(depth[i], d[i])
