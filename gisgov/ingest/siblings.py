"""不重不漏: records of one level must not overlap each other, and should leave no gap inside their parent.

Checked at import, after the per-record rules (:mod:`gisgov.ingest.validate`), on the rows about to be
written together with what the database already holds at the same level:

* **Overlaps** (rule ``sibling_overlap``). Siblings are: all streets; all communities; the grids of the
  same community in the current set (``grid_current()``: active plans' grids and grids made outside
  plans); the compounds of the same community. Buildings and facilities are not checked. An overlap
  counts when its area exceeds BOTH ``GISGOV_INGEST_OVERLAP_M2`` (default 1 m²) and
  ``GISGOV_INGEST_OVERLAP_SHARE`` (default 0.1 %) of the smaller of the two areas, so shared edges
  digitised a few centimetres apart pass. Without ``repair`` the newer record is rejected, naming both
  records, the overlap area and the rule; with ``repair`` the newer record (a record of the file
  against the database; a later record of the file against an earlier one) loses the overlap and the
  trim is reported. A record an existing one covers entirely is rejected even with ``repair``.
* **Gaps** (rule ``parent_gap``, a note, never a rejection): the part of each parent touched by the
  import (a street for communities, a community for grids) that none of its children covers, piece by
  piece above ``GISGOV_INGEST_GAP_M2`` (default 1 m²), with its area and a point inside it.

Areas are measured in metres on a Lambert azimuthal equal-area projection centred on the data; the
geometry operations run in the storage lon/lat (no reprojection of what is written).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer
from shapely import STRtree

from gisgov.ingest.levels import LEVELS
from gisgov.ingest.report import INFO, REPAIRED, Issue
from gisgov.ingest.rules import msg
from gisgov.ingest.settings import IngestSettings, get_ingest_settings
from gisgov.ingest.validate import Parents, polygonal_part

# Levels whose records may not overlap: level → how siblings are grouped (None: the whole level).
OVERLAP_GROUP: dict[str, str | None] = {
    "street": None,
    "community": None,
    "grid": "community_code",
    "compound": "community_code",
}
# Levels whose records should cover their parent (level → parent code column).
GAP_PARENT: dict[str, str] = {"community": "street_code", "grid": "community_code"}
MAX_GAPS_PER_PARENT = 20


@dataclass
class Metric:
    """lon/lat → metres (equal-area, centred on the data) for measuring areas."""

    tr: Transformer

    @classmethod
    def around(cls, geoms: Any) -> Metric:
        arr = np.asarray([g for g in geoms if g is not None and not g.is_empty], dtype=object)
        if arr.size:
            b = shapely.total_bounds(arr)
            lon, lat = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        else:
            lon, lat = 117.0, 32.0
        proj = f"+proj=laea +lat_0={lat:.6f} +lon_0={lon:.6f} +datum=WGS84 +units=m +no_defs"
        return cls(Transformer.from_crs("EPSG:4326", proj, always_xy=True))

    def area(self, g: Any) -> float:
        if g is None or g.is_empty:
            return 0.0
        return float(
            shapely.area(shapely.transform(g, lambda xy: np.column_stack(self.tr.transform(xy[:, 0], xy[:, 1]))))
        )


def _fmt_m2(a: float) -> str:
    return f"{a:,.0f} m²" if a >= 10 else f"{a:.1f} m²"


def _where(g: Any) -> str:
    p = shapely.point_on_surface(g)
    return f"{p.x:.6f},{p.y:.6f}"


def check_overlaps(
    level: str,
    records: list[str],
    rows: pd.DataFrame,
    ok: np.ndarray,
    existing: Parents,
    *,
    repair: bool,
    settings: IngestSettings | None = None,
) -> list[Issue]:
    """Overlap rule on ``rows`` (columns code, geom, pos and the parent code column); trims ``rows.geom`` /
    ``rows.pos`` in place under ``repair``; clears ``ok`` of rejected records. ``existing``: the level's
    records in the database (``community`` = their parent code); those whose code the file carries (an
    update replaces them) are left out."""
    if level not in OVERLAP_GROUP:
        return []
    s = settings or get_ingest_settings()
    group_col = OVERLAP_GROUP[level]
    n = len(rows)
    geoms = rows["geom"].to_numpy(dtype=object).copy()
    codes = rows["code"].tolist()
    groups = rows[group_col].tolist() if group_col else [None] * n
    idx = [i for i in range(n) if ok[i] and geoms[i] is not None and geoms[i].geom_type in ("Polygon", "MultiPolygon")]
    if not idx:
        return []
    mine = {c for c in codes if c}
    keep = [k for k in range(len(existing.codes)) if existing.codes[k] not in mine]
    ex_geoms = existing.geoms[keep] if keep else np.array([], dtype=object)
    ex_codes = existing.codes[keep] if keep else np.array([], dtype=object)
    ex_groups = (
        existing.community[keep]
        if (keep and existing.community is not None)
        else np.array([None] * len(keep), dtype=object)
    )
    metric = Metric.around(geoms[idx])
    ex_tree = STRtree(ex_geoms) if len(ex_geoms) else None
    new_tree = STRtree(geoms[idx])
    issues: list[Issue] = []
    area_cache: dict[int, float] = {}

    def ex_area(k: int) -> float:
        if k not in area_cache:
            area_cache[k] = metric.area(ex_geoms[k])
        return area_cache[k]

    for pos_j, j in enumerate(idx):
        g = geoms[j]
        own_area = metric.area(g)
        others: list[tuple[Any, str, float]] = []  # (geometry, label, area)
        if ex_tree is not None:
            for k in sorted(ex_tree.query(g, predicate="intersects"), key=lambda k: str(ex_codes[k])):
                if group_col is None or ex_groups[k] == groups[j]:
                    others.append((ex_geoms[k], f"{level} {ex_codes[k]} (已在数据库 in the database)", ex_area(int(k))))
        for q in sorted(new_tree.query(g, predicate="intersects")):
            i = idx[q]
            if q >= pos_j or not ok[i] or geoms[i] is None:
                continue
            if group_col is None or groups[i] == groups[j]:
                others.append((geoms[i], records[i], metric.area(geoms[i])))
        trimmed: list[str] = []
        for other, label, other_area in others:
            inter = polygonal_part(shapely.intersection(g, other))
            if inter is None:
                continue
            a = metric.area(inter)
            smaller = min(own_area, other_area) or 1.0
            if a <= s.overlap_m2 or a <= s.overlap_share * smaller:
                continue
            what = f"overlaps {label} by {_fmt_m2(a)} ({a / smaller:.1%} of the smaller) around {_where(inter)}"
            if not repair:
                issues.append(Issue(records[j], "sibling_overlap", _fmt_m2(a), msg("sibling_overlap", what)))
                ok[j] = False
                continue
            rest = polygonal_part(shapely.make_valid(shapely.difference(g, other)))
            if rest is None or metric.area(rest) <= s.overlap_m2:
                issues.append(
                    Issue(
                        records[j],
                        "sibling_overlap",
                        _fmt_m2(a),
                        msg("sibling_overlap", f"{what}; nothing would be left after trimming 裁剪后无剩余"),
                    )
                )
                ok[j] = False
                break
            g = rest
            own_area = metric.area(g)
            trimmed.append(label)
            issues.append(
                Issue(
                    records[j],
                    "sibling_overlap",
                    _fmt_m2(a),
                    msg("sibling_overlap", f"已裁去重叠部分 trimmed: {what}; {_fmt_m2(own_area)} kept"),
                    REPAIRED,
                )
            )
        if trimmed and ok[j]:
            geoms[j] = g
            rows.at[j, "geom"] = g
            rows.at[j, "pos"] = shapely.point_on_surface(g)
    return issues


def check_gaps(
    level: str,
    rows: pd.DataFrame,
    ok: np.ndarray,
    parents: Parents,
    existing: Parents,
    *,
    settings: IngestSettings | None = None,
) -> list[Issue]:
    """Notes (rule ``parent_gap``) for the uncovered parts of each parent the rows fall in."""
    if level not in GAP_PARENT:
        return []
    s = settings or get_ingest_settings()
    col = GAP_PARENT[level]
    children: dict[Any, list[Any]] = defaultdict(list)
    mine: set[Any] = set()
    for i in range(len(rows)):
        pc, g = rows.at[i, col], rows.at[i, "geom"]
        if ok[i] and pc is not None and g is not None:
            children[pc].append(g)
            mine.add(rows.at[i, "code"])
    if not children:
        return []
    for k in range(len(existing.codes)):
        pc = existing.community[k] if existing.community is not None else None
        if pc in children and existing.codes[k] not in mine:
            children[pc].append(existing.geoms[k])
    metric = Metric.around([g for gs in children.values() for g in gs])
    issues: list[Issue] = []
    parent_level = {"street_code": "street", "community_code": "community"}[col]
    zh_parent, zh = LEVELS[parent_level].zh, LEVELS[level].zh
    for pc in sorted(children):
        kp = parents.index(pc)
        if kp is None:
            continue
        k = kp
        gap = polygonal_part(shapely.difference(parents.geoms[k], shapely.union_all(children[pc])))
        if gap is None:
            continue
        pieces = sorted(((metric.area(p), p) for p in gap.geoms), key=lambda t: -t[0])
        pieces = [(a, p) for a, p in pieces if a > s.gap_m2]
        big_from = s.gap_share * metric.area(parents.geoms[k])
        gaps = [(a, p) for a, p in pieces if a > big_from]
        slivers = [(a, p) for a, p in pieces if a <= big_from]
        where = f"{parent_level} {pc}"
        for a, p in gaps[:MAX_GAPS_PER_PARENT]:
            issues.append(
                Issue(
                    f"({where})",
                    "parent_gap",
                    _fmt_m2(a),
                    msg(
                        "parent_gap",
                        f"{zh_parent}{pc} 内有 {_fmt_m2(a)} 不属于任何{zh}; a gap of {_fmt_m2(a)} inside {where} "
                        f"belongs to no {level}, around {_where(p)}",
                    ),
                    INFO,
                )
            )
        rest = gaps[MAX_GAPS_PER_PARENT:] + slivers
        if rest:
            total = sum(a for a, _ in rest)
            a0, p0 = max(rest, key=lambda t: t[0])
            issues.append(
                Issue(
                    f"({where})",
                    "parent_gap",
                    _fmt_m2(total),
                    msg(
                        "parent_gap",
                        f"{zh_parent}{pc} 内另有 {len(rest)} 处细缝 {len(rest)} more gap(s)/sliver(s) inside {where}, "
                        f"{_fmt_m2(total)} in all; the largest {_fmt_m2(a0)} around {_where(p0)}",
                    ),
                    INFO,
                )
            )
    return issues
