"""Validate (and with ``repair`` fix) one level's records. Pure: no database, no files.

Input: a :class:`Batch` (canonical attribute columns + geometries already in storage lon/lat) and
a :class:`Context` (what the database holds: existing codes, parent polygons …). Output: the rows
to write and the report lines. Every rule is in :mod:`gisgov.ingest.rules`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import shapely
from shapely import STRtree

from gisgov.ingest.levels import LEVELS, Level
from gisgov.ingest.report import INFO, REJECTED, REPAIRED, Issue
from gisgov.ingest.rules import msg


@dataclass
class Batch:
    level: Level
    records: list[str]
    attrs: pd.DataFrame  # canonical fields (strings or None); missing fields absent
    geoms: np.ndarray  # storage lon/lat shapely geometries (None = missing)
    problems: dict[int, tuple[str, str]] = field(default_factory=dict)
    source: str = ""


@dataclass
class Parents:
    """Polygons of one level with their codes (and ids): the candidates for a parent."""

    codes: np.ndarray
    geoms: np.ndarray
    ids: np.ndarray | None = None
    community: np.ndarray | None = None  # community_code of compounds/grids

    def __post_init__(self):
        self.codes = np.asarray(self.codes, dtype=object)
        self.geoms = np.asarray(self.geoms, dtype=object)
        self._tree = STRtree(self.geoms) if len(self.geoms) else None
        self._index = {c: i for i, c in enumerate(self.codes)}

    @classmethod
    def empty(cls) -> Parents:
        return cls(np.array([], dtype=object), np.array([], dtype=object))

    def index(self, code: str) -> int | None:
        return self._index.get(code)

    def containing(self, points: np.ndarray) -> np.ndarray:
        """Index of a polygon intersecting each point (-1 when none; lowest code when several)."""
        out = np.full(len(points), -1, dtype=np.int64)
        if self._tree is None or not len(points):
            return out
        ok = ~shapely.is_missing(points)
        pi, gi = self._tree.query(points[ok], predicate="intersects")
        idx = np.flatnonzero(ok)
        order = np.lexsort((self.codes[gi].astype(str), pi))
        seen = set()
        for k in order:
            p = idx[pi[k]]
            if p not in seen:
                out[p] = gi[k]
                seen.add(p)
        return out


@dataclass
class Context:
    srid: int = 4490
    region: tuple[float, float, float, float] | None = None
    existing_codes: set[str] = field(default_factory=set)
    parents: Parents = field(default_factory=Parents.empty)
    compounds: Parents = field(default_factory=Parents.empty)
    grids: Parents = field(default_factory=Parents.empty)
    categories: dict[str, str] = field(default_factory=dict)  # lower-case code/name_zh/alias → code
    clip_share: float = 0.5  # --repair clips a child to its parent when at least this share lies inside
    update: bool = False  # --update: a code already in the database is replaced (versioned), not rejected
    siblings: Parents = field(default_factory=Parents.empty)  # same-level records (community = parent code)


# Accepted spellings of enumerated values.
_BOOL = {
    "true": True,
    "false": False,
    "1": True,
    "0": False,
    "yes": True,
    "no": False,
    "y": True,
    "n": False,
    "是": True,
    "否": False,
    "有": True,
    "无": False,
    "t": True,
    "f": False,
}
_GRID_LEVEL = {"一级": "一级", "二级": "二级", "三级": "三级", "1": "一级", "2": "二级", "3": "三级"}
_RULE_SET = {"urban": "urban", "rural": "rural", "城市": "urban", "农村": "rural", "城镇": "urban"}
_COMMUNITY_CLASS = {"城市社区", "撤村建居", "村"}
_PROPERTY_MODE = {"物业公司", "业主自治", "社区兜底"}
_ROAD_CLASS = {"arterial", "local", "path", "gate", "bridge", "other"}
_ROAD_CLASS_ZH = {
    "主干路": "arterial",
    "次干路": "arterial",
    "干路": "arterial",
    "支路": "local",
    "街巷": "local",
    "步行道": "path",
    "人行道": "path",
    "小路": "path",
    "桥": "bridge",
    "门": "gate",
}

INT_RANGES = {"floors": (0, 300), "units": (0, 1000), "households": (0, 100000), "year_built": (1900, 2100)}
_INT_RE = re.compile(r"(\d+)")

POLYGONAL = {"Polygon", "MultiPolygon"}
LINEAR = {"LineString", "MultiLineString"}
PUNCTUAL = {"Point", "MultiPoint"}


def parse_int(v, name: str) -> tuple[int | None, bool]:
    """(value, ok): '6', '6.0', '6层', '1995年', '1990年代' → ints; '' → (None, True)."""
    if v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() == "":
        return None, True
    s = str(v).strip()
    try:
        f = float(s)
        if f.is_integer():
            x = int(f)
        else:
            x = int(round(f)) if name == "floors" else None
            if x is None:
                return None, False
    except ValueError:
        m = _INT_RE.search(s)
        if not m:
            return None, False
        x = int(m.group(1))
    lo, hi = INT_RANGES.get(name, (None, None))
    if lo is not None and not (lo <= x <= hi):
        return None, False
    return x, True


def parse_bool(v) -> tuple[bool | None, bool]:
    if v is None or str(v).strip() == "":
        return None, True
    b = _BOOL.get(str(v).strip().lower())
    return (b, b is not None)


def _col(df: pd.DataFrame, name: str) -> list:
    if name not in df.columns:
        return [None] * len(df)
    return [
        None if (v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() == "") else str(v).strip()
        for v in df[name].tolist()
    ]


def _polygonal_part(g: Any) -> Any:
    """The polygonal part of a (made-valid) geometry as a MultiPolygon, or None."""
    if g is None or g.is_empty:
        return None
    if g.geom_type == "Polygon":
        return shapely.MultiPolygon([g])
    if g.geom_type == "MultiPolygon":
        return g
    if g.geom_type == "GeometryCollection":
        polys = []
        for p in g.geoms:
            part = _polygonal_part(p)
            if part is not None:
                polys.extend(part.geoms)
        return shapely.MultiPolygon(polys) if polys else None
    return None


polygonal_part = _polygonal_part


def _in_box(bounds: np.ndarray, box) -> np.ndarray:
    minx, miny, maxx, maxy = box
    return (bounds[:, 0] >= minx) & (bounds[:, 2] <= maxx) & (bounds[:, 1] >= miny) & (bounds[:, 3] <= maxy)


def check_geometries(batch: Batch, ctx: Context, *, repair: bool) -> tuple[np.ndarray, list[Issue], np.ndarray]:
    """Geometry rules. Returns (geometries possibly repaired, issues, ok mask)."""
    level = batch.level
    geoms = np.array(batch.geoms, dtype=object, copy=True)
    n = len(geoms)
    issues: list[Issue] = []
    ok = np.ones(n, dtype=bool)
    rec = batch.records

    def add(i, rule, value, detail=None, action=REJECTED):
        issues.append(Issue(rec[i], rule, str(value), msg(rule, detail), action))
        if action == REJECTED:
            ok[i] = False

    for i, (rule, detail) in batch.problems.items():
        if repair and geoms[i] is not None and not geoms[i].is_empty:
            add(i, rule, detail, "closed by repeating the first vertex 已补全闭合点", REPAIRED)
        else:
            add(i, rule, detail)
    missing = shapely.is_missing(geoms)
    empty = np.zeros(n, dtype=bool)
    empty[~missing] = shapely.is_empty(geoms[~missing])
    for i in np.flatnonzero((missing | empty) & ok):
        add(i, "geom_empty", "EMPTY" if empty[i] else "NULL")
    types = np.array([None if not ok[i] else geoms[i].geom_type for i in range(n)], dtype=object)
    allowed = {"polygon": POLYGONAL, "point_or_polygon": POLYGONAL | PUNCTUAL, "line": LINEAR}[level.geom]
    for i in np.flatnonzero(ok):
        t = types[i]
        if t not in allowed:
            add(i, "geom_type", t, f"{level.name} needs {'/'.join(sorted(allowed))}")
        elif t == "MultiPoint" and len(geoms[i].geoms) != 1:
            add(i, "geom_type", f"MultiPoint({len(geoms[i].geoms)})", "one point per record")
        elif t == "MultiPoint":
            geoms[i] = geoms[i].geoms[0]
    # validity (polygons, lines)
    idx = np.flatnonzero(ok)
    if idx.size:
        valid = shapely.is_valid(geoms[idx])
        for i in idx[~valid]:
            reason = shapely.is_valid_reason(geoms[i])
            if repair and types[i] in POLYGONAL:
                fixed = _polygonal_part(shapely.make_valid(geoms[i]))
                if fixed is not None and fixed.is_valid:
                    add(
                        i,
                        "geom_invalid",
                        reason,
                        f"MakeValid → {len(fixed.geoms)} polygon(s), area kept 已用 MakeValid 修复",
                        REPAIRED,
                    )
                    geoms[i] = fixed
                    continue
            elif repair and types[i] in LINEAR:
                fixed = shapely.make_valid(geoms[i])
                if fixed is not None and not fixed.is_empty and fixed.geom_type in LINEAR:
                    add(i, "geom_invalid", reason, "MakeValid 已修复", REPAIRED)
                    geoms[i] = fixed
                    continue
            add(i, "geom_invalid", reason)
    # region and swapped axes
    if ctx.region is not None:
        idx = np.flatnonzero(ok)
        if idx.size:
            b = shapely.bounds(geoms[idx])
            inside = _in_box(b, ctx.region)
            swapped = _in_box(b[:, [1, 0, 3, 2]], ctx.region)
            for k in np.flatnonzero(~inside):
                i = idx[k]
                x, y = b[k, 0], b[k, 1]
                if swapped[k]:
                    if repair:
                        geoms[i] = shapely.transform(geoms[i], lambda xy: xy[:, ::-1])
                        add(
                            i,
                            "axis_swapped",
                            f"x={x:.6f}, y={y:.6f}",
                            "swapped back to lon/lat 已交换为经度/纬度",
                            REPAIRED,
                        )
                    else:
                        add(
                            i,
                            "axis_swapped",
                            f"x={x:.6f}, y={y:.6f}",
                            "looks like lat/lon; check the CRS or use --repair",
                        )
                else:
                    add(i, "outside_region", f"x={x:.6f}, y={y:.6f}", f"region {ctx.region}")
    return geoms, issues, ok


def _label(records: list[str], codes: list) -> list[str]:
    return [f"{r} (编码 {c})" if c else r for r, c in zip(records, codes, strict=False)]


def validate(batch: Batch, ctx: Context, *, repair: bool = False) -> tuple[pd.DataFrame, list[Issue]]:
    """Check every rule for one level; returns (rows to write, report lines).

    The rows are meaningful only when no line is ``rejected``.
    """
    level = batch.level
    n = len(batch.records)
    attrs = batch.attrs.reset_index(drop=True)
    codes = _col(attrs, "code")
    batch = Batch(level, _label(batch.records, codes), attrs, batch.geoms, batch.problems, batch.source)
    rec = batch.records
    geoms, issues, ok = check_geometries(batch, ctx, repair=repair)

    def add(i, rule, value, detail=None, action=REJECTED):
        issues.append(Issue(rec[i], rule, "" if value is None else str(value), msg(rule, detail), action))
        if action == REJECTED:
            ok[i] = False

    # normalise geometry per level
    pos = np.empty(n, dtype=object)
    shape = np.empty(n, dtype=object)
    for i in range(n):
        g = geoms[i]
        if g is None or g.is_empty or (not ok[i] and g.geom_type not in POLYGONAL | PUNCTUAL | LINEAR):
            continue
        t = g.geom_type
        if level.geom == "line":
            shape[i] = g
        elif t in POLYGONAL:
            shape[i] = g if t == "MultiPolygon" else shapely.MultiPolygon([g])
            pos[i] = shapely.point_on_surface(g)
        elif t == "Point":
            pos[i] = g
    if level.name == "facility":  # facilities are points; a polygon gives its point-on-surface
        shape = pos.copy()

    out = pd.DataFrame(index=range(n))
    # codes: hierarchy codes have a fixed number of digits; facility codes are free text
    if level.code_len is not None or level.name == "facility":
        pat = re.compile(rf"^\d{{{level.code_len}}}$") if level.code_len is not None else None
        first: dict[str, int] = {}
        for i, c in enumerate(codes):
            if c is None:
                continue
            if pat is not None and not pat.match(c):
                add(i, "code_format", c, f"{level.name} code has {level.code_len} digits")
                continue
            if c in first:
                add(i, "code_duplicate", c, f"first at {batch.records[first[c]]}")
            else:
                first[c] = i
            if c in ctx.existing_codes and not ctx.update:
                add(
                    i,
                    "code_exists",
                    c,
                    "loading never overwrites; use --update to replace it (the previous version is kept) "
                    "or give a new code",
                )

    # parents
    parent_code: list[str | None] = [None] * n
    if level.parent is not None:
        plen = LEVELS[level.parent].code_len
        given = _col(attrs, level.parent_col)
        spatial = ctx.parents.containing(pos)
        for i in range(n):
            c, gp = codes[i], given[i]
            if level.code_len is not None and c is not None and len(c) == level.code_len and c.isdigit():
                pc = c[:plen]
                if gp is not None and gp != pc:
                    add(i, "parent_mismatch", gp, f"code {c} belongs to {pc}")
                    continue
            else:
                pc = gp
            if pc is None:
                if spatial[i] >= 0:
                    pc = ctx.parents.codes[spatial[i]]
                elif level.name != "facility" and pos[i] is not None:
                    add(
                        i,
                        "no_parent",
                        f"{pos[i].x:.6f},{pos[i].y:.6f}",
                        f"no {level.parent} contains its point-on-surface",
                    )
                    continue
            if pc is None:
                continue
            k = ctx.parents.index(pc)
            if k is None:
                add(i, "parent_unknown", pc, f"no {level.parent} {pc}")
                continue
            parent_code[i] = pc
            if pos[i] is not None and ok[i] and not shapely.intersects(ctx.parents.geoms[k], pos[i]):
                pg = ctx.parents.geoms[k]
                if repair and shape[i] is not None and shape[i].geom_type == "MultiPolygon":
                    inter = _polygonal_part(shapely.intersection(shape[i], pg))
                    if inter is not None and inter.area >= ctx.clip_share * shape[i].area:
                        share = inter.area / shape[i].area
                        shape[i] = inter
                        pos[i] = shapely.point_on_surface(inter)
                        add(
                            i,
                            "outside_parent",
                            pc,
                            f"clipped to {level.parent} {pc} ({share:.0%} kept) 已裁剪到上级范围",
                            REPAIRED,
                        )
                        continue
                add(i, "outside_parent", pc, f"its point-on-surface lies outside {level.parent} {pc}")
        # assign codes to records without one: parent code + next sequence
        if level.code_len is not None:
            width = level.seq_width
            top: dict[str, int] = defaultdict(int)
            for c in list(ctx.existing_codes) + [c for c in codes if c]:
                if len(c) == level.code_len and c.isdigit():
                    top[c[:plen]] = max(top[c[:plen]], int(c[plen:]))
            assigned = 0
            for i in range(n):
                if codes[i] is None and ok[i] and parent_code[i] is not None:
                    top[parent_code[i]] += 1
                    if top[parent_code[i]] >= 10**width:
                        add(i, "code_format", parent_code[i], f"no free {width}-digit number left in {parent_code[i]}")
                        continue
                    codes[i] = f"{parent_code[i]}{top[parent_code[i]]:0{width}d}"
                    assigned += 1
            if assigned:
                issues.append(
                    Issue(
                        "(file)",
                        "code_assigned",
                        str(assigned),
                        msg(
                            "code_assigned",
                            f"{assigned} record(s) without a code numbered parent code + {width}-digit sequence",
                        ),
                        INFO,
                    )
                )
    elif level.code_len is not None:
        for i in range(n):
            if codes[i] is None:
                add(i, "code_missing", None, f"{level.name} needs its {level.code_len}-digit code")
    if level.name == "facility":
        for i in range(n):
            if codes[i] is None:
                codes[i] = f"{batch.source or 'import'}#{i + 1}"

    out["code"] = codes
    if level.parent_col:
        out[level.parent_col] = parent_code
    out["geom"] = shape
    out["pos"] = pos

    _attributes(level, attrs, out, ctx, add, ok, pos)
    out["_ok"] = ok
    return out, issues


@dataclass
class _Attrs:
    """What one attribute check reads and writes: the mapped columns, the output rows, the context."""

    level: Level
    attrs: pd.DataFrame
    out: pd.DataFrame
    ctx: Context
    add: Callable[..., None]
    ok: np.ndarray
    pos: np.ndarray

    def col(self, f: str) -> list:
        return _col(self.attrs, f)


AttrCheck = Callable[[_Attrs], None]


def _copy(field_: str) -> AttrCheck:
    """Copy a free-text field as it is."""

    def check(a: _Attrs) -> None:
        a.out[field_] = a.col(field_)

    return check


def _one_of(field_: str, allowed: set[str], label: str) -> AttrCheck:
    """An optional field whose value must be one of ``allowed`` (message: ``label`` + the choices)."""

    def check(a: _Attrs) -> None:
        vals = a.col(field_)
        for i, v in enumerate(vals):
            if v is not None and v not in allowed:
                a.add(i, "value_invalid", v, f"{label}{'/'.join(sorted(allowed))}")
        a.out[field_] = vals

    return check


def _mapped(field_: str, table: dict[str, str], default: str, detail: str, out_col: str, lower: bool) -> AttrCheck:
    """A field read through a table of accepted spellings; empty = ``default``."""

    def check(a: _Attrs) -> None:
        vals = []
        for i, v in enumerate(a.col(field_)):
            r = table.get(v.lower() if v else default) if lower else (table.get(v) if v else default)
            if r is None:
                a.add(i, "value_invalid", v, detail)
            vals.append(r or default)
        a.out[out_col] = vals

    return check


def _flag(field_: str, detail: str, default: bool) -> AttrCheck:
    """A yes/no field (是/否, true/false, 1/0); empty = ``default``."""

    def check(a: _Attrs) -> None:
        vals = []
        for i, v in enumerate(a.col(field_)):
            b, good = parse_bool(v)
            if not good:
                a.add(i, "value_invalid", v, detail)
            vals.append(default if b is None else b)
        a.out[field_] = vals

    return check


def _households_estimated(a: _Attrs) -> None:
    est = []
    for i, v in enumerate(a.col("households_estimated")):
        b, good = parse_bool(v)
        if not good:
            a.add(i, "value_invalid", v, "households_estimated: true/false")
        est.append(bool(b) and a.out.at[i, "households"] is not pd.NA)
    a.out["households_estimated"] = est


def _compound_and_grid(a: _Attrs) -> None:
    """A building's compound and grid: the code given (checked against its community and position) or the
    one containing its point-on-surface."""
    n = len(a.out)
    for kind, table, col in (("compound", a.ctx.compounds, "compound_id"), ("grid", a.ctx.grids, "grid_id")):
        given = a.col(f"{kind}_code")
        spatial = table.containing(a.pos)
        ids: list[int | None] = []
        for i in range(n):
            cc = a.out.at[i, "community_code"]
            k = None
            if given[i] is not None:
                k = table.index(given[i])
                if k is None or table.community[k] != cc:
                    a.add(i, f"{kind}_unknown", given[i], f"no {kind} {given[i]} in community {cc}")
                    ids.append(None)
                    continue
                if a.pos[i] is not None and a.ok[i] and not shapely.intersects(table.geoms[k], a.pos[i]):
                    a.add(i, "outside_parent", given[i], f"its point-on-surface lies outside {kind} {given[i]}")
            elif spatial[i] >= 0 and table.community[spatial[i]] == cc:
                k = spatial[i]
            ids.append(None if k is None else int(table.ids[k]))
        a.out[col] = pd.array(ids, dtype="Int64")


def _facility_category(a: _Attrs) -> None:
    cats = []
    for i, v in enumerate(a.col("category")):
        c = a.ctx.categories.get(v.lower()) if v else None
        if c is None and a.ok[i]:
            a.add(i, "category_unknown", v, "one of the 16 categories (党建, 综治 … 商业服务) or its code")
        cats.append(c)
    a.out["category_code"] = cats


def _road_class(a: _Attrs) -> None:
    classes = []
    for i, (rc, hw) in enumerate(zip(a.col("road_class"), a.col("highway"), strict=False)):
        c = None
        if rc:
            c = rc.lower() if rc.lower() in _ROAD_CLASS else _ROAD_CLASS_ZH.get(rc)
            if c is None:
                a.add(i, "value_invalid", rc, f"road class: {'/'.join(sorted(_ROAD_CLASS))}")
        elif hw:
            from gisgov.ingest.network import highway_class

            c = highway_class(hw)
        classes.append(c or "local")
    a.out["class"] = classes


# Levels whose records need a name.
_NAME_REQUIRED = frozenset({"street", "community", "compound", "facility"})
# Whole-number fields, checked on every level that has them (ranges in INT_RANGES).
_INT_FIELDS = ("floors", "units", "households", "year_built")
# The level's own attribute checks, in order (each reads mapped columns, writes output columns).
_LEVEL_CHECKS: dict[str, tuple[AttrCheck, ...]] = {
    "community": (
        _one_of("class", _COMMUNITY_CLASS, "class: one of "),
        _copy("kind"),
        _mapped("rule_set", _RULE_SET, "urban", "rule_set: urban/rural", "rule_set", lower=True),
    ),
    "grid": (_mapped("grid_level", _GRID_LEVEL, "三级", "grid level: 一级/二级/三级", "level", lower=False),),
    "compound": (
        _one_of("property_mode", _PROPERTY_MODE, "property mode: "),
        _flag("has_party_org", "has_party_org: 是/否", False),
    ),
    "building": (_copy("address"), _households_estimated, _compound_and_grid),
    "facility": (_facility_category, _copy("kind"), _copy("address"), _copy("source")),
    "road": (
        _road_class,
        _flag("foot", "foot: true/false", True),
        _flag("oneway_foot", "oneway_foot: true/false", False),
    ),
}


def _attributes(
    level: Level,
    attrs: pd.DataFrame,
    out: pd.DataFrame,
    ctx: Context,
    add: Callable[..., None],
    ok: np.ndarray,
    pos: np.ndarray,
) -> None:
    """Attribute rules: name required where the level needs one, whole numbers in range, then the
    level's own checks from :data:`_LEVEL_CHECKS`."""
    name = _col(attrs, "name")
    if level.name in _NAME_REQUIRED:
        for i in np.flatnonzero(ok):
            if name[i] is None:
                add(i, "required", None, "name 名称")
    if "name" in level.fields:
        out["name"] = name
    for f in _INT_FIELDS:
        if f not in level.fields:
            continue
        vals = []
        for i, v in enumerate(_col(attrs, f)):
            x, good = parse_int(v, f)
            if not good:
                lo, hi = INT_RANGES[f]
                add(i, "value_invalid", v, f"{f}: a whole number {lo}–{hi}")
            vals.append(x)
        out[f] = pd.array(vals, dtype="Int64")
    a = _Attrs(level, attrs, out, ctx, add, ok, pos)
    for check in _LEVEL_CHECKS.get(level.name, ()):
        check(a)
