"""The SQL of the drill-down statistics, run on the caller's connection (one request = one
transaction, see :func:`gisgov.api.deps.db`). Each topic is one statement that aggregates the unit
and all its children in a single pass (``GROUPING SETS``); :mod:`gisgov.stats.shape` assembles them.

SQL files live in ``gisgov/stats/sql``; their ``{scope}`` / ``{child_key}`` slots take only the
fixed fragments of :mod:`gisgov.stats.units`; every value is a bound parameter.
"""

from __future__ import annotations

import datetime as dt
import json
from functools import cache
from importlib import resources
from typing import Any, cast

from sqlalchemy import Connection, text

from gisgov.crs import GEOJSON_PRECISION, WGS84
from gisgov.errors import NotFound
from gisgov.stats import units
from gisgov.stats.circles import CircleSpec
from gisgov.stats.units import CITY, Area, Unit

GRID_NAME = "coalesce(g.name, '网格' || right(g.code, 3))"
PRECISION = GEOJSON_PRECISION  # GeoJSON decimals (gisgov.crs: 7 ≈ 1 cm)


@cache
def _sql(name: str) -> str:
    return resources.files("gisgov.stats").joinpath("sql", name).read_text(encoding="utf-8")


def _run(conn: Connection, name: str, fragments: dict[str, str], params: dict[str, Any]) -> list[dict[str, Any]]:
    sql = _sql(name).format(**fragments)
    return [dict(r._mapping) for r in conn.execute(text(sql), params)]


# -- the unit ------------------------------------------------------------------------------------------

_UNIT_SQL = {
    "street": "SELECT s.code, s.name, NULL::bigint AS id FROM street s WHERE s.code = :code",
    "community": """
        SELECT c.code, c.name, NULL::bigint AS id, s.code AS street_code, s.name AS street_name,
               EXISTS (SELECT 1 FROM grid_current() g WHERE g.community_code = c.code) AS has_grids
        FROM community c JOIN street s ON s.code = c.street_code WHERE c.code = :code""",
    "grid": f"""
        SELECT g.code, {GRID_NAME} AS name, g.id, s.code AS street_code, s.name AS street_name,
               c.code AS community_code, c.name AS community_name
        FROM grid_current() g JOIN community c ON c.code = g.community_code JOIN street s ON s.code = c.street_code
        WHERE g.code = :code ORDER BY g.plan_id IS NULL, g.id LIMIT 1""",
    # a compound's grid is named when all its buildings lie in one current grid
    "compound": f"""
        SELECT cp.code, cp.name, cp.id, s.code AS street_code, s.name AS street_name,
               c.code AS community_code, c.name AS community_name, one.code AS grid_code, one.name AS grid_name
        FROM compound cp JOIN community c ON c.code = cp.community_code JOIN street s ON s.code = c.street_code
        LEFT JOIN LATERAL (
            SELECT min(g.code) AS code, min({GRID_NAME}) AS name
            FROM building b LEFT JOIN grid g ON g.id = b.grid_id
            WHERE b.compound_id = cp.id
            HAVING count(DISTINCT b.grid_id) = 1 AND count(b.grid_id) = count(*)
        ) one ON true
        WHERE cp.code = :code""",
}


def dataset(conn: Connection) -> dict[str, Any] | None:
    value = conn.execute(text("SELECT value FROM gisgov_meta WHERE key = 'dataset'")).scalar()
    if value is None or isinstance(value, dict):
        return value
    return {"name": str(value)}


def area_of(conn: Connection, scope_code: str) -> Area:
    """The caller's area for a scope code ('' = whole city); a grid code stands for its current grid(s)."""
    if len(scope_code) != 15:
        return Area(scope_code)
    ids = (
        conn.execute(text("SELECT g.id FROM grid_current() g WHERE g.code = :c ORDER BY g.id"), {"c": scope_code})
        .scalars()
        .all()
    )
    return Area(scope_code, tuple(ids))


def _compound_in_area(conn: Connection, compound_id: int, area: Area) -> tuple[bool, bool]:
    """(overlaps, wholly inside) of a compound and a grid area, by its buildings."""
    row = conn.execute(
        text("""
        SELECT count(*) FILTER (WHERE b.grid_id = ANY(CAST(:g AS bigint[]))) AS inside, count(*) AS n
        FROM building b WHERE b.compound_id = :id"""),
        {"g": list(area.grid_ids), "id": compound_id},
    ).one()
    return row.inside > 0, row.inside == row.n


def resolve(conn: Connection, level: str, code: str | None, *, city: str = "全市", area: Area | None = None) -> Unit:
    """The unit ``level``/``code`` (``level='city'``: the whole city) with its ancestors; 404 if absent
    or outside ``area`` (units that overlap the area, such as its street, are ``limited``)."""
    area = area or Area()
    root = {"level": CITY, "code": None, "name": city}
    if level == CITY:
        return Unit(CITY, None, city, limited=not area.everything)
    units.check_code(level, code)
    row = conn.execute(text(_UNIT_SQL[level]), {"code": code}).mappings().first()
    zh, en = units.LEVEL_LABELS[level]
    if row is None:
        raise NotFound(f"未找到{zh} {en.lower()} not found: {level} {code}")
    overlaps, inside = area.overlaps(level, code), area.contains(level, code)
    if overlaps is None:  # a compound and a grid area: by its buildings
        overlaps, inside = _compound_in_area(conn, row["id"], area)
    if not overlaps:  # outside the caller's area: the same answer as an unknown code
        raise NotFound(f"未找到{zh} {en.lower()} not found: {level} {code}")
    path = [root]
    if "street_code" in row:
        path.append({"level": "street", "code": row["street_code"], "name": row["street_name"]})
    if "community_code" in row:
        path.append({"level": "community", "code": row["community_code"], "name": row["community_name"]})
    if row.get("grid_code"):
        path.append({"level": "grid", "code": row["grid_code"], "name": row["grid_name"]})
    return Unit(
        level,
        row["code"],
        row["name"],
        unit_id=row["id"],
        path=tuple(path),
        has_grids=bool(row.get("has_grids")),
        limited=not inside,
    )


# -- children ------------------------------------------------------------------------------------------


def _children_sql(unit: Unit, *, geometry: bool, area: Area) -> str | None:
    """Children of the unit inside the caller's area only (never listed with zeros)."""
    child = unit.child
    geom = f", ST_AsGeoJSON(ST_Transform(x.geom, {WGS84}), {PRECISION}) AS geom" if geometry else ""
    inside = area.child_filter(child)
    if child == "street":
        return f"SELECT x.code, x.name{geom} FROM street x WHERE {inside} ORDER BY x.code"
    if child == "community":
        return f"SELECT x.code, x.name{geom} FROM community x WHERE x.street_code = :code AND {inside} ORDER BY x.code"
    if child == "grid":
        return (
            f"SELECT x.code, {GRID_NAME.replace('g.', 'x.')} AS name{geom} FROM grid_current() x "
            f"WHERE x.community_code = :code AND {inside} ORDER BY x.code"
        )
    if child == "compound" and unit.level == "grid":
        # part of the compound may lie in other grids: its figures here are those of this grid's part
        scope = units.COMPOUND_SCOPE["grid"].replace("cp.", "x.")
        return (
            f"SELECT x.code, x.name, EXISTS (SELECT 1 FROM building o WHERE o.compound_id = x.id "
            f"AND o.grid_id IS DISTINCT FROM :unit_id) AS partial{geom} FROM compound x "
            f"WHERE {scope} AND {inside} ORDER BY x.code"
        )
    if child == "compound":
        scope = units.COMPOUND_SCOPE[unit.level].replace("cp.", "x.")
        return f"SELECT x.code, x.name{geom} FROM compound x WHERE {scope} AND {inside} ORDER BY x.code"
    return None


def children(conn: Connection, unit: Unit, area: Area | None = None) -> list[dict[str, Any]]:
    """The unit's direct children inside ``area``: ``[{code, name}]`` ordered by code (empty for a
    compound); compounds of a grid also carry ``partial`` (some of its buildings lie in other grids)."""
    area = area or Area()
    sql = _children_sql(unit, geometry=False, area=area)
    return [] if sql is None else [dict(r._mapping) for r in conn.execute(text(sql), unit.params() | area.params())]


_UNIT_GEOM_SQL = {
    "street": "SELECT geom FROM street WHERE code = :code",
    "community": "SELECT geom FROM community WHERE code = :code",
    "grid": "SELECT geom FROM grid WHERE id = :unit_id",
    "compound": "SELECT geom FROM compound WHERE id = :unit_id",
}


def features(conn: Connection, unit: Unit, area: Area | None = None) -> str:
    """GeoJSON features (WGS84) as text: the unit's outline (``role: unit``) and its children
    (``role: child``), each with ``level``, ``code`` and ``name`` only."""
    parts = []
    if unit.level != CITY:
        parts.append(f"""
            SELECT 0 AS ord, 'unit' AS role, CAST(:level AS text) AS level, CAST(:ucode AS text) AS code,
                   CAST(:uname AS text) AS name,
                   ST_AsGeoJSON(ST_Transform(u.geom, {WGS84}), {PRECISION}) AS geom
            FROM ({_UNIT_GEOM_SQL[unit.level]}) u""")
    area = area or Area()
    child_sql = _children_sql(unit, geometry=True, area=area)
    if child_sql is not None:
        parts.append(
            f"SELECT 1 AS ord, 'child' AS role, CAST(:child AS text) AS level, k.code, k.name, k.geom "
            f"FROM ({child_sql}) k"
        )
    if not parts:
        return "[]"
    sql = f"""
        SELECT coalesce(json_agg(json_build_object(
                   'type', 'Feature', 'id', f.code, 'geometry', f.geom::json,
                   'properties', json_build_object('role', f.role, 'level', f.level, 'code', f.code, 'name', f.name))
               ORDER BY f.ord, f.code), '[]'::json)::text
        FROM ({" UNION ALL ".join(parts)}) f"""
    params = (
        unit.params()
        | area.params()
        | {"level": unit.level, "ucode": unit.code, "uname": unit.name, "child": unit.child}
    )
    return cast(str, conn.execute(text(sql), params).scalar())  # COALESCE(…, '[]'): never NULL


# -- aggregates ----------------------------------------------------------------------------------------


def special_groups(conn: Connection) -> list[dict[str, Any]]:
    return [
        dict(r._mapping)
        for r in conn.execute(text("SELECT code, name_zh, name_en FROM special_group ORDER BY sort, code"))
    ]


def coverage_run(conn: Connection, profile: str, circle: str) -> dict[str, Any] | None:
    """The latest finished coverage run when stored distances and the budget of ``profile``/``circle``
    exist, else ``None`` (coverage not computed yet)."""
    row = (
        conn.execute(
            text("""
        SELECT r.id, r.finished_at, r.method
        FROM coverage_run r
        WHERE r.finished_at IS NOT NULL
          AND EXISTS (SELECT 1 FROM coverage_budget WHERE profile = :p AND circle = :c)
          AND EXISTS (SELECT 1 FROM building_access)
        ORDER BY r.finished_at DESC LIMIT 1"""),
            {"p": profile, "c": circle},
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    return {"run_id": row["id"], "finished_at": row["finished_at"].isoformat(), "method": row["method"]}


def aggregates(
    conn: Connection, unit: Unit, *, ref_year: int, circles: CircleSpec | None, area: Area | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Rows of every topic for the unit and its children (``is_total``, ``ck`` + the topic's columns),
    counting only buildings, compounds and grids inside ``area``."""
    area = area or Area()
    frag = unit.fragments(area)
    params = unit.params() | area.params()
    child = unit.child
    out: dict[str, list[dict[str, Any]]] = {}
    people = _run(conn, "people.sql", frag["building"], params | {"ref_year": ref_year})
    out["people"] = [r for r in people if r["kind"] == "people"]
    out["groups"] = [r for r in people if r["kind"] == "group"]
    # compounds: registered in an area (or having buildings in a grid); grid children by their buildings
    compounds = _run(conn, "compounds.sql", frag["compound"], params)
    if child == "grid":
        compounds = [r for r in compounds if r["is_total"]]
        compounds += _run(conn, "compounds_by_building.sql", frag["building"], params)
    out["compounds"] = compounds
    # grids and staff: current grids of an area or the grid itself; a compound counts the grids of its buildings
    grids: list[dict[str, Any]] = []
    if unit.level != "compound":
        grids = _run(conn, "grids.sql", frag["grid"], params)
        if child == "compound":
            grids = [r for r in grids if r["is_total"]]
    if unit.level == "compound" or child == "compound":
        rows = _run(conn, "grids_by_building.sql", frag["building"], params)
        grids += [r for r in rows if (not r["is_total"]) == (unit.level != "compound")]
    out["grids"] = grids
    if circles is not None:
        out["coverage"] = coverage(conn, frag["building"], params, circles)
    return out


def _within_test(slot: int | None, budget: float | None, name: str, bound: dict[str, Any]) -> str:
    """SQL test "the building's stored distance in ``slot`` is within ``budget``" (bound as ``:name``);
    ``FALSE`` when the category has no slot or the circle no budget (nothing counts as within then)."""
    if slot is None or budget is None:
        return "FALSE"
    bound[name] = budget
    d = f"p.distance_m[{int(slot)}]"
    return f"({d} < 'Infinity'::real AND {d} <= CAST(:{name} AS real))"


def coverage(
    conn: Connection, fragments: dict[str, str], params: dict[str, Any], circles: CircleSpec
) -> list[dict[str, Any]]:
    """Coverage rows of the unit and its children (``item_kind`` 'complete' / 'category', ``item``,
    ``is_total``, ``ck``, ``households``, ``households_in``), from the packed distances directly.

    The slots of the categories and the budgets of the circles are read first; ``coverage.sql`` then tests
    each building's distance array at those slots (one row per building, no unpacking). The same figures
    as counting over the ``building_access`` view: a category no building of a group is within has no row
    for that group."""
    cp = circles.params()
    cats, reqs = cp["categories"], list(zip(cp["req_categories"], cp["req_circles"], strict=True))
    slots: dict[str, int] = dict(
        conn.execute(
            text("SELECT category_code, slot FROM coverage_access_slot WHERE category_code = ANY(:c)"),
            {"c": sorted(set(cats) | {c for c, _ in reqs})},
        ).all()
    )
    budgets: dict[str, float] = dict(
        conn.execute(
            text("SELECT circle, distance_m FROM coverage_budget WHERE profile = :p AND circle = ANY(:c)"),
            {"p": cp["profile"], "c": sorted({cp["circle"]} | {t for _, t in reqs})},
        ).all()
    )
    bound: dict[str, Any] = {"rule_sets": cp["rule_sets"]}
    # no requirement: no building has a complete circle (as counting matched pairs against none)
    complete = " AND ".join(
        _within_test(slots.get(c), budgets.get(t), f"cov_req_{i}", bound) for i, (c, t) in enumerate(reqs)
    )
    within = "".join(
        f",\n           coalesce({_within_test(slots.get(c), budgets.get(cp['circle']), f'cov_in_{i}', bound)}, "
        f"FALSE) AS in_{i}"
        for i, c in enumerate(cats)
    )
    sums = "".join(f",\n       sum(w.hh) FILTER (WHERE w.in_{i})::bigint AS in_{i}" for i in range(len(cats)))
    sql = _sql("coverage.sql").format(
        **fragments, complete=f"coalesce({complete or 'FALSE'}, FALSE)", within=within, sums=sums
    )
    # JIT compiling the per-category tests costs more than it saves here (~2 s of a ~5 s statement at a
    # million buildings, once per parallel worker): off for this statement only, the caller's setting back after
    jit = conn.execute(text("SELECT current_setting('jit')")).scalar()
    conn.execute(text("SELECT set_config('jit', 'off', true)"))
    result = conn.execute(text(sql), params | bound).mappings().all()
    conn.execute(text("SELECT set_config('jit', :v, true)"), {"v": jit})
    out: list[dict[str, Any]] = []
    for r in result:
        out.append(
            {
                "item_kind": "complete",
                "item": None,
                "is_total": r["is_total"],
                "ck": r["ck"],
                "households": r["households"],
                "households_in": r["households_in"],
            }
        )
        for i, c in enumerate(cats):
            if r[f"in_{i}"] is not None:
                out.append(
                    {
                        "item_kind": "category",
                        "item": c,
                        "is_total": r["is_total"],
                        "ck": r["ck"],
                        "households": None,
                        "households_in": r[f"in_{i}"],
                    }
                )
    return out


def cells(conn: Connection, area: Area) -> list[dict[str, Any]]:
    """The finest cells of the caller's area for small-cell suppression: residents, special people and
    memberships per (community, grid, compound) of the buildings, see ``cells.sql``."""
    return _run(conn, "cells.sql", {"area": area.fragments()["building"]}, area.params())


def grid_staff(conn: Connection, unit: Unit) -> list[dict[str, Any]]:
    """Staff of a grid unit (role, name, masked phone; never the clear phone), for roles that may read
    personal data. Row-level security limits them to the caller's scope as well."""
    if unit.level != "grid":
        return []
    order = ", ".join(f"'{r}'" for r, _ in units.STAFF_ROLES)
    return [
        dict(r._mapping)
        for r in conn.execute(
            text(f"""
        SELECT s.role, s.name, s.phone_masked
        FROM grid_staff s WHERE s.grid_id = :unit_id
        ORDER BY array_position(ARRAY[{order}]::text[], s.role), s.id"""),
            unit.params(),
        )
    ]


def today_year() -> int:
    return dt.date.today().year


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
