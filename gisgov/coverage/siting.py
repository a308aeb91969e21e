"""Where to put the next facility: maximal covering (MCLP) and set covering (LSCP).

Demand = buildings beyond the circle for the category (weight = households); candidates = sites
snapped to the network (buildings, network nodes, or given points such as vacant parcels). A
candidate covers a building when the network distance building → candidate is within the budget
(one distance-limited Dijkstra per candidate, batched). Demand points with identical candidate
sets are merged. Problems are solved exactly with HiGHS (MIP) up to ``exact_limit`` non-zeros and
greedily beyond (or when HiGHS hits its time limit and greedy is no worse); the result says which.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from gisgov.coverage.model import NETWORK, CoverageModel
from gisgov.errors import InvalidInput
from gisgov.network import Snap


def check_points(points, bbox: tuple[float, float, float, float], max_items: int) -> None:
    """Candidate points a caller gives ([lon, lat] each): at most ``max_items``, each finite and inside
    the region box; 422 naming the first bad point's index and the rule otherwise."""
    from gisgov.coverage.whatif import check_lonlat

    if len(points) > max_items:
        raise InvalidInput(
            f"候选点过多 too many candidate points: {len(points)}, limit {max_items} "
            "(setting GISGOV_MAX_LIST_ITEMS; rule: max_list_items)"
        )
    for i, pt in enumerate(points):
        if len(pt) != 2:
            raise InvalidInput(f"候选点 points[{i}] must be [lon, lat] (rule: point_pair)")
        check_lonlat(pt[0], pt[1], bbox, what=f"候选点 candidate points[{i}]")


EXACT_LIMIT = 400_000  # non-zeros of the coverage matrix solved exactly
# Optimality must not depend on machine load: the exact solve is bounded by deterministic work (branch-and-bound
# nodes), the same on any machine; the wall-clock limit is only a safety net far above what that work takes
# here. Either limit reached = the answer says not proven optimal (HiGHS' own status, never assumed).
MIP_MAX_NODES = 20_000  # HiGHS branch-and-bound nodes per problem (deterministic)
TIME_LIMIT_S = 120.0  # safety net only


@dataclass
class SitingResult:
    problem: str  # mclp | lscp
    method: str  # highs | greedy
    optimal: bool
    sites: np.ndarray  # chosen candidate indices, in order of marginal gain
    gain_households: np.ndarray  # marginal households gained by each site, in that order
    gain_buildings: np.ndarray
    demand_households: float  # households beyond the circle before
    demand_buildings: int
    covered_households: float  # of those, newly covered by the chosen sites
    covered_buildings: int
    uncoverable_buildings: int  # beyond the circle and reached by no candidate
    seconds: dict = field(default_factory=dict)
    off_network: int = 0  # candidates left out: farther than network.max_access_m from a walkable street


# -- coverage matrix -------------------------------------------------------------------------------


def candidate_node_distances(model: CoverageModel, cs: Snap, *, limit: float) -> np.ndarray:
    """(k, N) distance from every node to each candidate separately (inf beyond ``limit``)."""
    g = model.graph
    n, k = g.n_nodes, len(cs)
    e, t, leg = cs.edge, cs.offset, cs.leg
    L = g.length[e]
    back = ~g.oneway[e] | (t >= L)
    cnt = 1 + back.astype(np.int64)
    targets = np.empty(cnt.sum(), dtype=np.int64)
    weights = np.empty(cnt.sum())
    pos = np.concatenate([[0], np.cumsum(cnt)[:-1]])
    targets[pos], weights[pos] = g.u[e], t + leg
    targets[pos[back] + 1], weights[pos[back] + 1] = g.v[e][back], (L - t + leg)[back]
    base_ptr = g.rev_indptr[: n + 1]
    indptr = np.concatenate([base_ptr, base_ptr[-1] + np.cumsum(cnt)])
    indices = np.concatenate([g.rev_indices[: base_ptr[-1]], targets]).astype(np.int64)
    data = np.concatenate([g.rev_data[: base_ptr[-1]], weights])
    m = sparse.csr_matrix((data, indices, indptr), shape=(n + k, n + k))
    d = dijkstra(m, directed=True, indices=np.arange(n, n + k), limit=limit)
    return d[:, :n]


def cover_matrix(model: CoverageModel, cs: Snap, demand: np.ndarray, budget: float, *, chunk: int = 64):
    """Sparse (n_candidates × n_demand) bool: candidate j covers demand building i.

    The arithmetic mirrors :func:`gisgov.network.point_distances` (float32, same order) so a site
    claims exactly the buildings a what-if with that facility would cover."""
    acc, r = model.access, model.reader
    rows = acc.rows_of(demand)
    owner_local = np.searchsorted(demand, acc.owner[rows])  # demand is sorted
    g = model.graph
    e0, t = r.e[rows], r.t[rows]
    t_back, t_fwd, leg = r.t_back[rows], r.t_fwd[rows], r.leg[rows]
    uu, vv = r.uu[rows], r.vv[rows]
    one = g.oneway[e0]
    ri, ci = [], []
    for start in range(0, len(cs), chunk):
        sl = slice(start, min(start + chunk, len(cs)))
        c = cs.take(np.arange(sl.start, sl.stop))
        D = candidate_node_distances(model, c, limit=budget).astype(np.float32)
        best = np.minimum(t_back[None, :] + D[:, uu], t_fwd[None, :] + D[:, vv])
        same = (c.edge[:, None] == e0[None, :]) & r.on[rows][None, :]
        if same.any():
            jj, rr = np.nonzero(same)
            ok_dir = (c.offset[jj] >= t[rr]) | ~one[rr]
            direct = np.where(ok_dir, np.abs(c.offset[jj] - t[rr]) + c.leg[jj], np.inf).astype(np.float32)
            best[jj, rr] = np.minimum(best[jj, rr], direct)
        best = best + leg[None, :]
        jj, rr = np.nonzero(best <= budget)
        ri.append(jj + sl.start)
        ci.append(owner_local[rr])
    rr_ = np.concatenate(ri) if ri else np.zeros(0, np.int64)
    cc = np.concatenate(ci) if ci else np.zeros(0, np.int64)
    a = sparse.csr_matrix((np.ones(len(rr_), dtype=bool), (rr_, cc)), shape=(len(cs), len(demand)))
    a.sum_duplicates()
    a.data[:] = True
    return a


def straight_cover_matrix(model: CoverageModel, cx, cy, demand: np.ndarray, budget: float):
    """No network: straight line × detour factor within budget."""
    b = model.buildings
    tree = cKDTree(np.column_stack([b["x"].to_numpy()[demand], b["y"].to_numpy()[demand]]))
    hits = tree.query_ball_point(np.column_stack([cx, cy]), budget / model.params.detour_factor)
    r = np.repeat(np.arange(len(cx)), [len(h) for h in hits])
    c = np.concatenate([np.asarray(h, dtype=np.int64) for h in hits]) if len(hits) else np.zeros(0, np.int64)
    return sparse.csr_matrix((np.ones(len(r), dtype=bool), (r, c)), shape=(len(cx), len(demand)))


# -- solvers -------------------------------------------------------------------------------------------


def _aggregate(a: sparse.csr_matrix, w: np.ndarray):
    """Merge demand columns with identical candidate sets: (matrix cand × groups, weights, counts, group of each)."""
    at = a.T.tocsr()
    at.sort_indices()
    keys = [at.indices[at.indptr[i] : at.indptr[i + 1]].tobytes() for i in range(at.shape[0])]
    grp, uniq = pd.factorize(pd.Series(keys))
    ng = len(uniq)
    gw = np.bincount(grp, weights=w, minlength=ng)
    gc = np.bincount(grp, minlength=ng)
    first = np.full(ng, -1)
    first[grp[::-1]] = np.arange(len(grp))[::-1]
    ag = a[:, first].tocsc()
    return ag, gw, gc, grp


def _greedy(a: sparse.csc_matrix, w: np.ndarray, k: int | None, *, chosen: list[int] | None = None):
    """Greedy MCLP (k given) or LSCP (k None: until nothing more can be covered)."""
    ar = a.tocsr().astype(np.float64)
    covered = np.zeros(a.shape[1], dtype=bool)
    picks, gains = [], []
    pool = np.ones(a.shape[0], dtype=bool)
    if chosen is not None:
        pool[:] = False
        pool[chosen] = True
    while k is None or len(picks) < k:
        weight = w * ~covered if k is not None else (~covered).astype(float)
        gain = ar @ weight
        gain[~pool] = -1
        j = int(np.argmax(gain))
        if gain[j] <= 0:
            break
        picks.append(j)
        pool[j] = False
        cols = ar.indices[ar.indptr[j] : ar.indptr[j + 1]]
        gains.append(float(w[cols][~covered[cols]].sum()))
        covered[cols] = True
    return picks, gains, covered


def _new_highs():
    """A HiGHS instance without its start-up banner on stdout (it would corrupt ``--json`` output)."""
    import ctypes
    import os
    import sys

    import highspy

    sys.stdout.flush()
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        h = highspy.Highs()
        ctypes.CDLL(None).fflush(None)
    finally:
        os.dup2(saved, 1)
        os.close(devnull)
        os.close(saved)
    return h


def _highs(a: sparse.csc_matrix, w: np.ndarray, k: int | None, time_limit: float):
    """Exact MIP: MCLP (k) or LSCP (k None). Returns (chosen candidates, optimal?)."""
    import highspy

    nc, nd = a.shape
    h = _new_highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("mip_max_nodes", MIP_MAX_NODES)
    h.setOptionValue("threads", 1)  # the same search on every run
    h.setOptionValue("mip_rel_gap", 0.0)
    lp = highspy.HighsLp()
    inf = highspy.kHighsInf
    ar = a.tocsr()
    ar.sort_indices()
    per = np.diff(ar.indptr)  # demand groups covered by each candidate
    if k is not None:
        # x_j binary (nc), y_i in [0, 1] (nd); max sum w y; y_i - sum_j a_ij x_j <= 0; sum x <= k
        lp.num_col_, lp.num_row_ = nc + nd, nd + 1
        lp.col_cost_ = np.concatenate([np.zeros(nc), w])
        lp.col_lower_ = np.zeros(nc + nd)
        lp.col_upper_ = np.ones(nc + nd)
        lp.row_lower_ = np.full(nd + 1, -inf)
        lp.row_upper_ = np.concatenate([np.zeros(nd), [k]])
        xcnt = per + 1
        xstart = np.concatenate([[0], np.cumsum(xcnt)])
        idx = np.empty(xstart[-1] + nd, dtype=np.int64)
        val = np.empty(xstart[-1] + nd)
        last = xstart[1:] - 1
        body = np.ones(xstart[-1], dtype=bool)
        body[last] = False
        idx[: xstart[-1]][body], val[: xstart[-1]][body] = ar.indices, -1.0
        idx[last], val[last] = nd, 1.0
        idx[xstart[-1] :], val[xstart[-1] :] = np.arange(nd), 1.0
        starts = np.concatenate([xstart, xstart[-1] + np.arange(1, nd + 1)])
        lp.sense_ = highspy.ObjSense.kMaximize
        lp.integrality_ = [highspy.HighsVarType.kInteger] * nc + [highspy.HighsVarType.kContinuous] * nd
    else:
        # min sum x; for each demand group: sum_j a_ij x_j >= 1
        lp.num_col_, lp.num_row_ = nc, nd
        lp.col_cost_ = np.ones(nc)
        lp.col_lower_ = np.zeros(nc)
        lp.col_upper_ = np.ones(nc)
        lp.row_lower_ = np.ones(nd)
        lp.row_upper_ = np.full(nd, inf)
        starts, idx, val = ar.indptr, ar.indices, np.ones(len(ar.indices))
        lp.sense_ = highspy.ObjSense.kMinimize
        lp.integrality_ = [highspy.HighsVarType.kInteger] * nc
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.asarray(starts, dtype=np.int32)
    lp.a_matrix_.index_ = np.asarray(idx, dtype=np.int32)
    lp.a_matrix_.value_ = np.asarray(val, dtype=np.float64)
    h.passModel(lp)
    h.run()
    status = h.getModelStatus()
    sol = np.asarray(h.getSolution().col_value)
    optimal = status == highspy.HighsModelStatus.kOptimal
    if len(sol) < nc:
        return None, False
    chosen = list(np.flatnonzero(sol[:nc] > 0.5))
    return chosen, optimal


def solve(
    a: sparse.csr_matrix,
    w: np.ndarray,
    *,
    k: int | None,
    exact_limit: int = EXACT_LIMIT,
    time_limit: float = TIME_LIMIT_S,
) -> tuple[list[int], list[float], str, bool]:
    """Solve MCLP (``k``) or LSCP (``k=None``) on a cover matrix (candidates × demand)."""
    coverable = np.asarray(a.sum(axis=0)).ravel() > 0
    a = a[:, np.flatnonzero(coverable)]
    w = w[coverable]
    if a.shape[1] == 0 or a.shape[0] == 0:
        return [], [], "none", True
    ag, gw, _, _ = _aggregate(a.tocsr(), w)
    method, optimal = "greedy", False
    greedy_pick, _, _greedy_cov = _greedy(ag, gw, k)
    chosen = greedy_pick
    if ag.nnz <= exact_limit:
        exact, optimal = _highs(ag, gw, k, time_limit)
        if exact is not None:
            if k is not None:
                better = _cover_weight(ag, gw, exact) >= _cover_weight(ag, gw, greedy_pick)
            else:
                better = len(exact) <= len(greedy_pick) and _cover_weight(ag, np.ones_like(gw), exact) >= ag.shape[1]
            if better:
                chosen, method = exact, "highs"
            else:
                optimal = False
    # order the chosen sites by marginal gain (households)
    picks, gains, _ = _greedy(ag, gw, len(chosen), chosen=chosen) if chosen else ([], [], None)
    rest = [j for j in chosen if j not in picks]  # sites adding nothing after the others
    return picks + rest, gains + [0.0] * len(rest), method, optimal


def _cover_weight(a, w, chosen) -> float:
    if not len(chosen):
        return 0.0
    cov = np.asarray(a[chosen, :].sum(axis=0)).ravel() > 0
    return float(w[cov].sum())


def site(
    model: CoverageModel,
    current: np.ndarray,
    budget: float,
    *,
    demand_mask: np.ndarray,
    candidates: tuple[np.ndarray, np.ndarray],
    k: int | None,
    exact_limit: int = EXACT_LIMIT,
    time_limit: float = TIME_LIMIT_S,
) -> SitingResult:
    """Choose sites among ``candidates`` (metric x, y arrays) for buildings in ``demand_mask``.

    ``current``: each building's distance to the category today; demand = beyond ``budget``.
    ``k`` = number of new sites (MCLP) or None for the fewest sites covering all it can (LSCP).
    """
    t0 = time.perf_counter()
    if k is not None and k < 1:
        raise InvalidInput(
            f"新增选址数量须为正数 k = {k}: the number of new sites must be at least 1 (rule: k_positive)"
        )
    b = model.buildings
    hh = (
        pd.to_numeric(b["households"], errors="coerce").fillna(0).to_numpy(float)
        if "households" in b
        else np.ones(len(b))
    )
    demand = np.flatnonzero(demand_mask & ~(current <= budget))
    cx, cy = (np.asarray(v, dtype=float) for v in candidates)
    secs: dict[str, float] = {}
    if len(demand) == 0 or len(cx) == 0:
        return SitingResult(
            "mclp" if k else "lscp",
            "none",
            True,
            np.zeros(0, np.int64),
            np.zeros(0),
            np.zeros(0, np.int64),
            float(hh[demand].sum()),
            len(demand),
            0.0,
            0,
            len(demand),
            {"total": time.perf_counter() - t0},
        )
    # prefilter: a candidate farther than the budget (straight line) from every demand building covers nothing
    tree = cKDTree(np.column_stack([b["x"].to_numpy()[demand], b["y"].to_numpy()[demand]]))
    near = (
        np.array([len(h) > 0 for h in tree.query_ball_point(np.column_stack([cx, cy]), budget)], dtype=bool)
        if len(cx)
        else np.zeros(0, bool)
    )
    cand = np.flatnonzero(near)
    off_network = 0
    if model.method == NETWORK:
        cs = model._snap(cx[cand], cy[cand])
        ok = (cs.edge >= 0) & (cs.leg <= model.params.max_access_m)  # off the network: not a walk
        off_network = int((~ok).sum())
        cand, cs = cand[ok], cs.take(np.flatnonzero(ok))
        a = cover_matrix(model, cs, demand, budget)
    else:
        a = straight_cover_matrix(model, cx[cand], cy[cand], demand, budget)
    secs["cover_matrix"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    picks, gains, method, optimal = solve(a, hh[demand], k=k, exact_limit=exact_limit, time_limit=time_limit)
    secs["solve"] = time.perf_counter() - t1
    coverable = np.asarray(a.sum(axis=0)).ravel() > 0
    ar = a.tocsr()
    gain_b, cov = [], np.zeros(len(demand), dtype=bool)
    for j in picks:
        cols = ar.indices[ar.indptr[j] : ar.indptr[j + 1]]
        gain_b.append(int((~cov[cols]).sum()))
        cov[cols] = True
    secs["total"] = time.perf_counter() - t0
    return SitingResult(
        "mclp" if k else "lscp",
        method,
        optimal,
        cand[np.asarray(picks, dtype=np.int64)],
        np.asarray(gains),
        np.asarray(gain_b, dtype=np.int64),
        float(hh[demand].sum()),
        int(len(demand)),
        float(hh[demand][cov].sum()),
        int(cov.sum()),
        int((~coverable).sum()),
        secs,
        off_network,
    )
