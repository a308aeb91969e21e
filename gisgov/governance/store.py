"""Staff and compound rules in PostgreSQL (``grid_staff``, ``compound``; migration 0009).

Every function works on the caller's connection: the API's request transaction (scope set for
row-level security, see :mod:`gisgov.api.deps`) or the CLI's. Areas:

- staff: the grids of the ACTIVE plans (``grid_current()``) whose code lies under the caller's own
  node (a grid-bound account: its grid; ``grid_staff`` rows are under row-level security as well);
- compounds (not personal): the caller's area (:attr:`Principal.area_prefix`: a grid-bound account
  sees its community). Compound household counts read ``household`` rows: that one aggregate is
  computed with the scope widened to the whole city for the statement (:func:`widened`), then the
  scope is put back; no personal row is returned from it.

Objects outside the area answer 404; edits need the ``import_data`` permission (roster maintenance:
管理员 admin, 社区工作者 community_staff), else 403.
"""

from __future__ import annotations

import json
from collections import Counter
from contextlib import contextmanager

from sqlalchemy import Connection, text

from gisgov.crs import GEOJSON_PRECISION
from gisgov.errors import Forbidden, InvalidInput, NotFound, PlanConflict
from gisgov.governance import compounds as cr
from gisgov.governance import staff as st
from gisgov.security.roles import Perm, Principal

EDIT_PERM = Perm.import_data
_ROLE_ORDER = "ARRAY[" + ", ".join(f"'{r}'" for r in st.ROLES) + "]::text[]"
_HOUSEHOLDS = """
    SELECT b.{key} AS k, coalesce(sum(CASE WHEN hh.n > 0 THEN hh.n ELSE coalesce(b.households, 0) END), 0)::bigint AS hh
    FROM building b
    LEFT JOIN (SELECT building_code, count(*) AS n FROM household GROUP BY 1) hh ON hh.building_code = b.code
    WHERE b.{key} = ANY (:ids) GROUP BY b.{key}"""


class StaleVersion(PlanConflict):
    """409: the object changed since the caller read it."""


# ---------------------------------------------------------------- scope helpers


@contextmanager
def widened(conn: Connection):
    """The whole city for the statements inside (aggregates only), then the caller's scope again."""
    before = conn.execute(text("SELECT current_setting('gisgov.scope', true)")).scalar() or ""
    conn.execute(text("SELECT set_config('gisgov.scope', '*', true)"))
    try:
        yield conn
    finally:
        conn.execute(text("SELECT set_config('gisgov.scope', :s, true)"), {"s": before})


def narrow(p: Principal, code: str | None, own: str, what: str) -> str:
    """The code prefix to list: the caller's ``own`` node, or a node inside it; an unrelated node 404s."""
    if not code:
        return own
    if code.startswith(own):
        return code
    if own.startswith(code):  # an ancestor of the own node: the own node
        return own
    raise NotFound(f"未找到 {what} not found: {code}")


def can_edit(p: Principal) -> None:
    if not p.can(EDIT_PERM):
        raise Forbidden(
            f"无权限：{p.label}不能维护网格员与小区信息 not allowed: role {p.role.value} may not edit "
            "grid staff or compound attributes (管理员 admin, 社区工作者 community_staff may)"
        )


# ---------------------------------------------------------------- staff


def current_grids(conn: Connection, prefix: str) -> list[dict]:
    """The current grids (active plans) under ``prefix``, with households (roster rows, else the
    building's recorded households)."""
    rows = (
        conn.execute(
            text("""
        SELECT g.id, g.code, g.name, g.community_code, c.name AS community_name
        FROM grid_current() g JOIN community c ON c.code = g.community_code
        WHERE g.code LIKE :p || '%' ORDER BY g.code"""),
            {"p": prefix},
        )
        .mappings()
        .all()
    )
    grids = [dict(r) for r in rows]
    if grids:
        hh = dict(conn.execute(text(_HOUSEHOLDS.format(key="grid_id")), {"ids": [g["id"] for g in grids]}).all())
        for g in grids:
            g["households"] = int(hh.get(g["id"], 0))
    return grids


def _staff_of(conn: Connection, grid_ids: list[int]) -> list[dict]:
    return [
        dict(r)
        for r in conn.execute(
            text(f"""
        SELECT s.id, s.grid_id, s.role, s.name, s.phone_masked, s.updated_at
        FROM grid_staff s WHERE s.grid_id = ANY (:ids)
        ORDER BY s.grid_id, array_position({_ROLE_ORDER}, s.role), s.id"""),
            {"ids": grid_ids},
        ).mappings()
    ]


def staff_overview(
    conn: Connection, p: Principal, *, code: str | None = None, ceiling: float, only_problems: bool = False
) -> dict:
    """Per current grid in the area (``code``: a street/community/grid inside it): counts by role,
    gaps, households, caseload; the people (role, name, masked phone) only for roles with
    ``read_personal``. Totals over the listed grids."""
    prefix = narrow(p, code, p.scope_code, "网格/社区 grid/community")
    grids = current_grids(conn, prefix)
    staff = _staff_of(conn, [g["id"] for g in grids])
    by_grid: dict[int, list[dict]] = {}
    for s in staff:
        by_grid.setdefault(s["grid_id"], []).append(s)
    personal = p.can(Perm.read_personal)
    out = []
    for g in grids:
        people = by_grid.get(g["id"], [])
        a = st.assess(
            {k: g[k] for k in ("code", "name", "community_code", "community_name", "households")},
            Counter(s["role"] for s in people),
            ceiling,
        )
        if personal:
            a["people"] = [
                {
                    "id": s["id"],
                    "role": s["role"],
                    "role_en": st.ROLE_EN[s["role"]],
                    "name": s["name"],
                    "phone_masked": s["phone_masked"],
                }
                for s in people
            ]
        out.append(a)
    loads = [a["caseload"] for a in out if a["caseload"] is not None]
    summary = {
        "grids": len(out),
        "staff": sum(a["staff"] for a in out),
        "grids_ok": sum(1 for a in out if a["ok"]),
        "no_leader": [a["code"] for a in out if "no_leader" in a["gaps"]],
        "no_full_time": [a["code"] for a in out if "no_full_time" in a["gaps"]],
        "caseload_over": [a["code"] for a in out if a["caseload_over"]],
        "max_caseload": max(loads) if loads else None,
        "ceiling": ceiling,
    }
    if only_problems:
        out = [a for a in out if not a["ok"]]
    return {
        "area": prefix,
        "names_shown": personal,
        "summary": summary,
        "grids": out,
        "rules": {
            "gaps": st.GAPS,
            "caseload_over": f"每名专职网格员服务户数超过 {ceiling:g} 户 more than "
            f"{ceiling:g} households per full-time grid worker "
            "(GISGOV_STAFF_MAX_CASELOAD)",
        },
    }


def gaps_geojson(
    conn: Connection, p: Principal, *, code: str | None = None, ceiling: float, geometry: str = "point"
) -> dict:
    """Grids with a gap or an over-ceiling caseload as GeoJSON (WGS84): their label point or polygon.
    Counts and rule codes only (no names)."""
    if geometry not in ("point", "polygon"):
        raise InvalidInput("geometry 应为 point 或 polygon geometry must be point or polygon")
    ov = staff_overview(conn, p, code=code, ceiling=ceiling, only_problems=True)
    bad = {a["code"]: a for a in ov["grids"]}
    feats = []
    if bad:
        geo = "ST_PointOnSurface(g.geom)" if geometry == "point" else "g.geom"
        rows = conn.execute(
            text(f"""
            SELECT g.code, ST_AsGeoJSON(ST_Transform({geo}, 4326), :prec) AS gj
            FROM grid_current() g WHERE g.code = ANY (:codes) ORDER BY g.code"""),
            {"codes": list(bad), "prec": GEOJSON_PRECISION},
        ).all()
        for code_, gj in rows:
            a = bad[code_]
            feats.append(
                {
                    "type": "Feature",
                    "id": code_,
                    "geometry": json.loads(gj),
                    "properties": {
                        "code": code_,
                        "name": a["name"],
                        "community_code": a["community_code"],
                        "gaps": a["gaps"],
                        "gap_labels": a["gap_labels"],
                        "caseload": a["caseload"],
                        "caseload_over": a["caseload_over"],
                        "households": a["households"],
                        "full_time": a["full_time"],
                        "roles": a["roles"],
                    },
                }
            )
    return {"type": "FeatureCollection", "features": feats, "summary": ov["summary"]}


def _grid_for_edit(conn: Connection, p: Principal, grid_code: str) -> dict:
    if not grid_code or not p.contains(grid_code) or not grid_code.startswith(p.scope_code):
        raise NotFound(f"未找到网格 grid not found: {grid_code}")
    row = (
        conn.execute(
            text("SELECT g.id, g.code, g.community_code FROM grid_current() g WHERE g.code = :c ORDER BY g.id LIMIT 1"),
            {"c": grid_code},
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"未找到网格（当前方案）no grid of an active plan with code {grid_code}")
    return dict(row)


def _role(value: str) -> str:
    role = st.role_of(value)
    if role is None:
        raise InvalidInput(f"角色无效 unknown role {value!r}: {' / '.join(st.ROLES)} (rule: role_unknown)")
    return role


def _name(value: str) -> str:
    try:
        return st.check_name(value)
    except ValueError as exc:
        raise InvalidInput(f"姓名无效 {st.ROW_RULES[str(exc)]} (rule: {exc})") from None


def _phone(vault, value: str | None) -> tuple[bytes | None, str | None]:
    try:
        phone = st.clean_phone(value)
    except ValueError:
        raise InvalidInput(f"手机号无效 {st.ROW_RULES['phone_format']} (rule: phone_format)") from None
    if phone is None:
        return None, None
    return vault.protect_phone(phone)


def _staff_out(conn: Connection, staff_id: int) -> dict:
    row = (
        conn.execute(
            text("""
        SELECT s.id, g.code AS grid_code, s.role, s.name, s.phone_masked, s.updated_at, s.updated_by
        FROM grid_staff s JOIN grid g ON g.id = s.grid_id WHERE s.id = :i"""),
            {"i": staff_id},
        )
        .mappings()
        .one()
    )
    d = dict(row)
    d["updated_at"] = d["updated_at"].isoformat()
    d["role_en"] = st.ROLE_EN[d["role"]]
    return d


def add_staff(
    conn: Connection, p: Principal, vault, *, grid_code: str, role: str, name: str, phone: str | None
) -> dict:
    can_edit(p)
    g = _grid_for_edit(conn, p, grid_code)
    role, name = _role(role), _name(name)
    cipher, masked = _phone(vault, phone)
    sid = conn.execute(
        text("""
        INSERT INTO grid_staff (grid_id, role, name, phone_cipher, phone_masked, updated_at, updated_by)
        VALUES (:g, :r, :n, :c, :m, now(), :u) RETURNING id"""),
        {"g": g["id"], "r": role, "n": name, "c": cipher, "m": masked, "u": p.username},
    ).scalar_one()
    return _staff_out(conn, sid)


def _staff_row(conn: Connection, p: Principal, staff_id: int) -> dict:
    row = (
        conn.execute(
            text("""
        SELECT s.id, s.role, g.code AS grid_code FROM grid_staff s JOIN grid g ON g.id = s.grid_id
        WHERE s.id = :i"""),
            {"i": staff_id},
        )
        .mappings()
        .first()
    )
    if row is None or not row["grid_code"].startswith(p.scope_code):  # RLS hides the others already
        raise NotFound(f"未找到网格员 staff member not found: {staff_id}")
    return dict(row)


def edit_staff(
    conn: Connection,
    p: Principal,
    vault,
    staff_id: int,
    *,
    role: str | None = None,
    name: str | None = None,
    phone: str | None = None,
    clear_phone: bool = False,
    grid_code: str | None = None,
) -> tuple[dict, dict]:
    """Change a staff member; returns (the row, what changed: field → [old, new] without names/phones)."""
    can_edit(p)
    old = _staff_row(conn, p, staff_id)
    sets, params, changed = [], {"i": staff_id, "u": p.username}, {}
    if grid_code is not None and grid_code != old["grid_code"]:
        g = _grid_for_edit(conn, p, grid_code)
        sets.append("grid_id = :g")
        params["g"] = g["id"]
        changed["grid"] = [old["grid_code"], grid_code]
    if role is not None:
        r = _role(role)
        if r != old["role"]:
            sets.append("role = :r")
            params["r"] = r
            changed["role"] = [old["role"], r]
    if name is not None:
        sets.append("name = :n")
        params["n"] = _name(name)
        changed["name"] = "changed"
    if clear_phone:
        sets.append("phone_cipher = NULL, phone_masked = NULL")
        changed["phone"] = "removed"
    elif phone is not None:
        params["c"], params["m"] = _phone(vault, phone)
        sets.append("phone_cipher = :c, phone_masked = :m")
        changed["phone"] = "changed"
    if sets:
        conn.execute(
            text(f"UPDATE grid_staff SET {', '.join(sets)}, updated_at = now(), updated_by = :u WHERE id = :i"), params
        )
    return _staff_out(conn, staff_id), changed


def remove_staff(conn: Connection, p: Principal, staff_id: int) -> dict:
    can_edit(p)
    old = _staff_row(conn, p, staff_id)
    conn.execute(text("DELETE FROM grid_staff WHERE id = :i"), {"i": staff_id})
    return {"id": staff_id, "grid_code": old["grid_code"], "role": old["role"], "removed": True}


class ImportRejected(InvalidInput):
    """422 with the per-row errors (``rows``)."""

    def __init__(self, message: str, rows: list[dict]):
        super().__init__(message)
        self.rows = rows


def import_staff(
    conn: Connection,
    p: Principal,
    vault,
    records: list[dict],
    *,
    mode: str = "replace",
    dry_run: bool = False,
    ceiling: float,
    max_rows: int = 5000,
) -> dict:
    """Load staff rows (template header → cell) all or nothing. ``replace``: each grid named in the
    file gets exactly the file's people; ``append``: the rows are added. Any row error rejects the
    whole file (:class:`ImportRejected` naming row, column and rule); nothing is written then, nor
    with ``dry_run``. Returns counts and how the grids of the file look afterwards."""
    can_edit(p)
    if mode not in ("replace", "append"):
        raise InvalidInput("mode 应为 replace 或 append mode must be replace or append")
    data = [r for r in records if any(v is not None and str(v).strip() for v in r.values())]
    if not data:
        raise InvalidInput("文件没有数据行 the file has no data rows (template: 网格编码, 角色, 姓名, 手机号)")
    if len(records) > max_rows:
        raise InvalidInput(f"行数过多 {len(records)} rows > {max_rows} (GISGOV_STAFF_IMPORT_MAX_ROWS)")
    grids = {
        g["code"]: g
        for g in conn.execute(
            text("SELECT g.id, g.code FROM grid_current() g WHERE g.code LIKE :p || '%'"), {"p": p.scope_code}
        ).mappings()
    }
    rows, errors = st.parse_rows(records, set(grids))
    if errors:
        raise ImportRejected(
            f"导入被拒绝：{len(errors)} 处错误，未写入任何行 import rejected: {len(errors)} problem(s), "
            "nothing was written — " + "; ".join(e.public()["message"] for e in errors[:3]),
            [e.public() for e in errors],
        )
    touched = sorted({r.grid_code for r in rows})
    ids = [grids[c]["id"] for c in touched]
    protected = [(r, *((None, None) if r.phone is None else vault.protect_phone(r.phone))) for r in rows]
    removed = 0
    sp = conn.begin_nested()
    try:
        if mode == "replace":
            removed = conn.execute(text("DELETE FROM grid_staff WHERE grid_id = ANY (:ids)"), {"ids": ids}).rowcount
        conn.execute(
            text("""
            INSERT INTO grid_staff (grid_id, role, name, phone_cipher, phone_masked, updated_at, updated_by)
            VALUES (:g, :r, :n, :c, :m, now(), :u)"""),
            [
                {"g": grids[r.grid_code]["id"], "r": r.role, "n": r.name, "c": c, "m": m, "u": p.username}
                for r, c, m in protected
            ],
        )
        after = staff_overview(conn, p, ceiling=ceiling)
    except BaseException:
        sp.rollback()
        raise
    if dry_run:
        sp.rollback()
    else:
        sp.commit()
    result = [a for a in after["grids"] if a["code"] in set(touched)]
    for a in result:
        a.pop("people", None)
    return {
        "mode": mode,
        "dry_run": dry_run,
        "rows": len(rows),
        "grids": len(touched),
        "removed": removed,
        "written": 0 if dry_run else len(rows),
        "grids_after": result,
        "gaps_after": [a["code"] for a in result if a["gaps"]],
    }


# ---------------------------------------------------------------- compounds

_COMPOUND_COLS = """c.id, c.code, c.community_code, c.name, c.year_built, c.property_mode, c.has_party_org,
    c.has_service_point, c.version, c.updated_at, c.updated_by"""


def compound_list(conn: Connection, prefix: str) -> list[dict]:
    rows = [
        dict(r)
        for r in conn.execute(
            text(f"""
        SELECT {_COMPOUND_COLS} FROM compound c WHERE c.code LIKE :p || '%' ORDER BY c.code"""),
            {"p": prefix},
        ).mappings()
    ]
    if rows:
        with widened(conn):  # households are an aggregate: counted over the whole compound
            hh = dict(conn.execute(text(_HOUSEHOLDS.format(key="compound_id")), {"ids": [r["id"] for r in rows]}).all())
        for r in rows:
            r["households"] = int(hh.get(r["id"], 0))
    return rows


def _compound(r: dict) -> cr.Compound:
    return cr.Compound(
        r["code"],
        r["community_code"],
        r["name"],
        r["households"],
        r["year_built"],
        r["property_mode"],
        bool(r["has_party_org"]),
        bool(r["has_service_point"]),
    )


def compound_check(
    conn: Connection, p: Principal, *, code: str | None = None, rules: cr.CompoundRules | None = None
) -> dict:
    """Breaches and per-community figures of the compounds in the area (``code``: a street or
    community inside it)."""
    rules = rules or cr.load_rules()
    prefix = narrow(p, code, p.area_prefix, "街道/社区 street/community")
    out = cr.check([_compound(r) for r in compound_list(conn, prefix)], rules)
    names = dict(
        conn.execute(
            text("SELECT code, name FROM community WHERE code LIKE :p || '%' OR :p LIKE code || '%'"),
            {"p": prefix[:12]},
        ).all()
    )
    for c in out["communities"]:
        c["name"] = names.get(c["code"])
    return {"area": prefix, **out}


def breaches_geojson(
    conn: Connection, p: Principal, *, code: str | None = None, rules: cr.CompoundRules | None = None
) -> dict:
    """Compounds breaking a rule, as GeoJSON polygons (WGS84) with their rule codes."""
    chk = compound_check(conn, p, code=code, rules=rules)
    by_code = {b["code"]: b for b in chk["breaches"]}
    feats = []
    if by_code:
        for code_, gj in conn.execute(
            text("""
                SELECT code, ST_AsGeoJSON(ST_Transform(geom, 4326), :prec) FROM compound WHERE code = ANY (:c)
                ORDER BY code"""),
            {"c": list(by_code), "prec": GEOJSON_PRECISION},
        ):
            feats.append({"type": "Feature", "id": code_, "geometry": json.loads(gj), "properties": by_code[code_]})
    return {"type": "FeatureCollection", "features": feats, "totals": chk["totals"]}


def get_compound(conn: Connection, p: Principal, code: str, rules: cr.CompoundRules | None = None) -> dict:
    rules = rules or cr.load_rules()
    if not p.contains(code):
        raise NotFound(f"未找到小区 compound not found: {code}")
    rows = [r for r in compound_list(conn, code) if r["code"] == code]
    if not rows:
        raise NotFound(f"未找到小区 compound not found: {code}")
    r = rows[0]
    r.pop("id")
    r["updated_at"] = r["updated_at"].isoformat() if r["updated_at"] else None
    c = _compound(r)
    r["is_old"] = cr.is_old(c, rules)
    r["breaches"] = cr.breaches_of(c, rules)
    r["breach_labels"] = [rules.label(x) for x in r["breaches"]]
    return r


EDITABLE = ("has_party_org", "has_service_point", "property_mode", "year_built")


def edit_compound(
    conn: Connection, p: Principal, code: str, version: int, changes: dict, rules: cr.CompoundRules | None = None
) -> tuple[dict, dict]:
    """Change governance attributes of a compound in the caller's own node; ``version`` is the one the
    caller read (stale: 409). ``changes`` keys from :data:`EDITABLE`; ``property_mode`` None clears it.
    Returns (the compound, field → [old, new])."""
    can_edit(p)
    if not code.startswith(p.scope_code) or not p.contains(code):
        raise NotFound(f"未找到小区 compound not found: {code}")
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise InvalidInput(f"不可修改的字段 fields not editable: {sorted(unknown)} (editable: {', '.join(EDITABLE)})")
    if "property_mode" in changes and changes["property_mode"] not in (*cr.PROPERTY_MODES, None):
        raise InvalidInput(f"物业模式无效 property_mode must be one of {' / '.join(cr.PROPERTY_MODES)} or null")
    y = changes.get("year_built")
    if "year_built" in changes and y is not None and not (1900 <= int(y) <= 2100):
        raise InvalidInput("建成年份应在 1900–2100 之间 year_built must be 1900..2100")
    for k in ("has_party_org", "has_service_point"):
        if k in changes and not isinstance(changes[k], bool):
            raise InvalidInput(f"{k} 应为 true/false must be a boolean")
    row = (
        conn.execute(text(f"SELECT {_COMPOUND_COLS} FROM compound c WHERE c.code = :c FOR UPDATE"), {"c": code})
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"未找到小区 compound not found: {code}")
    if row["version"] != version:
        raise StaleVersion(
            f"小区信息已被他人修改 compound {code} changed since you read it (your version {version}, "
            f"now {row['version']}): reload and try again"
        )
    diff = {k: [row[k], v] for k, v in changes.items() if row[k] != v}
    if diff:
        sets = ", ".join(f"{k} = :{k}" for k in diff)
        done = conn.execute(
            text(f"""
            UPDATE compound SET {sets}, version = version + 1, updated_at = now(), updated_by = :u
            WHERE code = :c AND version = :v RETURNING version"""),
            {**{k: v[1] for k, v in diff.items()}, "u": p.username, "c": code, "v": version},
        ).first()
        if done is None:  # pragma: no cover - the row lock above makes this unreachable
            raise StaleVersion(f"小区信息已被他人修改 compound {code} changed concurrently")
    return get_compound(conn, p, code, rules), diff
