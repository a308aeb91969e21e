"""Plan of the synthetic city in a local metric frame (metres east/north of the south-west corner).

Pure computation: numbers in, numpy arrays and DataFrames out. The city is a grid of communities
(社区) bounded by arterial roads; street 1 (街道) takes the western columns, street 2 the eastern
ones. A river runs east-west between the southern row and the rest, crossed by two bridges only.
Inside a community, local streets cut blocks: a fine grid in the old town (north-west), fewer and
larger blocks (superblocks) in the new town and across the river. An old block holds 2–8 small
compounds (老旧小区: work-unit dormitories of walk-ups, mostly 60–250 households) side by side and/or
back to back, each gated to its nearest road; a new block holds one estate (商品房, mostly 500–1,500
households, which the grid rules split along buildings); one block per community stays open (public
land). Compounds are filled with rows of south-facing buildings (行列式) on either side of a
north-south spine path. One old-town community is made of single work-unit compounds sized so that
one of them is stranded for gridding (see :mod:`gisgov.sample.challenges`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from gisgov.sample import names as nm

# Half widths of the road reserves (m) and the setback of compound walls from them.
HALF_WIDTH = {"arterial": 20.0, "local": 10.0, "bank": 12.0}
SETBACK = 6.0
RIVER_HALF = 20.0
BANK_OFFSET = RIVER_HALF + 15.0  # bank road centreline from the river centreline
RIVER_ROW = 1  # river along Y[1]: the southern row lies across it
LANE = 4.0  # lane between compounds sharing a block
# Old blocks hold several small compounds (老旧小区, often 60–250 households): (columns, rows, weight).
# A block is cut so that each old compound stays below SUB_MAX_M2 (~200 households) where it can; the
# weight-0 cut is only used for that (big new-town blocks).
OLD_SPLITS = ((2, 1, 0.25), (3, 1, 0.35), (2, 2, 0.30), (3, 2, 0.10), (4, 2, 0.0))
SUB_MIN_W, SUB_MIN_H = 55.0, 70.0  # smallest compound plot that still takes a walk-up row or two
SUB_MAX_M2 = 12000.0
BLOCK_W, BLOCK_H = (192.0, 225.0), (167.0, 192.0)  # nominal block size incl. half the roads (m)
NEW_TOWN_BLOCKS = 0.7  # new-town communities: blocks per side × this (superblocks)
OLD_TOWN_P = 0.6  # old-town propensity above which a community has a fine street grid
OLD_SHARE = 0.6  # share of compounds built before 2000 (seed 001: 65.9 %)
BLOCKS = 165.0  # blocks with compounds at scale 1 (plus one open block per community)
OCCUPANCY = {True: 0.93, False: 0.88}  # occupied share of dwellings, old / new compounds
# The stranded community (deliberately hard to grid): one old compound of each block, one of them
# just below the 300-household minimum and its neighbours each a grid on their own (expected
# households, lower bounds: buildings are left out while the rest stays above).
STRANDED_HH = (245.0, 258.0)
WHOLE_HH = (315.0, 325.0)

COUNTY = "340104"
REFERENCE_YEAR = 2024

# Building types: floors choices/weights, units choices/weights, unit width, depth (m),
# dwellings per floor per unit, gap between buildings in a row (m), sunlight spacing factor.
BUILDING_TYPES = {
    "walkup": dict(
        label="多层住宅",
        floors=(5, 6, 7),
        fw=(0.25, 0.5, 0.25),
        units=(1, 2, 3),
        uw=(0.25, 0.5, 0.25),
        unit_w=12.5,
        depth=11.0,
        per_floor=2,
        gx=6.0,
        k=1.0,
        gap=(14.0, 24.0),
    ),
    "garden": dict(
        label="多层洋房",
        floors=(6, 7),
        fw=(0.6, 0.4),
        units=(1, 2),
        uw=(0.3, 0.7),
        unit_w=15.0,
        depth=13.0,
        per_floor=2,
        gx=12.0,
        k=1.1,
        gap=(18.0, 28.0),
    ),
    "midrise": dict(
        label="小高层",
        floors=(11, 12, 15, 18),
        fw=(0.35, 0.25, 0.2, 0.2),
        units=(1, 2),
        uw=(0.35, 0.65),
        unit_w=14.0,
        depth=14.0,
        per_floor=2,
        gx=10.0,
        k=0.9,
        gap=(26.0, 44.0),
    ),
    "tower": dict(
        label="高层",
        floors=(18, 24, 26, 28, 33),
        fw=(0.35, 0.2, 0.2, 0.15, 0.1),
        units=(1,),
        uw=(1.0,),
        unit_w=26.0,
        depth=20.0,
        per_floor=3,
        gx=15.0,
        k=0.55,
        gap=(32.0, 48.0),
    ),
}
# New estates (商品房): 洋房/小高层/高层 mix; on the old town's small plots only high-rise infill (高层),
# across the river (resettlement housing 回迁房) no towers.
NEW_TYPE_WEIGHTS = {"garden": 0.60, "midrise": 0.35, "tower": 0.05}


@dataclass
class Line:
    orient: str  # 'h' (east-west) or 'v' (north-south)
    c: float  # the constant coordinate (y for 'h', x for 'v')
    lo: float
    hi: float
    cls: str  # arterial / local / path / gate / bridge
    name: str | None = None


@dataclass
class CityPlan:
    """Everything of the city in local metres, before people and facilities."""

    X: np.ndarray
    Y: np.ndarray
    streets: pd.DataFrame  # code, name, col0, col1
    communities: pd.DataFrame  # code, street_code, name, short, col, row, class, x0, y0, x1, y1
    compounds: pd.DataFrame  # code, community_code, name, x0..y1, old, year_built, btype
    buildings: pd.DataFrame  # code, community_code, compound_code, name, x0..y1, floors, units, per_floor
    lines: list[Line] = field(default_factory=list)
    gates: pd.DataFrame | None = None  # compound_code, name, x, y
    bridges_x: tuple[float, ...] = ()
    public_blocks: pd.DataFrame | None = None


def _choice(rng: np.random.Generator, values, weights, size=None):
    w = np.asarray(weights, dtype=float)
    return np.asarray(values)[rng.choice(len(values), size=size, p=w / w.sum())]


def grid_shape(scale: float) -> tuple[int, int, float]:
    """(columns, rows, blocks per community) of communities for a scale (1.0 = 12 communities)."""
    n = max(4, int(round(12 * scale)))
    ny = max(2, int(round(np.sqrt(n * 0.75))))
    nx = max(2, int(np.ceil(n / ny)))
    blocks = BLOCKS * scale / (nx * ny) + 1.0  # +1 public (open) block
    return nx, ny, max(4.0, blocks)


def _split_counts(rng: np.random.Generator, n: int, total: int) -> np.ndarray:
    """n integers >= 2 summing to ``total``, varied by +-1 in balanced pairs."""
    k = np.full(n, total // n)
    k[rng.permutation(n)[: total - k.sum()]] += 1
    for _ in range(n // 2):
        a, b = rng.choice(n, size=2, replace=False)
        if k[a] >= 3 and rng.random() < 0.5:
            k[a] -= 1
            k[b] += 1
    return np.maximum(2, k)


def plan_city(rng: np.random.Generator, scale: float = 1.0) -> CityPlan:
    nx, ny, blocks = grid_shape(scale)
    sx = max(2 * nx, int(round(nx * np.sqrt(blocks))))
    sy = max(2 * ny, int(round(blocks * nx * ny / sx)))
    kx = _split_counts(rng, nx, sx)
    ky = _split_counts(rng, ny, sy)
    bw = rng.uniform(*BLOCK_W, size=nx)
    bh = rng.uniform(*BLOCK_H, size=ny)
    X = np.concatenate([[0.0], np.cumsum(np.round(kx * bw, 1))])
    Y = np.concatenate([[0.0], np.cumsum(np.round(ky * bh + np.where(np.arange(ny) < 2, BANK_OFFSET, 0), 1))])

    streets, communities = _hierarchy(rng, nx, ny, X, Y)
    ccx = ((communities["x0"] + communities["x1"]) / 2).to_numpy()
    ccy = ((communities["y0"] + communities["y1"]) / 2).to_numpy()
    south = (communities["row"] < RIVER_ROW).to_numpy()
    communities["old_town"] = propensity(ccx, ccy, X[-1], Y[-1], south) >= OLD_TOWN_P
    stranded = _stranded_community(communities)
    lines: list[Line] = []
    bank_lo, bank_hi = Y[RIVER_ROW] - BANK_OFFSET, Y[RIVER_ROW] + BANK_OFFSET

    # Arterials on every column/row boundary; the river boundary gets bank roads instead.
    for i, x in enumerate(X):
        nm_ns = nm.ARTERIAL_NS[i % len(nm.ARTERIAL_NS)]
        lines.append(Line("v", x, Y[0], bank_lo, "arterial", nm_ns))
        lines.append(Line("v", x, bank_hi, Y[-1], "arterial", nm_ns))
    for j, y in enumerate(Y):
        if j != RIVER_ROW:
            lines.append(Line("h", y, X[0], X[-1], "arterial", nm.ARTERIAL_EW[j % len(nm.ARTERIAL_EW)]))
    lines.append(Line("h", bank_lo, X[0], X[-1], "local", "滨河南路"))
    lines.append(Line("h", bank_hi, X[0], X[-1], "local", "滨河北路"))
    bridges_x = (float(X[0]), float(X[1])) if nx == 2 else (float(X[1]), float(X[2]))
    for k, xb in enumerate(bridges_x):
        lines.append(Line("v", xb, bank_lo, bank_hi, "bridge", f"示例{'一二'[k]}桥"))

    block_rows, bld_rows, gate_rows, public_rows = [], [], [], []
    local_names = iter(_local_names(rng))
    for com in communities.itertuples():
        # old town: a fine street grid; new town: fewer, larger blocks (superblocks of 商品房)
        f = 1.0 if com.old_town else NEW_TOWN_BLOCKS
        nbx = max(2, int(round(kx[com.col] * f)))
        nby = max(2, int(round(ky[com.row] * f)))
        # y-range bounded by roads: the river side ends at the bank road
        ylo = bank_hi if com.row == RIVER_ROW else Y[com.row]
        yhi = bank_lo if com.row == RIVER_ROW - 1 else Y[com.row + 1]
        xs = _interior(rng, com.x0, com.x1, nbx)
        ys = _interior(rng, ylo, yhi, nby)
        for x in xs:
            lines.append(Line("v", x, ylo, yhi, "local", next(local_names)))
        for y in ys:
            lines.append(Line("h", y, com.x0, com.x1, "local", next(local_names)))
        xb = np.concatenate([[com.x0], xs, [com.x1]])
        yb = np.concatenate([[ylo], ys, [yhi]])
        xkind = ["arterial"] + ["local"] * len(xs) + ["arterial"]
        ykind = (
            ["bank" if com.row == RIVER_ROW else "arterial"]
            + ["local"] * len(ys)
            + ["bank" if com.row == RIVER_ROW - 1 else "arterial"]
        )
        cells = [(i, j) for j in range(len(yb) - 1)[::-1] for i in range(len(xb) - 1)]  # north→south, west→east
        public = cells[rng.integers(len(cells))]
        for i, j in cells:
            cell = (xb[i], yb[j], xb[i + 1], yb[j + 1])
            inner = (
                xb[i] + HALF_WIDTH[xkind[i]] + SETBACK,
                yb[j] + HALF_WIDTH[ykind[j]] + SETBACK,
                xb[i + 1] - HALF_WIDTH[xkind[i + 1]] - SETBACK,
                yb[j + 1] - HALF_WIDTH[ykind[j + 1]] - SETBACK,
            )
            if (i, j) == public:
                public_rows.append(dict(community_code=com.code, x0=inner[0], y0=inner[1], x1=inner[2], y1=inner[3]))
                continue
            block_rows.append(
                dict(
                    community_code=com.code,
                    x0=inner[0],
                    y0=inner[1],
                    x1=inner[2],
                    y1=inner[3],
                    road_south=cell[1],
                    road_north=cell[3],
                    south=com.row < RIVER_ROW,
                    old_town=com.old_town,
                    bi=i,
                    bj=j,
                    pi=public[0],
                    pj=public[1],
                    nbx=len(xb) - 1,
                    nby=len(yb) - 1,
                    stranded=com.code == stranded,
                )
            )
    compounds = _compounds(rng, pd.DataFrame(block_rows), X[-1], Y[-1])
    compounds = _name_compounds(rng, compounds)

    for cp in compounds.itertuples():
        blds, paths, gates = _layout_compound(rng, cp)
        for b in blds:
            b["compound_code"] = cp.code
            b["community_code"] = cp.community_code
        bld_rows.extend(blds)
        lines.extend(paths)
        for g in gates:
            g["compound_code"] = cp.code
        gate_rows.extend(gates)
    buildings = pd.DataFrame(bld_rows)
    buildings = _number_buildings(buildings, compounds)
    compounds = compounds.drop(columns=["road_south", "road_north", "gate"])
    return CityPlan(
        X=X,
        Y=Y,
        streets=streets,
        communities=communities,
        compounds=compounds,
        buildings=buildings,
        lines=lines,
        gates=pd.DataFrame(gate_rows),
        bridges_x=bridges_x,
        public_blocks=pd.DataFrame(public_rows),
    )


def propensity(x, y, width: float, height: float, south) -> np.ndarray:
    """How likely land at (x, y) is old town (老城区): highest in the north-west corner, lowest in the
    south-east and across the river (resettlement and new estates)."""
    d = (np.asarray(x) / width + (height - np.asarray(y)) / height) / 2
    return 0.95 - 0.6 * d - np.where(south, 0.15, 0.0)


def _stranded_community(communities: pd.DataFrame) -> str | None:
    """The community made deliberately hard to grid (cities of 6+ communities): the old-town
    community east of the north-west corner."""
    if len(communities) < 6:
        return None
    top = communities["row"].max()
    c = communities[(communities["row"] == top) & (communities["col"] == 1) & communities["old_town"]]
    return None if c.empty else str(c["code"].iloc[0])


def _compounds(rng, blocks: pd.DataFrame, width: float, height: float) -> pd.DataFrame:
    """Compounds of the blocks: old blocks hold several small compounds (老旧小区: work-unit
    dormitories, 2–6 per block), new blocks one estate (商品房). Blocks
    become old in order of their old-town propensity (plus noise) until ~60 % of the compounds are
    old. The stranded community's blocks hold one old compound each, sized so that one of them can
    join no neighbour (see :data:`STRANDED_HH`)."""
    b = blocks.reset_index(drop=True)
    n = len(b)
    w = (b["x1"] - b["x0"]).to_numpy()
    h = (b["y1"] - b["y0"]).to_numpy()
    forced = b["stranded"].to_numpy(bool)
    cols = np.ones(n, dtype=np.int64)
    rows = np.ones(n, dtype=np.int64)
    for i in range(n):
        fit = [
            (c, r, p, (w[i] - (c - 1) * LANE) / c * (h[i] - (r - 1) * LANE) / r)
            for c, r, p in OLD_SPLITS
            if (w[i] - (c - 1) * LANE) / c >= SUB_MIN_W and (h[i] - (r - 1) * LANE) / r >= SUB_MIN_H
        ]
        if not fit or forced[i]:
            continue
        opts = [o for o in fit if o[3] <= SUB_MAX_M2 and o[2] > 0] or [min(fit, key=lambda o: o[3])]
        k = int(_choice(rng, np.arange(len(opts)), [max(o[2], 1e-9) for o in opts]))
        cols[i], rows[i] = opts[k][0], opts[k][1]
    k_old = cols * rows
    k_new = np.ones(n, dtype=np.int64)
    cx, cy = (b["x0"] + b["x1"]).to_numpy() / 2, (b["y0"] + b["y1"]).to_numpy() / 2
    score = propensity(cx, cy, width, height, b["south"].to_numpy(bool)) + rng.normal(0, 0.15, size=n)
    old = forced.copy()
    order = [i for i in np.argsort(-score, kind="stable") if not forced[i]]
    n_old = int(k_old[forced].sum())
    n_new = int(k_new[~forced].sum())
    shares = [n_old / max(1, n_old + n_new)]
    for i in order:
        n_old += int(k_old[i])
        n_new -= int(k_new[i])
        shares.append(n_old / max(1, n_old + n_new))
    take = int(np.argmin(np.abs(np.array(shares) - OLD_SHARE)))
    old[order[:take]] = True

    # the stranded community: one compound just below the minimum among compounds that are each a grid
    target = np.full(n, np.nan)
    challenge = np.full(n, None, dtype=object)
    if forced.any():
        idx = np.flatnonzero(forced)
        bi, bj = b["bi"].to_numpy()[idx], b["bj"].to_numpy()[idx]
        pi, pj = b["pi"].to_numpy()[idx], b["pj"].to_numpy()[idx]
        nbx, nby = b["nbx"].to_numpy()[idx], b["nby"].to_numpy()[idx]
        corner = ((bi == 0) | (bi == nbx - 1)) & ((bj == 0) | (bj == nby - 1))
        far = np.maximum(np.abs(bi - pi), np.abs(bj - pj)) >= 2
        cand = idx[corner & far] if (corner & far).any() else idx[corner] if corner.any() else idx
        u = int(cand[rng.integers(len(cand))])
        target[idx] = rng.uniform(*WHOLE_HH, size=len(idx)).round()
        target[u] = round(rng.uniform(*STRANDED_HH))
        challenge[u] = "stranded"

    rows_out = []
    for i in range(n):
        r = b.iloc[i]
        base = dict(
            community_code=r.community_code,
            road_south=r.road_south,
            road_north=r.road_north,
            south=bool(r.south),
            old_town=bool(r.old_town),
            old=bool(old[i]),
            target_hh=target[i],
            challenge=challenge[i],
        )
        if old[i]:
            c, q = int(cols[i]), int(rows[i])
            sw = (w[i] - (c - 1) * LANE) / c
            sh = (h[i] - (q - 1) * LANE) / q
            for jq in range(q)[::-1]:  # north row first, then west → east
                for ic in range(c):
                    x0 = r.x0 + ic * (sw + LANE)
                    y0 = r.y0 + jq * (sh + LANE)
                    gate = "south" if q == 1 or jq == 0 else "north"
                    rows_out.append(
                        dict(
                            base,
                            x0=round(x0, 2),
                            y0=round(y0, 2),
                            x1=round(x0 + sw, 2),
                            y1=round(y0 + sh, 2),
                            gate=gate,
                            single=(c * q == 1),
                        )
                    )
        else:
            rows_out.append(dict(base, x0=r.x0, y0=r.y0, x1=r.x1, y1=r.y1, gate="south", single=True))
    c = pd.DataFrame(rows_out)
    o = c["old"].to_numpy(bool)
    c["year_built"] = np.where(
        o,
        _choice(rng, np.arange(1978, 2000), np.linspace(0.5, 1.6, 22), size=len(c)),
        _choice(rng, np.arange(2000, REFERENCE_YEAR - 1), np.linspace(1.4, 0.6, REFERENCE_YEAR - 2001), size=len(c)),
    )
    new_types = list(NEW_TYPE_WEIGHTS)
    btype = _choice(rng, new_types, list(NEW_TYPE_WEIGHTS.values()), size=len(c)).astype(object)
    btype[c["old_town"].to_numpy(bool)] = "tower"  # old-town plots are small: high-rise infill
    south = c["south"].to_numpy(bool) & ~o  # resettlement housing 回迁房: no towers
    btype[south] = np.where(rng.random(int(south.sum())) < 0.5, "midrise", "garden")
    btype[o] = "walkup"
    c["btype"] = btype
    return c.drop(columns=["south", "single", "old_town"])


def _interior(rng: np.random.Generator, lo: float, hi: float, k: int) -> np.ndarray:
    """k-1 interior street positions splitting [lo, hi] into k roughly equal blocks."""
    step = (hi - lo) / k
    pos = lo + step * np.arange(1, k) + rng.uniform(-0.08, 0.08, size=k - 1) * step
    return np.round(pos, 1)


def _local_names(rng: np.random.Generator) -> list[str]:
    combos = [w + t for t in nm.LOCAL_TAILS for w in nm.LOCAL_WORDS]
    rng.shuffle(combos)
    return combos * 20


def _hierarchy(rng, nx, ny, X, Y) -> tuple[pd.DataFrame, pd.DataFrame]:
    words = list(nm.COMMUNITY_WORDS)
    rng.shuffle(words)
    split_col = nx // 2
    streets = pd.DataFrame(
        {
            "code": [f"{COUNTY}001", f"{COUNTY}002"],
            "name": ["示例一街道（合成）", "示例二街道（合成）"],
            "col0": [0, split_col],
            "col1": [split_col, nx],
        }
    )
    rows = []
    for s in streets.itertuples():
        seq = 0
        for r in range(ny - 1, -1, -1):  # north → south
            for c in range(s.col0, s.col1):  # west → east
                seq += 1
                w = words[len(rows) % len(words)]
                if len(rows) >= len(words):  # big scales: 翠湖二社区 …
                    w += nm.cn(len(rows) // len(words) + 1)
                rows.append(
                    dict(
                        code=f"{s.code}{seq:03d}",
                        street_code=s.code,
                        short=w,
                        name=f"{w}社区（合成）",
                        col=c,
                        row=r,
                        x0=X[c],
                        y0=Y[r],
                        x1=X[c + 1],
                        y1=Y[r + 1],
                        **{"class": "撤村建居" if r < RIVER_ROW else "城市社区"},
                    )
                )
    return streets, pd.DataFrame(rows)


def _name_compounds(rng, compounds: pd.DataFrame) -> pd.DataFrame:
    """Distinct names where the word lists allow; otherwise a phase suffix (二期, 三期 …) as real estates do."""
    used: Counter[str] = Counter()
    names = []
    for old in compounds["old"]:
        heads, tails = (
            (nm.COMPOUND_HEADS_OLD, nm.COMPOUND_TAILS_OLD) if old else (nm.COMPOUND_HEADS_NEW, nm.COMPOUND_TAILS_NEW)
        )
        for _ in range(20):
            base = heads[rng.integers(len(heads))] + tails[rng.integers(len(tails))]
            if base not in used:
                break
        used[base] += 1
        k = used[base]
        names.append(base if k == 1 else f"{base}{nm.cn(k)}期")
    compounds = compounds.copy()
    compounds["name"] = names
    seq = compounds.groupby("community_code").cumcount() + 1
    compounds["code"] = compounds["community_code"] + seq.map("{:04d}".format)
    return compounds


def _layout_compound(rng, cp) -> tuple[list[dict], list[Line], list[dict]]:
    """Rows of buildings either side of a north-south spine; paths and gates."""
    t = BUILDING_TYPES[cp.btype]
    x0, y0, x1, y1 = cp.x0, cp.y0, cp.x1, cp.y1
    xs = round((x0 + x1) / 2, 2)
    floors = int(_choice(rng, t["floors"], t["fw"]))
    units = int(_choice(rng, t["units"], t["uw"]))
    height = floors * 2.9
    gap = float(np.clip(t["k"] * height, *t["gap"]))
    depth = t["depth"]
    half_w = (x1 - x0) / 2 - 6 - 5
    target = getattr(cp, "target_hh", np.nan)
    sized = target == target  # a size asked for (NaN: none)
    if sized:  # the building length that fits the most dwellings
        units = max(t["units"], key=lambda u: (_per_half(half_w, u, t)[1] * u, -u))
    units, n_half = _per_half(half_w, units, t)
    length = units * t["unit_w"]
    if n_half == 0:
        raise ValueError(f"compound {cp.code} too narrow for a building (rule: sample_layout)")
    total = n_half * length + (n_half - 1) * t["gx"]
    west0 = x0 + 5 + (half_w - total) / 2
    east0 = xs + 6 + (half_w - total) / 2
    col_x = np.concatenate(
        [west0 + np.arange(n_half) * (length + t["gx"]), east0 + np.arange(n_half) * (length + t["gx"])]
    )
    rows_y = []
    y = y0 + 11
    while y + depth <= y1 - 6:
        rows_y.append(y)
        y += depth + gap
    if not rows_y:
        raise ValueError(f"compound {cp.code} too shallow for a building (rule: sample_layout)")
    # open space: big compounds leave a slot or two empty (green, parking)
    slots = []
    for r, _by in enumerate(rows_y):
        keep = np.ones(len(col_x), dtype=bool)
        if len(col_x) * len(rows_y) > 6 and not sized:
            keep &= rng.random(len(col_x)) > 0.08
        if not keep.any():
            keep[rng.integers(len(col_x))] = True
        for bx in col_x[keep]:
            f = int(np.clip(floors + rng.choice([-1, 0, 0, 0, 1]), 4, 7)) if cp.btype == "walkup" else floors
            slots.append((r, bx, f))
    if sized:  # leave slots empty while the rest stays at or above the size asked for
        expect = np.array([f * units * t["per_floor"] * OCCUPANCY[bool(cp.old)] for _, _, f in slots])
        keep = np.ones(len(slots), dtype=bool)
        while True:
            excess = expect[keep].sum() - target
            cand = np.flatnonzero(keep & (expect <= excess))
            if excess <= 0 or len(cand) == 0 or keep.sum() == 1:
                break
            keep[cand[rng.integers(len(cand))]] = False
        slots = [s_ for s_, k in zip(slots, keep, strict=False) if k]
    blds, paths = [], []
    used_rows = sorted({r for r, _, _ in slots})
    for r in used_rows:
        by = rows_y[r]
        xs_r = np.array([bx for rr, bx, _ in slots if rr == r])
        for rr, bx, f in slots:
            if rr == r:
                blds.append(
                    dict(
                        x0=round(bx, 2),
                        y0=round(by, 2),
                        x1=round(bx + length, 2),
                        y1=round(by + depth, 2),
                        floors=f,
                        units=units,
                        per_floor=t["per_floor"],
                        btype=cp.btype,
                        type_label=t["label"],
                    )
                )
        py = round(by - 5, 2)
        doors = np.round(xs_r + length / 2, 2)
        paths.append(
            Line("h", py, float(min(doors.min(), xs)), float(max(doors.max(), xs)), "path", f"{cp.name}内部道路")
        )
        # entrance nodes: the row path is split where each building's door faces it
        for dx in doors:
            paths.append(Line("v", float(dx), py, py, "entrance", None))
    first, last = round(rows_y[used_rows[0]] - 5, 2), round(rows_y[used_rows[-1]] - 5, 2)
    if getattr(cp, "gate", "south") == "north":  # the northern compounds of a block open to the north
        paths.append(Line("v", xs, first, y1, "path", f"{cp.name}主路"))
        paths.append(Line("v", xs, y1, cp.road_north, "gate", f"{cp.name}北门"))
        return blds, paths, [dict(name=f"{cp.name}北门", x=xs, y=y1)]
    north_gate = len(rows_y) >= 4 and rng.random() < 0.6
    top = y1 if north_gate else last
    paths.append(Line("v", xs, y0, top, "path", f"{cp.name}主路"))
    paths.append(Line("v", xs, cp.road_south, y0, "gate", f"{cp.name}南门"))
    gates = [dict(name=f"{cp.name}南门", x=xs, y=y0)]
    if north_gate:
        paths.append(Line("v", xs, y1, cp.road_north, "gate", f"{cp.name}北门"))
        gates.append(dict(name=f"{cp.name}北门", x=xs, y=y1))
    return blds, paths, gates


def _per_half(half_w: float, units: int, t: dict) -> tuple[int, int]:
    """(units per building, buildings per half row) for a half row ``half_w`` metres wide."""
    length = units * t["unit_w"]
    n_half = int((half_w + t["gx"]) // (length + t["gx"]))
    if n_half == 0:
        units = max(1, int(half_w // t["unit_w"]))
        n_half = 1 if units * t["unit_w"] <= half_w else 0
    return units, n_half


def _number_buildings(buildings: pd.DataFrame, compounds: pd.DataFrame) -> pd.DataFrame:
    """Building codes: community + 5-digit number; names N栋 within the compound."""
    b = buildings.copy()
    order = compounds.reset_index()[["code", "index"]].rename(columns={"code": "compound_code", "index": "corder"})
    b = b.merge(order, on="compound_code", how="left")
    b["cx"] = (b["x0"] + b["x1"]) / 2
    b["cy"] = (b["y0"] + b["y1"]) / 2
    b = b.sort_values(["corder", "cy", "cx"], ascending=[True, False, True], kind="stable").reset_index(drop=True)
    b["no_in_compound"] = b.groupby("compound_code").cumcount() + 1
    seq = b.groupby("community_code").cumcount() + 1
    b["code"] = b["community_code"] + seq.map("{:05d}".format)
    cname = compounds.set_index("code")["name"]
    b["name"] = b["no_in_compound"].astype(str) + "栋"
    b["address"] = b["compound_code"].map(cname) + b["name"]
    return b.drop(columns=["corder"])
