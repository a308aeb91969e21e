"""Fast heuristic partition: recursive spanning-tree bipartition with household/people bands, then a
local search that moves boundary units to shorten grid boundaries (compactness) while keeping every
grid within bounds and contiguous.

Deterministic for a seed: every budget is counted in trees and moves, never in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


@dataclass
class SplitStats:
    trees: int = 0
    soft: bool = False


def _kruskal_dfs(n: int, a: np.ndarray, b: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum spanning tree (Kruskal, union-find) of a small graph, as DFS preorder + predecessors
    (the same output as scipy's depth_first_order, without sparse-matrix overhead)."""
    uf = list(range(n))

    def find(x: int) -> int:
        while uf[x] != x:
            uf[x] = uf[uf[x]]
            x = uf[x]
        return x

    tree: list[list[int]] = [[] for _ in range(n)]
    al, bl = a.tolist(), b.tolist()
    got = 0
    for e in np.argsort(w, kind="stable").tolist():
        x, y = find(al[e]), find(bl[e])
        if x != y:
            uf[x] = y
            tree[al[e]].append(bl[e])
            tree[bl[e]].append(al[e])
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
    return np.array(order, dtype=np.int64), np.array(pred, dtype=np.int64)


class _Splitter:
    def __init__(self, graph: Graph, h: np.ndarray, p: np.ndarray, rules: GridRules, rng: np.random.Generator,
                 *, trees_per_split: int = 4, attempts: int = 6, max_trees: int = 4000):
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

    def slack(self, hs, ps, k):
        """Room left on the tightest bound of a piece split into ``k`` grids (< 0 = cannot fit)."""
        r = self.r
        k = np.maximum(k, 1)
        s = np.minimum(1 - hs / (k * r.max_households), 1 - ps / (k * r.max_people))
        if r.min_households:
            s = np.minimum(s, 1 - k * r.min_households / np.maximum(hs, 1e-9))
        return s

    def best_k(self, hs, ps, k0):
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

    def _tree(self, nodes: np.ndarray, eidx: np.ndarray):
        """A random spanning tree of ``nodes`` (edges ``eidx``; barrier-crossing edges avoided), as
        DFS preorder with predecessors, plus the piece's local edge list."""
        g = self.g
        loc = self.loc
        loc[nodes] = np.arange(len(nodes))
        a, b = loc[g.ei[eidx]], loc[g.ej[eidx]]
        w = self.rng.random(len(a)) + 0.01 + g.crossing[eidx] * 1.0
        self.stats.trees += 1
        if len(nodes) > 300:
            mst = minimum_spanning_tree(coo_matrix((w, (a, b)), shape=(len(nodes), len(nodes))).tocsr())
            order, pred = depth_first_order(mst, 0, directed=False, return_predecessors=True)
            return order, pred, a, b, g.weight[eidx]
        order, pred = _kruskal_dfs(len(nodes), a, b, w)
        return order, pred, a, b, g.weight[eidx]

    def edges_of(self, nodes: np.ndarray, eidx: np.ndarray) -> np.ndarray:
        self.in_s[nodes] = True
        keep = self.in_s[self.g.ei[eidx]] & self.in_s[self.g.ej[eidx]]
        self.in_s[nodes] = False
        return eidx[keep]

    def _candidates(self, nodes: np.ndarray, eidx: np.ndarray, k: int, trees: int):
        """Tree-edge cuts of ``nodes``: (−slack, cut length, side-A mask, kA, kB), best slack first."""
        H, P = self.h[nodes].sum(), self.p[nodes].sum()
        k1, k2 = k // 2, k - k // 2
        out = []
        for _ in range(trees):
            order, pred, ea, eb, ew = self._tree(nodes, eidx)
            if len(order) < len(nodes):
                return out
            hs = self.h[nodes].copy()
            ps = self.p[nodes].copy()
            size = np.ones(len(nodes), dtype=np.int64)
            ol, pl = order.tolist(), pred.tolist()
            for v in reversed(ol[1:]):
                q = pl[v]
                hs[q] += hs[v]
                ps[q] += ps[v]
                size[q] += size[v]
            tin = np.empty(len(nodes), dtype=np.int64)
            tin[order] = np.arange(len(nodes))
            child = order[1:]
            sh, sp = hs[child], ps[child]
            for ka0, kb0 in ((k1, k2), (k2, k1)) if k1 != k2 else ((k1, k2),):
                ka, sa = self.best_k(sh, sp, ka0)
                kb, sb = self.best_k(H - sh, P - sp, kb0)
                score = np.minimum(sa, sb)
                top = np.argsort(-score, kind="stable")[:6]
                for c_i in top:
                    c = child[c_i]
                    in_a = (tin >= tin[c]) & (tin < tin[c] + size[c])
                    cut = float(ew[in_a[ea] != in_a[eb]].sum())
                    out.append((-float(score[c_i]), cut, in_a, int(ka[c_i]), int(kb[c_i])))
        out.sort(key=lambda c: c[0])
        return out

    def split(self, nodes: np.ndarray, k: int, eidx: np.ndarray) -> tuple[list[np.ndarray], bool]:
        """Parts of ``nodes`` and whether every part is within the bounds. Strict search first (several
        trees and candidates while the tree budget lasts), else the cut with the most slack."""
        if k <= 1 or len(nodes) == 1:
            ok = bool(self.slack(self.h[nodes].sum(), self.p[nodes].sum(), 1) >= 0)
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
            feasible = [c for c in cands if c[0] <= 0]
            if not feasible:
                continue
            dmin = feasible[0][0]
            near = sorted((c for c in feasible if c[0] <= dmin + 0.03), key=lambda c: (c[1], c[0]))
            tries = near[:2] if len(nodes) <= self.backtrack_below else near[:1]
            first = None
            for _, _, in_a, ka, kb in tries:
                ra, oka = self.split(nodes[in_a], ka, self.edges_of(nodes[in_a], eidx))
                rb, okb = self.split(nodes[~in_a], kb, self.edges_of(nodes[~in_a], eidx))
                if oka and okb:
                    return ra + rb, True
                first = first or (ra + rb)
            if len(nodes) > self.backtrack_below:
                self.stats.soft = True
                return first, False
        if fallback is None:
            return [nodes], False
        self.stats.soft = True
        _, _, in_a, ka, kb = fallback
        ra, oka = self.split(nodes[in_a], ka, self.edges_of(nodes[in_a], eidx))
        rb, okb = self.split(nodes[~in_a], kb, self.edges_of(nodes[~in_a], eidx))
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


def recursive_partition(graph: Graph, h: np.ndarray, p: np.ndarray, rules: GridRules, *, seed: int = 0,
                        trees_per_split: int = 2, attempts: int = 2,
                        max_trees: int | None = None) -> tuple[np.ndarray, dict]:
    """Labels 0..K-1 for every node; each connected component is partitioned separately.
    Returns the labels and info (``soft`` components where the bands could not all be met)."""
    rng = np.random.default_rng(seed)
    labels = np.full(graph.n, -1, dtype=np.int64)
    comp = graph.components()
    next_label = 0
    soft_components = []
    sp = _Splitter(graph, np.asarray(h), np.asarray(p), rules, rng,
                   trees_per_split=trees_per_split, attempts=attempts)
    sp.max_trees = max_trees if max_trees is not None else 40 * graph.n // 5 + 400
    for c in range(int(comp.max()) + 1 if graph.n else 0):
        nodes = np.flatnonzero(comp == c)
        H, P = float(h[nodes].sum()), float(p[nodes].sum())
        parts, ok = sp.split(nodes, choose_k(H, P, rules), sp.edges_of(nodes, np.arange(graph.m)))
        if not ok:
            soft_components.append(c)
        for part in parts:
            labels[part] = next_label
            next_label += 1
    return labels, {"trees": sp.stats.trees, "soft_components": soft_components}


def _pen(hh: int, pp: int, r: GridRules) -> float:
    if hh == 0 and pp == 0:
        return 0.0
    under = max(0, r.min_households - hh)
    over = max(0, hh - r.max_households)
    pover = max(0, pp - r.max_people)
    return W_VIOL * ((under > 0) + (over > 0) + (pover > 0)) + W_DEV * (under + over + pover)


def local_search(graph: Graph, h: np.ndarray, p: np.ndarray, rules: GridRules, labels: np.ndarray, *,
                 seed: int = 0, fixed: np.ndarray | None = None, orig: np.ndarray | None = None,
                 move_cost: np.ndarray | None = None, max_passes: int = 30, anneal_moves: int | None = None,
                 allow_empty: bool = False, chain_depth: int = 5) -> tuple[np.ndarray, dict]:
    """Improve ``labels`` by single-unit moves between adjacent grids, contiguity kept.

    Objective (lexicographic through weights): rule breaks, households/people outside the bands,
    buildings moved away from ``orig`` (``move_cost`` per unit), then boundary length (cut weight).
    Hill climbing in seeded random order, then a short annealing on boundary length that never
    worsens the first three terms."""
    rng = np.random.default_rng(seed)
    n = graph.n
    lab = [int(x) for x in labels]
    K = max(lab) + 1 if lab else 0
    adj, adjw = graph.adj(), graph.adjw()
    hl, pl = [int(x) for x in h], [int(x) for x in p]
    fx = [False] * n if fixed is None else [bool(x) for x in fixed]
    og = [-1] * n if orig is None else [int(x) for x in orig]
    mc = [0.0] * n if move_cost is None else [float(x) * W_MOVE for x in move_cost]
    members = [set() for _ in range(K)]
    H = [0] * K
    P = [0] * K
    for u, g in enumerate(lab):
        members[g].add(u)
        H[g] += hl[u]
        P[g] += pl[u]
    r = rules
    moves = 0

    def delta(u: int, a: int, b: int) -> tuple[float, float]:
        dcut = 0.0
        for v, w in zip(adj[u], adjw[u]):
            lv = lab[v]
            if lv == a:
                dcut += w
            elif lv == b:
                dcut -= w
        dpen = (_pen(H[a] - hl[u], P[a] - pl[u], r) + _pen(H[b] + hl[u], P[b] + pl[u], r)
                - _pen(H[a], P[a], r) - _pen(H[b], P[b], r))
        if og[u] >= 0:
            dpen += mc[u] * ((b != og[u]) - (a != og[u]))
        return dpen, dcut

    def can_leave(u: int, a: int) -> bool:
        if len(members[a]) == 1:
            return allow_empty
        return is_connected(adj, members[a], without=u)

    def apply(u: int, a: int, b: int) -> None:
        nonlocal moves
        members[a].discard(u)
        members[b].add(u)
        H[a] -= hl[u]
        P[a] -= pl[u]
        H[b] += hl[u]
        P[b] += pl[u]
        lab[u] = b
        moves += 1

    def over(g: int) -> bool:
        return H[g] > r.max_households or P[g] > r.max_people

    def under(g: int) -> bool:
        return 0 < H[g] < r.min_households or (H[g] == 0 and P[g] == 0 and not allow_empty and not members[g])

    def ok(g: int) -> bool:
        return not over(g) and not under(g)

    def fit_key(hh: int, pp: int) -> tuple:
        bad = max(0, r.min_households - hh) + max(0, hh - r.max_households) + max(0, pp - r.max_people)
        return (bad > 0, bad, abs(hh - r.target_households))

    def push(cur: int, path: list[int], depth: int) -> bool:
        """``cur`` is over a maximum: move one boundary unit out, then fix the receiver the same way."""
        cands = []
        for u in members[cur]:
            if fx[u]:
                continue
            for nb in {lab[v] for v in adj[u]} - {cur}:
                if nb in path:
                    continue
                cands.append((fit_key(H[cur] - hl[u], P[cur] - pl[u]), fit_key(H[nb] + hl[u], P[nb] + pl[u]), u, nb))
        cands.sort()
        for kc, _, u, nb in cands[:6]:
            if kc[0] or not can_leave(u, cur):
                continue
            apply(u, cur, nb)
            if ok(nb) or (over(nb) and depth < chain_depth and push(nb, path + [nb], depth + 1)):
                return True
            apply(u, nb, cur)
        return False

    def pull(cur: int, path: list[int], depth: int) -> bool:
        """``cur`` is under the minimum: take one boundary unit in, then fix the giver the same way."""
        cands = []
        seen = set()
        for w in members[cur]:
            for v in adj[w]:
                nb = lab[v]
                if nb == cur or nb in path or fx[v] or v in seen:
                    continue
                seen.add(v)
                cands.append((fit_key(H[cur] + hl[v], P[cur] + pl[v]), fit_key(H[nb] - hl[v], P[nb] - pl[v]), v, nb))
        cands.sort()
        for kc, _, v, nb in cands[:6]:
            if kc[0] and kc[1] >= max(0, r.min_households - H[cur]):
                continue
            if not can_leave(v, nb):
                continue
            apply(v, nb, cur)
            if ok(cur):
                if ok(nb) or (under(nb) and depth < chain_depth and pull(nb, path + [nb], depth + 1)):
                    return True
            elif depth < chain_depth and pull(cur, path, depth + 1):
                if ok(nb) or (under(nb) and pull(nb, path + [nb], depth + 1)):
                    return True
            apply(v, cur, nb)
        return False

    def climb() -> int:
        done = 0
        for done in range(1, max_passes + 1):
            improved = False
            for u in rng.permutation(n).tolist():
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

    passes = climb()
    chains = 0
    for _round in range(3):
        bad_grids = [g for g in range(K) if members[g] and not ok(g)]
        if not bad_grids:
            break
        fixed_any = False
        for g in bad_grids:
            if ok(g) or not members[g]:
                continue
            if (push if over(g) else pull)(g, [g], 0):
                chains += 1
                fixed_any = True
        if not fixed_any:
            break
        passes += climb()
    # annealing on boundary length, feasibility terms never worsened
    n_anneal = anneal_moves if anneal_moves is not None else 20 * n
    if n_anneal and n:
        cur_cut = graph.cut_weight(np.array(lab))
        cur_pen = 0.0
        mean_w = float(graph.weight.mean()) if graph.m else 1.0
        t0 = 0.5 * mean_w
        best_lab, best_key = list(lab), (cur_pen, cur_cut)
        cand = rng.integers(0, n, size=n_anneal).tolist()
        coins = rng.random(n_anneal).tolist()
        picks = rng.random(n_anneal).tolist()
        for it in range(n_anneal):
            u = cand[it]
            if fx[u]:
                continue
            a = lab[u]
            nb = sorted({lab[v] for v in adj[u]} - {a})
            if not nb:
                continue
            b = nb[int(picks[it] * len(nb))]
            dp, dc = delta(u, a, b)
            if dp > 1e-9:
                continue
            temp = t0 * (1 - it / n_anneal) + 1e-9
            if dp + dc < 0 or coins[it] < math.exp(-dc / temp):
                if can_leave(u, a):
                    apply(u, a, b)
                    cur_cut += dc
                    cur_pen += dp
                    if (cur_pen, cur_cut) < (best_key[0] - 1e-6, math.inf) or (
                            abs(cur_pen - best_key[0]) <= 1e-6 and cur_cut < best_key[1] - 1e-9):
                        best_lab, best_key = list(lab), (cur_pen, cur_cut)
        lab = best_lab
    out = np.array(lab, dtype=np.int64)
    return out, {"passes": passes, "moves": moves, "chains": chains}


def relabel_dense(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0..K-1 in order of first appearance (empty grids dropped)."""
    _, first, inv = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return rank[inv].astype(np.int64)
