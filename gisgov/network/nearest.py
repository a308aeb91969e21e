"""Exact nearest edge for many points, faster than an R-tree nearest query.

Every edge is cut into short straight pieces (≤ ``STEP`` m). A k-d tree over the pieces' midpoints
gives ``K`` candidates per point; the exact point–segment distance picks the best. The answer is
exact whenever best ≤ (distance to the K-th midpoint) − (longest half piece): no piece outside the
candidates can then be closer. Points that fail the test (rare) go to the R-tree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from scipy.spatial import cKDTree

STEP = 25.0
K = 8


@dataclass
class PieceIndex:
    x0: np.ndarray
    y0: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    edge: np.ndarray  # edge of each piece
    along: np.ndarray  # distance along the edge geometry at the piece start (geometry units)
    half: float  # longest half piece
    tree: cKDTree

    @classmethod
    def build(cls, geoms: np.ndarray, step: float = STEP) -> PieceIndex:
        coords, idx = shapely.get_coordinates(geoms, return_index=True)
        same = idx[1:] == idx[:-1]
        a, b = coords[:-1][same], coords[1:][same]
        edge = idx[:-1][same]
        seglen = np.hypot(b[:, 0] - a[:, 0], b[:, 1] - a[:, 1])
        # distance along the edge at each segment start
        cum = np.cumsum(seglen)
        first = np.ones(len(edge), dtype=bool)
        first[1:] = edge[1:] != edge[:-1]
        start_cum = np.maximum.accumulate(np.where(first, cum - seglen, 0.0))
        seg_along = cum - seglen - start_cum
        n = np.maximum(1, np.ceil(seglen / step).astype(np.int64))
        rep = np.repeat(np.arange(len(edge)), n)
        j = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        f0, f1 = j / n[rep], (j + 1) / n[rep]
        sx, sy = a[rep, 0], a[rep, 1]
        ddx, ddy = b[rep, 0] - sx, b[rep, 1] - sy
        x0, y0 = sx + f0 * ddx, sy + f0 * ddy
        px, py = (f1 - f0) * ddx, (f1 - f0) * ddy
        along = seg_along[rep] + f0 * seglen[rep]
        half = float(np.hypot(px, py).max() / 2) if len(px) else 0.0
        tree = cKDTree(np.column_stack([x0 + px / 2, y0 + py / 2]))
        return cls(x0, y0, px, py, edge[rep], along, half, tree)

    def nearest(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(edge, distance, raw offset along the geometry, proven-exact mask) per point."""
        k = min(K, len(self.x0))
        dmid, cand = self.tree.query(np.column_stack([x, y]), k=k)
        if k == 1:
            dmid, cand = dmid[:, None], cand[:, None]
        x0, y0, dx, dy = self.x0[cand], self.y0[cand], self.dx[cand], self.dy[cand]
        ll = dx * dx + dy * dy
        t = np.clip(
            np.divide((x[:, None] - x0) * dx + (y[:, None] - y0) * dy, ll, out=np.zeros_like(ll), where=ll > 0),
            0.0,
            1.0,
        )
        qx, qy = x0 + t * dx, y0 + t * dy
        d = np.hypot(x[:, None] - qx, y[:, None] - qy)
        best = np.argmin(d, axis=1)
        r = np.arange(len(x))
        piece = cand[r, best]
        dist = d[r, best]
        raw = self.along[piece] + t[r, best] * np.sqrt(ll[r, best])
        exact = dist <= dmid[:, -1] - self.half if k == K else np.ones(len(x), dtype=bool)
        return self.edge[piece], dist, raw, exact
