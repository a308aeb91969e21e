"""Coverage figures at every level: share of buildings, households and residents within each circle.

Pure arrays: buildings (with their street/community/grid/compound codes and weights) and a
:class:`~gisgov.coverage.model.DistanceTable`. Rows come out long:

    level, code, item_kind ('category' | 'complete'), item, profile, circle,
    buildings, buildings_in, households, households_in, residents, residents_in

``complete`` rows: ``item`` = standard code; a building has a complete circle of tier T when every
category of every tier ≤ T of the standard is within the budget of the tier that lists it. Only
buildings of communities the standard applies to (urban/rural) are counted for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from gisgov.coverage.catalog import Catalog
from gisgov.coverage.model import DistanceTable

LEVELS = ("street", "community", "grid", "compound")
WEIGHTS = ("buildings", "households", "residents")
FIGURE_COLUMNS = [
    "level",
    "code",
    "item_kind",
    "item",
    "profile",
    "circle",
    "buildings",
    "buildings_in",
    "households",
    "households_in",
    "residents",
    "residents_in",
]


def _units(buildings: pd.DataFrame, levels) -> tuple[np.ndarray, pd.DataFrame]:
    """Each building's unit (distinct combination of level codes) and the unit table."""
    key = np.zeros(len(buildings), dtype=np.int64)
    cols = {}
    for lvl in levels:
        col = buildings[lvl] if lvl in buildings else pd.Series([None] * len(buildings))
        codes, uniq = pd.factorize(col.to_numpy(dtype=object), use_na_sentinel=True)
        uniq = np.concatenate([np.asarray(uniq, dtype=object).astype(str), np.array([""], dtype=object)])
        codes = np.where(codes < 0, len(uniq) - 1, codes)
        if (int(key.max(initial=0)) + 1) * len(uniq) >= 2**62:  # keep the combined key in int64
            key = np.unique(key, return_inverse=True)[1].astype(np.int64)
        key = key * len(uniq) + codes
        cols[lvl] = (codes, uniq)
    unit_key, inv = np.unique(key, return_inverse=True)
    firsts = np.zeros(len(unit_key), dtype=np.int64)
    firsts[inv[::-1]] = np.arange(len(key))[::-1]
    table = pd.DataFrame({lvl: uniq[codes[firsts]] for lvl, (codes, uniq) in cols.items()})
    return inv.astype(np.int64), table


@dataclass
class UnitIndex:
    """Buildings grouped into units (same street/community/grid/compound) and the level sums."""

    unit: np.ndarray
    units: pd.DataFrame
    mats: list
    stacked: sparse.csr_matrix = None  # all levels' matrices on top of each other
    offsets: dict = None  # level → first row in ``stacked``

    @classmethod
    def build(cls, buildings: pd.DataFrame, levels=None) -> UnitIndex:
        levels = levels or LEVELS
        unit, units = _units(buildings, levels)
        mats = _level_matrices(units, levels)
        offsets, start = {}, 0
        for lvl, codes, _ in mats:
            offsets[lvl] = start
            start += len(codes)
        stacked = sparse.vstack([m for _, _, m in mats]).tocsr() if mats else None
        return cls(unit, units, mats, stacked, offsets)


def _weights(buildings: pd.DataFrame) -> np.ndarray:
    w = np.ones((len(buildings), 3))
    for j, c in enumerate(WEIGHTS[1:], 1):
        if c in buildings:
            w[:, j] = pd.to_numeric(buildings[c], errors="coerce").fillna(0).to_numpy(float)
        else:
            w[:, j] = 0.0
    return w


def _level_matrices(units: pd.DataFrame, levels) -> list[tuple[str, np.ndarray, sparse.csr_matrix]]:
    """Per level: its codes and the (n_codes × n_units) 0/1 matrix summing units into them."""
    out = []
    for lvl in levels:
        codes = units[lvl].to_numpy(dtype=object)
        keep = np.flatnonzero(codes != "")
        idx, uniq = pd.factorize(codes[keep], sort=True)
        m = sparse.csr_matrix((np.ones(len(keep)), (idx, keep)), shape=(len(uniq), len(units)))
        out.append((lvl, np.asarray(uniq, dtype=object), m))
    return out


def _long(level_mats, per_unit: np.ndarray, meta: list[tuple], meta_cols: list[str], value_cols: list[str]):
    """per_unit (n_units, K, V) + K meta tuples → long frame over levels × codes × K."""
    nu, k, nv = per_unit.shape
    flat = per_unit.reshape(nu, k * nv)
    frames = []
    for lvl, codes, m in level_mats:
        sums = np.asarray(m @ flat).reshape(len(codes), k, nv)
        frames.append(_frame(lvl, codes, sums, meta, meta_cols, value_cols))
    return pd.concat(frames, ignore_index=True)


def _frame(lvl, codes, sums, meta, meta_cols, value_cols) -> pd.DataFrame:
    k = len(meta)
    df = pd.DataFrame({"level": lvl, "code": np.repeat(np.asarray(codes, dtype=object), k)})
    for i, c in enumerate(meta_cols):
        df[c] = np.tile(np.array([t[i] for t in meta], dtype=object), len(codes))
    for v, c in enumerate(value_cols):
        df[c] = sums[:, :, v].ravel()
    return df


@dataclass
class Figures:
    """All figures as arrays: per level, ``inside[level]`` (n_codes, 3, K) and the totals of each
    building mask (``all`` / ``urban`` / ``rural``), K items described by ``meta`` rows
    (item_kind, item, profile, circle, mask). :meth:`frame` gives the long table for any part."""

    codes: dict[str, np.ndarray]
    inside: dict[str, np.ndarray]
    totals: dict[str, dict[str, np.ndarray]]
    meta: list[tuple[str, str, str, str, str]]

    def frame(self, level: str | None = None, code: str | None = None) -> pd.DataFrame:
        frames = []
        for lvl in self.codes:
            if level is not None and lvl != level:
                continue
            codes = self.codes[lvl]
            rows = np.arange(len(codes)) if code is None else np.flatnonzero(codes == str(code))
            if len(rows) == 0 or not self.meta:
                continue
            masks = [m[4] for m in self.meta]
            tot = np.stack([self.totals[lvl][mk][rows] for mk in masks], axis=1)  # (n, K, 3)
            vals = np.concatenate([tot, self.inside[lvl][rows].transpose(0, 2, 1)], axis=2)
            frames.append(
                _frame(
                    lvl,
                    codes[rows],
                    vals,
                    [m[:4] for m in self.meta],
                    ["item_kind", "item", "profile", "circle"],
                    ["buildings", "households", "residents", "buildings_in", "households_in", "residents_in"],
                )
            )
        if not frames:
            return pd.DataFrame(columns=FIGURE_COLUMNS)
        out = pd.concat(frames, ignore_index=True)[FIGURE_COLUMNS]
        for c in ("buildings", "buildings_in", "residents", "residents_in"):
            out[c] = out[c].round().astype(np.int64)
        return out


def figure_arrays(
    buildings: pd.DataFrame,
    table: DistanceTable,
    catalog: Catalog,
    *,
    levels=LEVELS,
    categories: list[str] | None = None,
    standards: list[str] | None = None,
    index: UnitIndex | None = None,
) -> Figures:
    """All figures (see module doc) as arrays. ``categories`` limits the category rows; ``standards``
    the complete-circle rows (default: every standard whose categories are all in the table);
    ``index`` = a prebuilt :class:`UnitIndex` of these buildings (reused across runs)."""
    index = index or UnitIndex.build(buildings, levels)
    unit, units, mats = index.unit, index.units, index.mats
    nu = len(units)
    w = _weights(buildings)
    budgets = catalog.budgets()
    bvals = np.unique(budgets["distance_m"].to_numpy(float))
    nr = len(bvals) + 1
    pairs_all = [(r.profile, r.circle, float(r.distance_m)) for r in budgets.itertuples()]
    ring_of = np.array([int(np.searchsorted(bvals, b)) for _, _, b in pairs_all])
    rule = (
        buildings["rule_set"].fillna("urban").to_numpy()
        if "rule_set" in buildings
        else np.full(len(buildings), "urban")
    )
    if standards is None:
        standards = [
            std.code for std in catalog.standards if all(c in table.categories for _, cats in std.tiers for c in cats)
        ]
    cats = list(categories or table.categories)
    meta = [("category", c, p, ci, "all") for c in cats for p, ci, _ in pairs_all]
    std_jobs = []
    for std in catalog.standards:
        if std.code not in standards:
            continue
        mk = "all" if std.applies_to == "all" else std.applies_to
        if mk != "all" and not (rule == mk).any():
            continue
        for profile in catalog.profiles:
            for tier, _ in std.tiers:
                std_jobs.append((std, profile.code, tier, mk))
                meta.append(("complete", std.code, profile.code, tier, mk))
    K = len(meta)
    big = index.stacked
    n_all = big.shape[0]
    inside_all = np.zeros((n_all, 3, K))
    totals: dict[str, dict[str, np.ndarray]] = {lvl: {} for lvl, _, _ in mats}
    for mk in sorted({m[4] for m in meta}):
        sel = np.ones(len(unit), dtype=bool) if mk == "all" else (rule == mk)
        per_unit = np.column_stack([np.bincount(unit[sel], weights=w[sel, k], minlength=nu) for k in range(3)])
        for lvl, _codes, m in mats:
            totals[lvl][mk] = np.asarray(m @ per_unit)

    P = len(pairs_all)
    k0 = 0
    wc = [None, np.ascontiguousarray(w[:, 1]), np.ascontiguousarray(w[:, 2])]
    ring_fn = _ring_function(bvals)
    rings: dict[str, np.ndarray] = {}
    unit_nr = unit * nr
    for code in cats:
        ring = ring_fn(table.dist[:, table.col(code)])
        rings[code] = ring
        key = unit_nr + ring
        x = np.concatenate(
            [np.bincount(key, weights=wc[k], minlength=nu * nr).reshape(nu, nr) for k in range(3)], axis=1
        )  # (nu, 3 nr) ring histograms
        y = np.asarray(big @ x).reshape(n_all, 3, nr).cumsum(axis=2)  # (codes, 3, nr) cumulative
        inside_all[:, :, k0 : k0 + P] = y[:, :, ring_of]
        k0 += P
    ring_index = {float(b): i for i, b in enumerate(bvals)}
    for std, profile, tier, mk in std_jobs:
        ok = np.ones(len(unit), dtype=bool)
        for c, circle in std.requirements(tier):
            r = rings[c] if c in rings else ring_fn(table.dist[:, table.col(c)])
            ok &= r <= ring_index[catalog.budget_m(circle, profile)]
        if mk != "all":
            ok &= rule == mk
        per_unit = np.column_stack(
            [np.bincount(unit[ok], weights=None if k == 0 else wc[k][ok], minlength=nu) for k in range(3)]
        )
        inside_all[:, :, k0] = np.asarray(big @ per_unit)
        k0 += 1
    inside = {lvl: inside_all[index.offsets[lvl] : index.offsets[lvl] + len(codes)] for lvl, codes, _ in mats}
    return Figures({lvl: codes for lvl, codes, _ in mats}, inside, totals, meta)


def _ring_function(bvals: np.ndarray):
    """distance → index of the smallest budget that holds it (len(bvals) = none), as int8/int16.

    With whole-metre budgets a lookup table on ceil(distance) replaces the binary search
    (d ≤ b ⇔ ceil(d) ≤ b for integer b)."""
    n = len(bvals)
    dtype = np.int8 if n < 127 else np.int16
    if np.all(bvals == np.round(bvals)) and bvals[-1] < 1e6:
        top = int(bvals[-1]) + 1
        lut = np.searchsorted(bvals, np.arange(top + 1), side="left").astype(dtype)

        def ring(d):
            i = np.ceil(np.minimum(d, top))
            return lut[i.astype(np.int32)]

        return ring
    return lambda d: np.searchsorted(bvals, d, side="left").astype(dtype)


def coverage_figures(
    buildings: pd.DataFrame,
    table: DistanceTable,
    catalog: Catalog,
    *,
    levels=LEVELS,
    categories: list[str] | None = None,
    standards: list[str] | None = None,
) -> pd.DataFrame:
    """All figures as the long table (see module doc and :func:`figure_arrays`)."""
    return figure_arrays(buildings, table, catalog, levels=levels, categories=categories, standards=standards).frame()


def complete_mask(table: DistanceTable, catalog: Catalog, standard: str, tier: str, profile: str) -> np.ndarray:
    """Buildings with a complete circle of ``tier`` under ``standard`` (cumulative tiers)."""
    ok = np.ones(table.dist.shape[0], dtype=bool)
    for cat, circle in catalog.standard(standard).requirements(tier):
        ok &= table.dist[:, table.col(cat)] <= catalog.budget_m(circle, profile)
    return ok


def with_shares(fig: pd.DataFrame) -> pd.DataFrame:
    """Add share_buildings / share_households / share_residents (0–1; NaN when the total is 0)."""
    out = fig.copy()
    for w in WEIGHTS:
        tot = out[w].astype(float)
        out[f"share_{w}"] = np.where(tot > 0, out[f"{w}_in"] / tot.where(tot > 0, 1), np.nan)
    return out


def group_figures(
    buildings: pd.DataFrame, groups: pd.DataFrame | None, table: DistanceTable, catalog: Catalog, *, levels=LEVELS
) -> pd.DataFrame:
    """Special groups beyond a circle (catalog ``special_groups``): residents, beyond, per level.

    ``groups``: building_id, group_code, residents (count of that group's residents in the building).
    """
    cols = ["level", "code", "group_code", "category", "profile", "circle", "residents", "beyond"]
    if groups is None or len(groups) == 0 or not catalog.special_groups:
        return pd.DataFrame(columns=cols)
    unit, units = _units(buildings, levels)
    pos = pd.Series(np.arange(len(buildings)), index=buildings["id"].to_numpy())
    blocks, meta = [], []
    for rule in catalog.special_groups:
        if rule.category not in table.categories:
            continue
        g = groups[groups["group_code"] == rule.group]
        bi = pos.reindex(g["building_id"].to_numpy()).to_numpy()
        found = ~np.isnan(bi)
        if not found.any():
            continue
        bi = bi[found].astype(np.int64)
        n = g["residents"].to_numpy(float)[found]
        d = table.dist[bi, table.col(rule.category)]
        beyond = ~(d <= catalog.budget_m(rule.circle, rule.profile))
        blocks.append(
            np.column_stack(
                [
                    np.bincount(unit[bi], weights=n, minlength=len(units)),
                    np.bincount(unit[bi], weights=n * beyond, minlength=len(units)),
                ]
            )
        )
        meta.append((rule.group, rule.category, rule.profile, rule.circle))
    if not blocks:
        return pd.DataFrame(columns=cols)
    out = _long(
        _level_matrices(units, levels),
        np.stack(blocks, axis=1),
        meta,
        ["group_code", "category", "profile", "circle"],
        ["residents", "beyond"],
    )[cols]
    out["residents"] = out["residents"].round().astype(np.int64)
    out["beyond"] = out["beyond"].round().astype(np.int64)
    return out
