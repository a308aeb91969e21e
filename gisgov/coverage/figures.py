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

import numpy as np
import pandas as pd
from scipy import sparse

from gisgov.coverage.catalog import Catalog
from gisgov.coverage.model import DistanceTable

LEVELS = ("street", "community", "grid", "compound")
WEIGHTS = ("buildings", "households", "residents")
FIGURE_COLUMNS = ["level", "code", "item_kind", "item", "profile", "circle", "buildings", "buildings_in",
                  "households", "households_in", "residents", "residents_in"]


def _units(buildings: pd.DataFrame, levels) -> tuple[np.ndarray, pd.DataFrame]:
    """Each building's unit (distinct combination of level codes) and the unit table."""
    keys = pd.DataFrame({lvl: (buildings[lvl].astype("string").fillna("") if lvl in buildings else "")
                         for lvl in levels}, index=buildings.index)
    joined = keys.iloc[:, 0].astype(str)
    for lvl in levels[1:]:
        joined = joined + "|" + keys[lvl].astype(str)
    codes, uniq = pd.factorize(joined)
    first = np.full(len(uniq), -1)
    first[codes[::-1]] = np.arange(len(codes))[::-1]
    return codes.astype(np.int64), keys.iloc[first].reset_index(drop=True)


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
        df = pd.DataFrame({"level": lvl, "code": np.repeat(codes, k)})
        for i, c in enumerate(meta_cols):
            df[c] = np.tile(np.array([t[i] for t in meta], dtype=object), len(codes))
        for v, c in enumerate(value_cols):
            df[c] = sums[:, :, v].ravel()
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def coverage_figures(buildings: pd.DataFrame, table: DistanceTable, catalog: Catalog, *,
                     levels=LEVELS, categories: list[str] | None = None,
                     standards: list[str] | None = None) -> pd.DataFrame:
    """All figures (see module doc). ``categories`` limits the category rows; ``standards`` the
    complete-circle rows (default: every standard whose categories are all in the table)."""
    unit, units = _units(buildings, levels)
    nu = len(units)
    w = _weights(buildings)
    budgets = catalog.budgets()
    bvals = np.unique(budgets["distance_m"].to_numpy(float))
    nr = len(bvals) + 1
    pairs_all = [(r.profile, r.circle, float(r.distance_m)) for r in budgets.itertuples()]
    ring_of = [int(np.searchsorted(bvals, b)) for _, _, b in pairs_all]
    tot = np.column_stack([np.bincount(unit, weights=w[:, k], minlength=nu) for k in range(3)])
    blocks, meta = [], []

    def inside_by_ring(ring: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        u, r, ww = (unit, ring, w) if mask is None else (unit[mask], ring[mask], w[mask])
        key = u * nr + r
        return np.stack([np.bincount(key, weights=ww[:, k], minlength=nu * nr).reshape(nu, nr).cumsum(1)
                         for k in range(3)], axis=2)  # (nu, nr, 3)

    def totals(mask):
        if mask is None:
            return tot
        return np.column_stack([np.bincount(unit[mask], weights=w[mask, k], minlength=nu) for k in range(3)])

    for code in categories or table.categories:
        ring = np.searchsorted(bvals, table.dist[:, table.col(code)], side="left")
        cum = inside_by_ring(ring, None)
        for (profile, circle, _), ri in zip(pairs_all, ring_of):
            blocks.append(np.concatenate([tot, cum[:, ri, :]], axis=1))
            meta.append(("category", code, profile, circle))

    if standards is None:
        standards = [std.code for std in catalog.standards
                     if all(c in table.categories for _, cats in std.tiers for c in cats)]
    rule = (buildings["rule_set"].fillna("urban").to_numpy() if "rule_set" in buildings
            else np.full(len(buildings), "urban"))
    for std in catalog.standards:
        if std.code in standards:
            mask = None if std.applies_to == "all" else (rule == std.applies_to)
            if mask is not None and not mask.any():
                continue
            t = totals(mask)
            for profile in catalog.profiles:
                for tier, _ in std.tiers:
                    ok = complete_mask(table, catalog, std.code, tier, profile.code)
                    sel = ok if mask is None else (ok & mask)
                    inside = np.column_stack([np.bincount(unit[sel], weights=w[sel, k], minlength=nu) for k in range(3)])
                    blocks.append(np.concatenate([t, inside], axis=1))
                    meta.append(("complete", std.code, profile.code, tier))
    if not blocks:
        return pd.DataFrame(columns=FIGURE_COLUMNS)
    per_unit = np.stack(blocks, axis=1)  # (nu, K, 6): tot b, h, r, in b, h, r
    out = _long(_level_matrices(units, levels), per_unit, meta, ["item_kind", "item", "profile", "circle"],
                ["buildings", "households", "residents", "buildings_in", "households_in", "residents_in"])
    out = out[FIGURE_COLUMNS]
    for c in ("buildings", "buildings_in", "residents", "residents_in"):
        out[c] = out[c].round().astype(np.int64)
    return out


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


def group_figures(buildings: pd.DataFrame, groups: pd.DataFrame | None, table: DistanceTable, catalog: Catalog,
                  *, levels=LEVELS) -> pd.DataFrame:
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
        blocks.append(np.column_stack([np.bincount(unit[bi], weights=n, minlength=len(units)),
                                       np.bincount(unit[bi], weights=n * beyond, minlength=len(units))]))
        meta.append((rule.group, rule.category, rule.profile, rule.circle))
    if not blocks:
        return pd.DataFrame(columns=cols)
    out = _long(_level_matrices(units, levels), np.stack(blocks, axis=1), meta,
                ["group_code", "category", "profile", "circle"], ["residents", "beyond"])[cols]
    out["residents"] = out["residents"].round().astype(np.int64)
    out["beyond"] = out["beyond"].round().astype(np.int64)
    return out
