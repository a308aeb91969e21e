"""Fast heuristic partition: recursive spanning-tree bipartition with household/people bands, then a
local search that moves boundary units to shorten grid boundaries (compactness) while keeping every
grid within bounds and contiguous.

Deterministic for a seed: every budget is counted in trees and moves, never in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import depth_first_order, minimum_spanning_tree

from gisgov.gridding.feasibility import k_range
from gisgov.gridding.graph import Graph, is_connected
from gisgov.gridding.rules import GridRules

# objective weights: rule breaks ≫ households outside the band ≫ buildings moved ≫ boundary metres
W_VIOL = 1e12
W_DEV = 1e8
W_MOVE = 1e6


_Orients = tuple[tuple[int, int], ...]


@dataclass
class SplitStats:
    trees: int = 0
    soft: bool = False


def _kruskal_dfs(n: int, a: list[int], b: list[int], order_e: list[int]) -> tuple[list[int], list[int]]:
    """Minimum spanning tree (Kruskal, union-find; edges taken in ``order_e``) of a small graph, as DFS
    preorder + predecessors (the same output as scipy's depth_first_order, without sparse-matrix
    overhead). The preorder is shorter than ``n`` when the graph is disconnected."""
    uf = list(range(n))
    tree: list[list[int]] = [[] for _ in range(n)]
    got = 0
    for e in order_e:
        x = a[e]
        while uf[x] != x:
            uf[x] = uf[uf[x]]
            x = uf[x]
        y = b[e]
        while uf[y] != y:
            uf[y] = uf[uf[y]]
            y = uf[y]
        if x != y:
            uf[x] = y
            tree[a[e]].append(b[e])
            tree[b[e]].append(a[e])
            got += 1
            if got == n - 1:
                break
    pred = [-9999] * n
    order = []
    seen = [False] * n
    stack = [0]
    while stack:
        u = stack.pop()
        if seen[u]:
            continue
        seen[u] = True
        order.append(u)
        for v in reversed(tree[u]):
            if not seen[v]:
                pred[v] = u
                stack.append(v)
    return order, pred


#: pieces up to this many units are scored in plain Python, larger ones with numpy
SMALL_PIECE = 64


def _best_k1(hs: float, ps: float, ks: list[tuple[Any, ...]], k_default: int) -> tuple[int, float]:
    """``_Splitter.best_k`` for one candidate: ``ks`` = (k, k·max households, k·max people,
    k·min households) in preference order. Plain comparisons rather than min()/max() calls: this runs
    tens of thousands of times per partition."""
    best_s, best_k = -math.inf, k_default
    for k, cap_h, cap_p, need_h in ks:
        s = 1 - hs / cap_h
        t = 1 - ps / cap_p
        if t < s:
            s = t
        if need_h:
            t = 1 - need_h / (hs if hs > 1e-9 else 1e-9)
            if t < s:
                s = t
        if s > best_s + 1e-12:
            best_s, best_k = s, k
    return best_k, best_s


@dataclass(slots=True)
class _Cut:
    """A candidate cut of a piece: side A = preorder[lo:hi] (one subtree of the spanning tree)."""

    neg_slack: float
    preorder: list[int]
    lo: int
    hi: int
    ka: int
    kb: int
    edges: tuple[Any, ...]  # (preorder rank of each edge end a, of end b, edge weights) of the piece
    _cut: float | None = None

    def cut(self) -> float:
        """Boundary length of the cut (computed on demand: only near-best candidates need it)."""
        if self._cut is None:
            ta, tb, ew = self.edges
            lo, hi = self.lo, self.hi
            if isinstance(ew, list):
                self._cut = float(
                    sum(w for x, y, w in zip(ta, tb, ew, strict=False) if (lo <= x < hi) != (lo <= y < hi))
                )
            else:
                self._cut = float(ew[((ta >= lo) & (ta < hi)) != ((tb >= lo) & (tb < hi))].sum())
        return self._cut

    def mask(self, n: int) -> np.ndarray:
        m = np.zeros(n, dtype=bool)
        m[self.preorder[self.lo : self.hi]] = True
        return m


class _Splitter:
    def __init__(
        self,
        graph: Graph,
        h: np.ndarray,
        p: np.ndarray,
        rules: GridRules,
        rng: np.random.Generator,
        *,
        trees_per_split: int = 4,
        attempts: int = 6,
        max_trees: int = 4000,
    ):
        self.g = graph
        self.h = h.astype(float)
        self.p = p.astype(float)
        self.r = rules
        self.rng = rng
        self.trees_per_split = trees_per_split
        self.attempts = attempts
        self.max_trees = max_trees
        self.backtrack_below = 40
        self.stats = SplitStats()
        self.in_s = np.zeros(graph.n, dtype=bool)
        self.loc = np.zeros(graph.n, dtype=np.int64)
        self.cross = graph.crossing * 1.0

    def slack(self, hs: Any, ps: Any, k: Any) -> Any:
        """Room left on the tightest bound of a piece split into ``k`` grids (< 0 = cannot fit)."""
        r = self.r
        k = np.maximum(k, 1)
        s = np.minimum(1 - hs / (k * r.max_households), 1 - ps / (k * r.max_people))
        if r.min_households:
            s = np.minimum(s, 1 - k * r.min_households / np.maximum(hs, 1e-9))
        return s

    def best_k(self, hs: np.ndarray, ps: np.ndarray | float, k0: int) -> tuple[np.ndarray, np.ndarray]:
        """Per candidate: the grid count near ``k0`` (±1) with the most slack, and that slack."""
        best_s = np.full(len(hs), -np.inf)
        best_k = np.full(len(hs), max(k0, 1), dtype=np.int64)
        for k in (k0, k0 - 1, k0 + 1):
            if k < 1:
                continue
            sl = self.slack(hs, ps, k)
            better = sl > best_s + 1e-12
            best_s = np.where(better, sl, best_s)
            best_k = np.where(better, k, best_k)
        return best_k, best_s

    def _tree(
        self, n: int, a: np.ndarray, b: np.ndarray, al: list[int], bl: list[int], cross: np.ndarray
    ) -> tuple[list[int], list[int]]:
        """A random spanning tree of a piece of ``n`` nodes (local edges ``a``–``b``; barrier-crossing
        edges avoided), as DFS preorder with predecessors."""
        w = self.rng.random(len(a)) + 0.01 + cross
        self.stats.trees += 1
        if n > 300:
            mst = minimum_spanning_tree(coo_matrix((w, (a, b)), shape=(n, n)).tocsr())
            order, pred = depth_first_order(mst, 0, directed=False, return_predecessors=True)
            return order.tolist(), pred.tolist()
        return _kruskal_dfs(n, al, bl, np.argsort(w, kind="stable").tolist())

    def edges_of(self, nodes: np.ndarray, eidx: np.ndarray) -> np.ndarray:
        self.in_s[nodes] = True
        keep = self.in_s[self.g.ei[eidx]] & self.in_s[self.g.ej[eidx]]
        self.in_s[nodes] = False
        kept: np.ndarray = eidx[keep]
        return kept

    def _candidates(self, nodes: np.ndarray, eidx: np.ndarray, k: int, trees: int) -> list[_Cut]:
        """Tree-edge cuts of ``nodes``, best slack first (up to 6 per tree and orientation)."""
        g = self.g
        n = len(nodes)
        self.loc[nodes] = np.arange(n)
        a, b = self.loc[g.ei[eidx]], self.loc[g.ej[eidx]]
        al, bl = a.tolist(), b.tolist()
        cross = self.cross[eidx]
        small = n <= SMALL_PIECE
        ew = g.weight[eidx].tolist() if small else g.weight[eidx]
        hn, pn = self.h[nodes], self.p[nodes]
        H, P = float(hn.sum()), float(pn.sum())
        h0, p0 = hn.tolist(), pn.tolist()
        k1, k2 = k // 2, k - k // 2
        orients = ((k1, k2), (k2, k1)) if k1 != k2 else ((k1, k2),)
        out: list[_Cut] = []
        for _ in range(trees):
            order, pred = self._tree(n, a, b, al, bl, cross)
            if len(order) < n:
                return out
            # subtree sums (households, people, node count) bottom-up along the preorder
            hs, ps, size = h0[:], p0[:], [1] * n
            for i in range(n - 1, 0, -1):
                v = order[i]
                q = pred[v]
                hs[q] += hs[v]
                ps[q] += ps[v]
                size[q] += size[v]
            tin = [0] * n
            for i, v in enumerate(order):
                tin[v] = i
            child = order[1:]
            if small:
                edges: tuple[Any, ...] = ([tin[x] for x in al], [tin[x] for x in bl], ew)
                scored = self._score_small(child, hs, ps, H, P, orients)
            else:
                t = np.array(tin)
                edges = (t[a], t[b], ew)
                scored = self._score_np(child, hs, ps, H, P, orients)
            for sc, c, ka, kb in scored:
                out.append(_Cut(-sc, order, tin[c], tin[c] + size[c], ka, kb, edges))
        out.sort(key=lambda c: c.neg_slack)
        return out

    def _score_np(
        self, child: list[int], hs: list[float], ps: list[float], H: float, P: float, orients: _Orients
    ) -> list[tuple[float, int, int, int]]:
        """(slack, subtree root, kA, kB) of the best cuts per orientation, vectorised (large pieces)."""
        ch = np.array(child)
        sh, sp = np.array(hs)[ch], np.array(ps)[ch]
        res = []
        for ka0, kb0 in orients:
            ka, sa = self.best_k(sh, sp, ka0)
            kb, sb = self.best_k(H - sh, P - sp, kb0)
            score = np.minimum(sa, sb)
            for i in np.argsort(-score, kind="stable")[:6].tolist():
                res.append((float(score[i]), child[i], int(ka[i]), int(kb[i])))
        return res

    def _score_small(
        self, child: list[int], hs: list[float], ps: list[float], H: float, P: float, orients: _Orients
    ) -> list[tuple[float, int, int, int]]:
        """Same as ``_score_np`` in plain Python (numpy call overhead dominates on small pieces)."""
        r = self.r
        res = []
        for ka0, kb0 in orients:
            ks_a = [
                (kk, kk * r.max_households, kk * r.max_people, kk * r.min_households)
                for kk in (ka0, ka0 - 1, ka0 + 1)
                if kk >= 1
            ]
            ks_b = [
                (kk, kk * r.max_households, kk * r.max_people, kk * r.min_households)
                for kk in (kb0, kb0 - 1, kb0 + 1)
                if kk >= 1
            ]
            da, db = max(ka0, 1), max(kb0, 1)
            rows = []
            for c in child:
                ka, sa = _best_k1(hs[c], ps[c], ks_a, da)
                kb, sb = _best_k1(H - hs[c], P - ps[c], ks_b, db)
                rows.append((sa if sa < sb else sb, c, ka, kb))
            rows.sort(key=lambda t: -t[0])
            res += rows[:6]
        return res

    def split(self, nodes: np.ndarray, k: int, eidx: np.ndarray) -> tuple[list[np.ndarray], bool]:
        """Parts of ``nodes`` and whether every part is within the bounds. Strict search first (several
        trees and candidates while the tree budget lasts), else the cut with the most slack."""
        if k <= 1 or len(nodes) == 1:
            r = self.r
            ok = (
                _best_k1(
                    float(self.h[nodes].sum()),
                    float(self.p[nodes].sum()),
                    [(1, r.max_households, r.max_people, r.min_households)],
                    1,
                )[1]
                >= 0
            )
            return [nodes], ok
        fallback = None
        attempts = self.attempts * (3 if len(nodes) < 60 else 1)
        for _ in range(attempts):
            strict = self.stats.trees <= self.max_trees
            cands = self._candidates(nodes, eidx, k, self.trees_per_split if strict else 1)
            if not cands:
                break
            if fallback is None:
                fallback = cands[0]
            if not strict:
                break
            feasible = [c for c in cands if c.neg_slack <= 0]
            if not feasible:
                continue
            dmin = feasible[0].neg_slack
            near = sorted((c for c in feasible if c.neg_slack <= dmin + 0.03), key=lambda c: (c.cut(), c.neg_slack))
            tries = near[:2] if len(nodes) <= self.backtrack_below else near[:1]
            first: list[np.ndarray] = []
            for c in tries:
                in_a = c.mask(len(nodes))
                ra, oka = self.split(nodes[in_a], c.ka, self.edges_of(nodes[in_a], eidx))
                rb, okb = self.split(nodes[~in_a], c.kb, self.edges_of(nodes[~in_a], eidx))
                if oka and okb:
                    return ra + rb, True
                first = first or (ra + rb)
            if len(nodes) > self.backtrack_below:
                self.stats.soft = True
                return first, False
        if fallback is None:
            return [nodes], False
        self.stats.soft = True
        in_a = fallback.mask(len(nodes))
        ra, oka = self.split(nodes[in_a], fallback.ka, self.edges_of(nodes[in_a], eidx))
        rb, okb = self.split(nodes[~in_a], fallback.kb, self.edges_of(nodes[~in_a], eidx))
        return ra + rb, oka and okb


def choose_k(h: float, p: float, rules: GridRules) -> int:
    """The grid count leaving the most room on every bound (households low/high, people)."""
    a, b = k_range(int(h), int(p), rules)
    if a > b:
        return max(a, 1)

    def slack(k: int) -> float:
        s = [1 - h / (k * rules.max_households), 1 - p / (k * rules.max_people)]
        if rules.min_households:
            s.append(1 - k * rules.min_households / max(h, 1e-9))
        return min(s)

    return max(range(a, b + 1), key=lambda k: (slack(k), -k))


def recursive_partition(
    graph: Graph,
    h: np.ndarray,
    p: np.ndarray,
    rules: GridRules,
    *,
    seed: int = 0,
    trees_per_split: int = 2,
    attempts: int = 2,
    max_trees: int | None = None,
    k: int | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Labels 0..K-1 for every node; each connected component is partitioned separately.
    Returns the labels and info (``soft`` components where the bands could not all be met).
    ``k`` forces the grid count of a graph of one component (None: :func:`choose_k` per component)."""
    rng = np.random.default_rng(seed)
    labels = np.full(graph.n, -1, dtype=np.int64)
    comp = graph.components()
    next_label = 0
    soft_components = []
    sp = _Splitter(graph, np.asarray(h), np.asarray(p), rules, rng, trees_per_split=trees_per_split, attempts=attempts)
    sp.max_trees = max_trees if max_trees is not None else 40 * graph.n // 5 + 400
    ncomp = int(comp.max()) + 1 if graph.n else 0
    for c in range(ncomp):
        nodes = np.flatnonzero(comp == c)
        H, P = float(h[nodes].sum()), float(p[nodes].sum())
        kc = max(1, min(int(k), len(nodes))) if k is not None and ncomp == 1 else choose_k(H, P, rules)
        parts, ok = sp.split(nodes, kc, sp.edges_of(nodes, np.arange(graph.m)))
        if not ok:
            soft_components.append(c)
        for part in parts:
            labels[part] = next_label
            next_label += 1
    return labels, {"trees": sp.stats.trees, "soft_components": soft_components}


def _pen(hh: int, pp: int, r: GridRules) -> float:
    """Penalty of a grid with ``hh`` households and ``pp`` people: rule breaks, then the excess."""
    if hh == 0 and pp == 0:
        return 0.0
    breaks = dev = 0
    if hh < r.min_households:
        breaks, dev = 1, r.min_households - hh
    if hh > r.max_households:
        breaks, dev = breaks + 1, dev + hh - r.max_households
    if pp > r.max_people:
        breaks, dev = breaks + 1, dev + pp - r.max_people
    return W_VIOL * breaks + W_DEV * dev


class _LocalSearch:
    """State of one local search: labels, members, totals and penalty per grid, kept current by
    :meth:`apply`. The steps: :meth:`climb` (hill climbing), :meth:`fix_out_of_bounds` (push/pull
    chains for grids still out of bounds), :meth:`anneal` (boundary length, feasibility kept)."""

    def __init__(
        self,
        graph: Graph,
        h: np.ndarray,
        p: np.ndarray,
        rules: GridRules,
        labels: np.ndarray,
        *,
        fixed: np.ndarray | None,
        orig: np.ndarray | None,
        move_cost: np.ndarray | None,
        allow_empty: bool,
        chain_depth: int,
    ) -> None:
        n = graph.n
        self.graph = graph
        self.n = n
        self.lab = [int(x) for x in labels]
        self.K = K = max(self.lab) + 1 if self.lab else 0
        self.adj, self.adjw = graph.adj(), graph.adjw()
        self.hl, self.pl = [int(x) for x in h], [int(x) for x in p]
        self.fx = [False] * n if fixed is None else [bool(x) for x in fixed]
        self.og = [-1] * n if orig is None else [int(x) for x in orig]
        self.mc = [0.0] * n if move_cost is None else [float(x) * W_MOVE for x in move_cost]
        self.members: list[set[int]] = [set() for _ in range(K)]
        self.H = [0] * K
        self.P = [0] * K
        for u, g in enumerate(self.lab):
            self.members[g].add(u)
            self.H[g] += self.hl[u]
            self.P[g] += self.pl[u]
        self.r = rules
        self.allow_empty = allow_empty
        self.chain_depth = chain_depth
        self.moves = 0
        self.lo_h, self.hi_h, self.hi_p = rules.min_households, rules.max_households, rules.max_people
        self.PEN = [self.pen(self.H[g], self.P[g]) for g in range(K)]  # penalty per grid, kept current by apply()

    # --- grid state -------------------------------------------------------------------------------

    def pen(self, hh: int, pp: int) -> float:
        return 0.0 if self.lo_h <= hh <= self.hi_h and pp <= self.hi_p else _pen(hh, pp, self.r)

    def delta(self, u: int, a: int, b: int) -> tuple[float, float]:
        """Change of (penalty, boundary length) if unit ``u`` moves from grid ``a`` to grid ``b``."""
        H, P, og, lab, pen = self.H, self.P, self.og, self.lab, self.pen
        hu, pu = self.hl[u], self.pl[u]
        dpen = pen(H[a] - hu, P[a] - pu) + pen(H[b] + hu, P[b] + pu) - self.PEN[a] - self.PEN[b]
        if og[u] >= 0:
            dpen += self.mc[u] * ((b != og[u]) - (a != og[u]))
        dcut = 0.0
        for v, w in zip(self.adj[u], self.adjw[u], strict=False):
            lv = lab[v]
            if lv == a:
                dcut += w
            elif lv == b:
                dcut -= w
        return dpen, dcut

    def can_leave(self, u: int, a: int) -> bool:
        if len(self.members[a]) == 1:
            return self.allow_empty
        return is_connected(self.adj, self.members[a], without=u)

    def apply(self, u: int, a: int, b: int) -> None:
        H, P = self.H, self.P
        self.members[a].discard(u)
        self.members[b].add(u)
        H[a] -= self.hl[u]
        P[a] -= self.pl[u]
        H[b] += self.hl[u]
        P[b] += self.pl[u]
        self.lab[u] = b
        self.PEN[a] = self.pen(H[a], P[a])
        self.PEN[b] = self.pen(H[b], P[b])
        self.moves += 1

    def over(self, g: int) -> bool:
        return self.H[g] > self.r.max_households or self.P[g] > self.r.max_people

    def under(self, g: int) -> bool:
        H, P = self.H, self.P
        return 0 < H[g] < self.r.min_households or (
            H[g] == 0 and P[g] == 0 and not self.allow_empty and not self.members[g]
        )

    def ok(self, g: int) -> bool:
        return not self.over(g) and not self.under(g)

    def fit_key(self, hh: int, pp: int) -> tuple[bool, int, float]:
        r = self.r
        bad = max(0, r.min_households - hh) + max(0, hh - r.max_households) + max(0, pp - r.max_people)
        return (bad > 0, bad, abs(hh - r.target_households))

    # --- step 1: hill climbing --------------------------------------------------------------------

    def climb(self, rng: np.random.Generator, max_passes: int) -> int:
        """Passes of best single-unit moves in seeded random order until none improves; passes run."""
        lab, adj, fx = self.lab, self.adj, self.fx
        delta, can_leave, apply = self.delta, self.can_leave, self.apply
        done = 0
        for done in range(1, max_passes + 1):  # noqa: B007  (the pass count is returned)
            improved = False
            for u in rng.permutation(self.n).tolist():
                if fx[u]:
                    continue
                a = lab[u]
                nbrs = {lab[v] for v in adj[u]} - {a}
                if not nbrs:
                    continue
                best, best_d = None, -1e-7
                for b in sorted(nbrs):
                    dp, dc = delta(u, a, b)
                    d = dp + dc
                    if d < best_d:
                        best, best_d = b, d
                if best is not None and can_leave(u, a):
                    apply(u, a, best)
                    improved = True
            if not improved:
                break
        return done

    # --- step 2: chains for grids still out of bounds ----------------------------------------------

    def push(self, cur: int, path: list[int], depth: int) -> bool:
        """``cur`` is over a maximum: move one boundary unit out, then fix the receiver the same way."""
        H, P, hl, pl, lab = self.H, self.P, self.hl, self.pl, self.lab
        cands = []
        for u in self.members[cur]:
            if self.fx[u]:
                continue
            for nb in {lab[v] for v in self.adj[u]} - {cur}:
                if nb in path:
                    continue
                cands.append(
                    (self.fit_key(H[cur] - hl[u], P[cur] - pl[u]), self.fit_key(H[nb] + hl[u], P[nb] + pl[u]), u, nb)
                )
        cands.sort()
        for kc, _, u, nb in cands[:6]:
            if kc[0] or not self.can_leave(u, cur):
                continue
            self.apply(u, cur, nb)
            if self.ok(nb) or (self.over(nb) and depth < self.chain_depth and self.push(nb, [*path, nb], depth + 1)):
                return True
            self.apply(u, nb, cur)
        return False

    def pull(self, cur: int, path: list[int], depth: int) -> bool:
        """``cur`` is under the minimum: take one boundary unit in, then fix the giver the same way."""
        H, P, hl, pl, lab = self.H, self.P, self.hl, self.pl, self.lab
        chain_depth = self.chain_depth
        cands = []
        seen = set()
        for w in self.members[cur]:
            for v in self.adj[w]:
                nb = lab[v]
                if nb == cur or nb in path or self.fx[v] or v in seen:
                    continue
                seen.add(v)
                cands.append(
                    (self.fit_key(H[cur] + hl[v], P[cur] + pl[v]), self.fit_key(H[nb] - hl[v], P[nb] - pl[v]), v, nb)
                )
        cands.sort()
        for kc, _, v, nb in cands[:6]:
            if kc[0] and kc[1] >= max(0, self.r.min_households - H[cur]):
                continue
            if not self.can_leave(v, nb):
                continue
            self.apply(v, nb, cur)
            if self.ok(cur):
                if self.ok(nb) or (self.under(nb) and depth < chain_depth and self.pull(nb, [*path, nb], depth + 1)):
                    return True
            elif (
                depth < chain_depth
                and self.pull(cur, path, depth + 1)
                and (self.ok(nb) or (self.under(nb) and self.pull(nb, [*path, nb], depth + 1)))
            ):
                return True
            self.apply(v, cur, nb)
        return False

    def fix_out_of_bounds(self, rng: np.random.Generator, max_passes: int, rounds: int = 3) -> tuple[int, int]:
        """Up to ``rounds`` rounds: a push (over) or pull (under) chain for every grid out of bounds,
        then climbing again. Returns (chains that fixed a grid, climbing passes run)."""
        chains = passes = 0
        for _round in range(rounds):
            bad_grids = [g for g in range(self.K) if self.members[g] and not self.ok(g)]
            if not bad_grids:
                break
            fixed_any = False
            for g in bad_grids:
                if self.ok(g) or not self.members[g]:
                    continue
                if (self.push if self.over(g) else self.pull)(g, [g], 0):
                    chains += 1
                    fixed_any = True
            if not fixed_any:
                break
            passes += self.climb(rng, max_passes)
        return chains, passes

    # --- step 3: annealing on boundary length ------------------------------------------------------

    def anneal(self, rng: np.random.Generator, n_anneal: int) -> None:
        """Simulated annealing on boundary length; a move never worsens the feasibility terms; the
        moves after the best state are undone at the end."""
        graph, n = self.graph, self.n
        lab, adj, fx, og, mc = self.lab, self.adj, self.fx, self.og, self.mc
        H, P, PEN, hl, pl, r = self.H, self.P, self.PEN, self.hl, self.pl, self.r
        lo_h, hi_h, hi_p = self.lo_h, self.hi_h, self.hi_p
        adjw, can_leave, apply = self.adjw, self.can_leave, self.apply
        cur_cut = graph.cut_weight(np.array(lab))
        cur_pen = 0.0
        mean_w = float(graph.weight.mean()) if graph.m else 1.0
        t0 = 0.5 * mean_w
        best_key = (cur_pen, cur_cut)
        since_best: list[tuple[int, int]] = []  # (unit, grid it left) after the best state: undone at the end
        cand = rng.integers(0, n, size=n_anneal).tolist()
        coins = rng.random(n_anneal).tolist()
        picks = rng.random(n_anneal).tolist()
        for it in range(n_anneal):
            u = cand[it]
            if fx[u]:
                continue
            a = lab[u]
            nbs = {lab[v] for v in adj[u]}
            nbs.discard(a)
            if not nbs:
                continue
            b = sorted(nbs)[int(picks[it] * len(nbs))] if len(nbs) > 1 else nbs.pop()
            # delta() inlined (the hot loop): penalty change first, boundary change only if needed
            hu, pu = hl[u], pl[u]
            ha, pa, hb, pb = H[a] - hu, P[a] - pu, H[b] + hu, P[b] + pu
            dp = (
                (0.0 if lo_h <= ha <= hi_h and pa <= hi_p else _pen(ha, pa, r))
                + (0.0 if lo_h <= hb <= hi_h and pb <= hi_p else _pen(hb, pb, r))
                - PEN[a]
                - PEN[b]
            )
            if og[u] >= 0:
                dp += mc[u] * ((b != og[u]) - (a != og[u]))
            if dp > 1e-9:
                continue
            dc = 0.0
            for v, w in zip(adj[u], adjw[u], strict=False):
                lv = lab[v]
                if lv == a:
                    dc += w
                elif lv == b:
                    dc -= w
            temp = t0 * (1 - it / n_anneal) + 1e-9
            if (dp + dc < 0 or coins[it] < math.exp(-dc / temp)) and can_leave(u, a):
                apply(u, a, b)
                since_best.append((u, a))
                cur_cut += dc
                cur_pen += dp
                if (cur_pen, cur_cut) < (best_key[0] - 1e-6, math.inf) or (
                    abs(cur_pen - best_key[0]) <= 1e-6 and cur_cut < best_key[1] - 1e-9
                ):
                    best_key = (cur_pen, cur_cut)
                    since_best.clear()
        for u, a in reversed(since_best):
            lab[u] = a


def local_search(
    graph: Graph,
    h: np.ndarray,
    p: np.ndarray,
    rules: GridRules,
    labels: np.ndarray,
    *,
    seed: int = 0,
    fixed: np.ndarray | None = None,
    orig: np.ndarray | None = None,
    move_cost: np.ndarray | None = None,
    max_passes: int = 30,
    anneal_moves: int | None = None,
    allow_empty: bool = False,
    chain_depth: int = 5,
) -> tuple[np.ndarray, dict[str, int]]:
    """Improve ``labels`` by single-unit moves between adjacent grids, contiguity kept.

    Objective (lexicographic through weights): rule breaks, households/people outside the bands,
    buildings moved away from ``orig`` (``move_cost`` per unit), then boundary length (cut weight).
    Hill climbing in seeded random order, then push/pull chains for grids still out of bounds, then a
    short annealing on boundary length that never worsens the first three terms."""
    rng = np.random.default_rng(seed)
    ls = _LocalSearch(
        graph,
        h,
        p,
        rules,
        labels,
        fixed=fixed,
        orig=orig,
        move_cost=move_cost,
        allow_empty=allow_empty,
        chain_depth=chain_depth,
    )
    passes = ls.climb(rng, max_passes)
    chains, more_passes = ls.fix_out_of_bounds(rng, max_passes)
    passes += more_passes
    n_anneal = anneal_moves if anneal_moves is not None else 20 * ls.n
    if n_anneal and ls.n:
        ls.anneal(rng, n_anneal)
    out = np.array(ls.lab, dtype=np.int64)
    return out, {"passes": passes, "moves": ls.moves, "chains": chains}


def relabel_dense(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0..K-1 in order of first appearance (empty grids dropped)."""
    _, first, inv = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return rank[inv].astype(np.int64)
