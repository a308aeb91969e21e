"""Walking network of the synthetic city: axis-parallel lines noded at every crossing.

Pure computation on the plan's lines (local metres): every line is split wherever another line
touches or crosses it, giving nodes (unique points) and edges (straight segments between
consecutive nodes of a line). Lines of class ``entrance`` are zero-length markers: they only add a
node (a building's door) on the path they sit on.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from gisgov.sample.layout import Line

_TOL = 1e-6


@dataclass
class Network:
    nodes: np.ndarray  # (N, 2) local metres; node id = row index + 1
    edges: pd.DataFrame  # source, target, class, name, length_m, x0, y0, x1, y1

    def node_id(self, xy: np.ndarray) -> np.ndarray:
        """Ids of the nodes at exactly these points (KeyError if one is not a node)."""
        lookup = {k: i + 1 for i, k in enumerate(map(tuple, _keys(self.nodes)))}
        return np.array([lookup[tuple(k)] for k in _keys(np.asarray(xy, dtype=float).reshape(-1, 2))])

    def components(self) -> int:
        n = len(self.nodes)
        g = coo_matrix((np.ones(len(self.edges)), (self.edges["source"] - 1, self.edges["target"] - 1)), shape=(n, n))
        return connected_components(g, directed=False)[0]


def _keys(xy: np.ndarray) -> np.ndarray:
    return np.round(xy * 100).astype(np.int64)  # centimetre grid


def build_network(lines: list[Line]) -> Network:
    h = [ln for ln in lines if ln.orient == "h"]
    v = [ln for ln in lines if ln.orient == "v"]
    hc, hlo, hhi = (np.array([getattr(ln, a) for ln in h]) for a in ("c", "lo", "hi"))
    vc, vlo, vhi = (np.array([getattr(ln, a) for ln in v]) for a in ("c", "lo", "hi"))
    touch = (
        (vlo[None, :] - _TOL <= hc[:, None])
        & (hc[:, None] <= vhi[None, :] + _TOL)
        & (hlo[:, None] - _TOL <= vc[None, :])
        & (vc[None, :] <= hhi[:, None] + _TOL)
    )

    segs: list[tuple[float, float, float, float, str, str | None]] = []
    points: list[np.ndarray] = []
    for i, ln in enumerate(h):
        s = np.unique(np.concatenate([[ln.lo, ln.hi], vc[touch[i]]]))
        points.append(np.column_stack([s, np.full(len(s), ln.c)]))
        if ln.cls != "entrance":
            segs.extend((a, ln.c, b, ln.c, ln.cls, ln.name) for a, b in itertools.pairwise(s) if b - a > _TOL)
    for j, ln in enumerate(v):
        s = np.unique(np.concatenate([[ln.lo, ln.hi], hc[touch[:, j]]]))
        points.append(np.column_stack([np.full(len(s), ln.c), s]))
        if ln.cls != "entrance":
            segs.extend((ln.c, a, ln.c, b, ln.cls, ln.name) for a, b in itertools.pairwise(s) if b - a > _TOL)

    allpts = np.concatenate(points)
    keys, first = np.unique(_keys(allpts), axis=0, return_index=True)
    nodes = allpts[first]
    e = pd.DataFrame(segs, columns=["x0", "y0", "x1", "y1", "class", "name"])
    index = {tuple(k): i + 1 for i, k in enumerate(keys)}
    e["source"] = [index[tuple(k)] for k in _keys(e[["x0", "y0"]].to_numpy())]
    e["target"] = [index[tuple(k)] for k in _keys(e[["x1", "y1"]].to_numpy())]
    e["length_m"] = np.hypot(e["x1"] - e["x0"], e["y1"] - e["y0"]).round(2)
    e = e[["source", "target", "class", "name", "length_m", "x0", "y0", "x1", "y1"]]
    return Network(nodes=nodes, edges=e)
