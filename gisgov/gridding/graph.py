"""Adjacency graphs of gridding units: compressed (CSR) storage and the graph algorithms the
validator, the feasibility check and the solvers share (components, cut vertices, contiguity).

Pure numpy/scipy; nodes are 0..n-1, edges undirected and stored once (i < j).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


@dataclass
class Graph:
    """Undirected weighted graph. ``length`` = shared boundary (m), ``crossing`` = the edge crosses an
    arterial road / river, ``weight`` = cut cost (length discounted along barriers)."""

    n: int
    ei: np.ndarray
    ej: np.ndarray
    length: np.ndarray
    crossing: np.ndarray
    weight: np.ndarray

    def __post_init__(self) -> None:
        self.ei = np.asarray(self.ei, dtype=np.int64)
        self.ej = np.asarray(self.ej, dtype=np.int64)
        self.length = np.asarray(self.length, dtype=float)
        self.crossing = np.asarray(self.crossing, dtype=bool)
        self.weight = np.asarray(self.weight, dtype=float)
        m = len(self.ei)
        src = np.concatenate([self.ei, self.ej])
        dst = np.concatenate([self.ej, self.ei])
        eid = np.concatenate([np.arange(m), np.arange(m)])
        order = np.lexsort((dst, src))
        self.indptr = np.zeros(self.n + 1, dtype=np.int64)
        np.add.at(self.indptr, src + 1, 1)
        self.indptr = np.cumsum(self.indptr)
        self.nbr = dst[order]
        self.nbr_edge = eid[order]
        # python lists for the hot loops of the local search (list indexing beats numpy scalars)
        self._adj: list[list[int]] | None = None
        self._adjw: list[list[float]] | None = None

    @classmethod
    def empty(cls, n: int) -> Graph:
        """``n`` nodes, no edge."""
        return cls(n, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool), np.zeros(0))

    @property
    def m(self) -> int:
        return len(self.ei)

    def neighbors(self, i: int) -> np.ndarray:
        return self.nbr[self.indptr[i] : self.indptr[i + 1]]

    def adj(self) -> list[list[int]]:
        if self._adj is None:
            ip, nb = self.indptr.tolist(), self.nbr.tolist()
            self._adj = [nb[ip[i] : ip[i + 1]] for i in range(self.n)]
        return self._adj

    def adjw(self) -> list[list[float]]:
        if self._adjw is None:
            ip = self.indptr.tolist()
            w = self.weight[self.nbr_edge].tolist()
            self._adjw = [w[ip[i] : ip[i + 1]] for i in range(self.n)]
        return self._adjw

    def components(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Component label per node (-1 for masked-out nodes)."""
        keep = np.ones(self.n, bool) if mask is None else np.asarray(mask, bool)
        ok = keep[self.ei] & keep[self.ej]
        a = coo_matrix((np.ones(ok.sum()), (self.ei[ok], self.ej[ok])), shape=(self.n, self.n))
        _, lab = connected_components(a, directed=False)
        lab = lab.astype(np.int64)
        # relabel densely over kept nodes, in order of first appearance (deterministic)
        out = np.full(self.n, -1, dtype=np.int64)
        seen: dict[int, int] = {}
        for i in np.flatnonzero(keep):
            out[i] = seen.setdefault(int(lab[i]), len(seen))
        return out

    def subgraph(self, nodes: np.ndarray) -> tuple[Graph, np.ndarray]:
        """Induced subgraph on ``nodes`` (renumbered 0..k-1) and the map new→old."""
        nodes = np.asarray(nodes, dtype=np.int64)
        new = np.full(self.n, -1, dtype=np.int64)
        new[nodes] = np.arange(len(nodes))
        ok = (new[self.ei] >= 0) & (new[self.ej] >= 0)
        g = Graph(len(nodes), new[self.ei[ok]], new[self.ej[ok]], self.length[ok], self.crossing[ok], self.weight[ok])
        return g, nodes

    def cut_weight(self, label: np.ndarray) -> float:
        lab = np.asarray(label)
        return float(self.weight[lab[self.ei] != lab[self.ej]].sum())


def contract(g: Graph, group: np.ndarray, k: int) -> Graph:
    """Graph of groups: nodes merged by ``group`` (0..k-1), parallel edges summed, self-loops dropped."""
    gi, gj = group[g.ei], group[g.ej]
    keep = gi != gj
    a, b = np.minimum(gi[keep], gj[keep]), np.maximum(gi[keep], gj[keep])
    if len(a) == 0:
        return Graph.empty(k)
    key = a * k + b
    uniq, inv = np.unique(key, return_inverse=True)
    length = np.bincount(inv, weights=g.length[keep], minlength=len(uniq))
    weight = np.bincount(inv, weights=g.weight[keep], minlength=len(uniq))
    crossing = np.bincount(inv, weights=g.crossing[keep].astype(float), minlength=len(uniq)) > 0
    return Graph(k, uniq // k, uniq % k, length, crossing, weight)


def is_connected(adj: list[list[int]], members: set[int] | list[int], *, without: int | None = None) -> bool:
    """Whether ``members`` (minus ``without``) induce a connected subgraph."""
    s = set(members)
    if without is not None:
        s.discard(without)
    if len(s) <= 1:
        return True
    start = next(iter(s))
    seen = {start}
    dq = deque([start])
    while dq:
        u = dq.popleft()
        for v in adj[u]:
            if v in s and v not in seen:
                seen.add(v)
                dq.append(v)
    return len(seen) == len(s)


def pieces(adj: list[list[int]], members: list[int] | set[int]) -> list[list[int]]:
    """Connected pieces of the subgraph induced by ``members``, largest first (ties: smallest node)."""
    s = set(members)
    out = []
    for start in sorted(s):
        if start not in s:
            continue
        s.discard(start)
        comp = [start]
        dq = deque([start])
        while dq:
            u = dq.popleft()
            for v in adj[u]:
                if v in s:
                    s.discard(v)
                    comp.append(v)
                    dq.append(v)
        out.append(sorted(comp))
    out.sort(key=lambda c: (-len(c), c[0]))
    return out


def articulation_points(adj: list[list[int]], members: list[int] | set[int] | None = None) -> list[int]:
    """Cut vertices of the subgraph induced by ``members`` (all nodes when None): units whose removal
    disconnects their piece. Iterative Tarjan (no recursion limit)."""
    nodes = range(len(adj)) if members is None else sorted(set(members))
    inside = None if members is None else set(nodes)
    disc: dict[int, int] = {}
    low: dict[int, int] = {}
    out: set[int] = set()
    t = 0
    for root in nodes:
        if root in disc:
            continue
        disc[root] = low[root] = t
        t += 1
        children = 0
        stack = [(root, -1, iter(adj[root]))]
        while stack:
            u, parent, it = stack[-1]
            advanced = False
            for v in it:
                if inside is not None and v not in inside:
                    continue
                if v not in disc:
                    disc[v] = low[v] = t
                    t += 1
                    stack.append((v, u, iter(adj[v])))
                    advanced = True
                    break
                if v != parent:
                    low[u] = min(low[u], disc[v])
            if advanced:
                continue
            stack.pop()
            if parent >= 0:
                low[parent] = min(low[parent], low[u])
                if stack[-1][1] >= 0 and low[u] >= disc[parent]:
                    out.add(parent)
                if parent == root:
                    children += 1
        if children > 1:
            out.add(root)
    return sorted(out)


def hanging_pieces(adj: list[list[int]], v: int, members: set[int]) -> list[list[int]]:
    """Pieces of ``members`` left when cut vertex ``v`` is removed (largest first)."""
    return pieces(adj, members - {v})
