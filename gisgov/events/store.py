"""Events in PostgreSQL (migration 0008): report, list, detail with history, transition.

Every function works on the caller's connection: the API's request transaction (scope set for
row-level security, see :mod:`gisgov.api.deps`) or the CLI's. Events outside the scope are invisible
(404). A transition names the ``version`` it saw: the UPDATE only matches that version, so of two
concurrent transitions on one event exactly one wins and the other gets 409 (the second UPDATE waits
for the first's row lock, then finds the version moved on).

Descriptions are stored with clear mobile and ID numbers masked (an event text is read by many).
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta

from sqlalchemy import Connection, text

from gisgov.crs import GEOJSON_PRECISION
from gisgov.errors import Forbidden, InvalidInput, NotFound
from gisgov.events import machine
from gisgov.events.catalog import Catalog, load_catalog
from gisgov.events.machine import State
from gisgov.security.roles import Perm, Principal

MAX_DESCRIPTION = 2000
MAX_NOTE = 2000
MAX_PAGE = 500

_MOBILE = re.compile(r"(?<![0-9.])(1[3-9][0-9])([0-9]{4})([0-9]{4})(?![0-9])")
_ID = re.compile(r"(?<![0-9.])([1-9][0-9]{5})([0-9]{8})([0-9]{3}[0-9Xx])(?![0-9])")


def mask_text(value: str) -> str:
    """Mask clear mobile numbers (138****5678) and 18-character ID numbers (110101********123X)."""
    value = _MOBILE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", value)
    return _ID.sub(lambda m: f"{m.group(1)}{'*' * 8}{m.group(3)}", value)


def _clean(value: str | None, what: str, limit: int, *, required: bool) -> str | None:
    value = (value or "").replace("\x00", "").strip()
    if not value:
        if required:
            raise InvalidInput(f"{what}不能为空 {what} is required")
        return None
    if len(value) > limit:
        raise InvalidInput(f"{what}过长 {what} longer than {limit} characters")
    return mask_text(value)


def check_lonlat(lon: float, lat: float) -> None:
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise InvalidInput(f"坐标无效 invalid position lon={lon} lat={lat} (WGS84/CGCS2000 degrees)")


_POINT = "ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4490), Find_SRID('public', 'event', 'geom'))"


def place(conn: Connection, lon: float, lat: float) -> dict | None:
    """grid/community/street of a point (the same rule as the insert trigger), or None outside the city."""
    check_lonlat(lon, lat)
    row = conn.execute(text(f"SELECT * FROM gisgov_event_place({_POINT})"), {"lon": lon, "lat": lat}).mappings().first()
    return dict(row) if row else None


def in_scope(p: Principal, where: dict) -> bool:
    """Is a place (grid/community/street codes) inside the principal's own node?"""
    area = where.get("grid_code") or where.get("community_code") or where.get("street_code") or ""
    return area.startswith(p.scope_code)


def report(
    conn: Connection,
    p: Principal,
    *,
    lon: float,
    lat: float,
    category: str,
    description: str,
    catalog: Catalog | None = None,
) -> dict:
    """File a new event (state ``reported``) at a WGS84/CGCS2000 point; returns it with its history."""
    cat = (catalog or load_catalog()).category(category)
    if not machine.can_report(p.role):
        raise machine.TransitionForbidden(
            f"无权限：{p.label}不能上报事件 not allowed: role {p.role.value} may not report events "
            f"(allowed: {', '.join(machine.role_label(r) for r in sorted(machine.REPORTERS))})"
        )
    desc = _clean(description, "描述 description", MAX_DESCRIPTION, required=True)
    where = place(conn, lon, lat)
    if where is None:
        raise InvalidInput(f"位置不在任何街道内 the point ({lon:.6f}, {lat:.6f}) lies outside every street of the city")
    if not in_scope(p, where):
        area = where.get("grid_code") or where.get("community_code") or where["street_code"]
        raise Forbidden(
            f"无权限：该位置（{area}）不在{p.label}的辖区 {p.scope_code or '全市'} 内"
            f" not allowed: the point lies in {area}, outside the area of this {p.role.value} account"
        )
    row = conn.execute(
        text(f"""
        INSERT INTO event (geom, category, description, reporter_id, reporter_role, status, deadline)
        VALUES ({_POINT}, :cat, :desc, :uid, :role, 'reported', now() + make_interval(secs => :sla))
        RETURNING id"""),
        {
            "lon": lon,
            "lat": lat,
            "cat": cat.code,
            "desc": desc,
            "uid": p.user_id,
            "role": p.role.value,
            "sla": cat.sla_hours * 3600.0,
        },
    ).one()
    _history(conn, row.id, p, None, State.reported, None, None)
    return get(conn, p, row.id, catalog=catalog)


def _history(
    conn: Connection,
    event_id: int,
    p: Principal,
    frm: State | None,
    to: State,
    note: str | None,
    department: str | None,
) -> None:
    conn.execute(
        text("""
        INSERT INTO event_history (event_id, actor_id, actor, actor_role, from_status, to_status, note, department)
        VALUES (:e, :uid, :actor, :role, :frm, :to, :note, :dep)"""),
        {
            "e": event_id,
            "uid": p.user_id,
            "actor": p.username,
            "role": p.role.value,
            "frm": frm.value if frm else None,
            "to": to.value,
            "note": note,
            "dep": department,
        },
    )


_COLUMNS = """
    e.id, ST_X(ST_Transform(e.geom, 4490)) AS lon, ST_Y(ST_Transform(e.geom, 4490)) AS lat,
    e.category, e.description, e.status, e.department, e.escalated_to,
    e.grid_code, e.community_code, e.street_code,
    e.reported_at, e.accepted_at, e.dispatched_at, e.handled_at, e.feedback_at, e.closed_at, e.rejected_at,
    e.escalated_at, e.deadline, e.updated_at, e.version, e.synthetic,
    (e.status NOT IN ('closed', 'rejected') AND e.deadline < now()) AS overdue,
    u.display_name AS reporter, e.reporter_role"""
_FROM = "FROM event e LEFT JOIN app_user u ON u.id = e.reporter_id"
_TIMES = (
    "reported_at",
    "accepted_at",
    "dispatched_at",
    "handled_at",
    "feedback_at",
    "closed_at",
    "rejected_at",
    "escalated_at",
    "deadline",
    "updated_at",
)


def _out(row, catalog: Catalog, p: Principal) -> dict:
    d = dict(row)
    for k in _TIMES:
        d[k] = d[k].isoformat() if d[k] is not None else None
    d["lon"], d["lat"] = round(d["lon"], GEOJSON_PRECISION), round(d["lat"], GEOJSON_PRECISION)
    d["category_label"] = catalog.label(d["category"])
    d["department_label"] = catalog.label(d["department"])
    d["status_label"] = machine.STATE_LABELS[State(d["status"])]
    d["next"] = [s.value for s in machine.next_states(d["status"], p.role)]
    if not p.can(Perm.read_personal):  # aggregate-only roles never see who reported
        d["reporter"] = None
    return d


def get(conn: Connection, p: Principal, event_id: int, *, catalog: Catalog | None = None, history: bool = True) -> dict:
    catalog = catalog or load_catalog()
    row = conn.execute(text(f"SELECT {_COLUMNS} {_FROM} WHERE e.id = :id"), {"id": event_id}).mappings().first()
    if row is None:
        raise NotFound(f"未找到事件 event not found: {event_id}")
    out = _out(row, catalog, p)
    if history:
        rows = (
            conn.execute(
                text("""
            SELECT h.at, h.actor, h.actor_role, h.from_status, h.to_status, h.note, h.department
            FROM event_history h WHERE h.event_id = :id ORDER BY h.at, h.id"""),
                {"id": event_id},
            )
            .mappings()
            .all()
        )
        out["history"] = [
            dict(r) | {"at": r["at"].isoformat(), "department_label": catalog.label(r["department"])} for r in rows
        ]
    return out


def list_events(
    conn: Connection,
    p: Principal,
    *,
    status: list[str] | None = None,
    category: str | None = None,
    grid: str | None = None,
    community: str | None = None,
    overdue: bool | None = None,
    date_from: date | datetime | None = None,
    date_to: date | datetime | None = None,
    limit: int = 100,
    offset: int = 0,
    catalog: Catalog | None = None,
) -> dict:
    """Events in scope, newest first, filtered; ``date_to`` is inclusive for a date."""
    catalog = catalog or load_catalog()
    states = [machine.parse_state(s).value for s in status] if status else None
    if category:
        catalog.category(category)
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"每页条数须在 1–{MAX_PAGE} 之间 limit must be 1..{MAX_PAGE}")
    if offset < 0:
        raise InvalidInput("offset 不能为负 offset must be >= 0")
    if isinstance(date_to, date) and not isinstance(date_to, datetime):
        date_to = datetime.combine(date_to + timedelta(days=1), datetime.min.time())
    where = """
        WHERE (CAST(:states AS text[]) IS NULL OR e.status = ANY (CAST(:states AS text[])))
          AND (CAST(:cat AS text) IS NULL OR e.category = :cat)
          AND (CAST(:grid AS text) IS NULL OR e.grid_code = :grid)
          AND (CAST(:comm AS text) IS NULL OR e.community_code = :comm)
          AND (CAST(:overdue AS boolean) IS NULL
               OR (e.status NOT IN ('closed', 'rejected') AND e.deadline < now()) = :overdue)
          AND (CAST(:dfrom AS timestamptz) IS NULL OR e.reported_at >= :dfrom)
          AND (CAST(:dto AS timestamptz) IS NULL OR e.reported_at < :dto)"""
    params = {
        "states": states,
        "cat": category or None,
        "grid": grid or None,
        "comm": community or None,
        "overdue": overdue,
        "dfrom": date_from,
        "dto": date_to,
    }
    total = conn.execute(text(f"SELECT count(*) FROM event e {where}"), params).scalar_one()
    rows = (
        conn.execute(
            text(
                f"SELECT {_COLUMNS} {_FROM} {where} ORDER BY e.reported_at DESC, e.id DESC LIMIT :limit OFFSET :offset"
            ),
            params | {"limit": limit, "offset": offset},
        )
        .mappings()
        .all()
    )
    return {"total": total, "limit": limit, "offset": offset, "items": [_out(r, catalog, p) for r in rows]}


def transition(
    conn: Connection,
    p: Principal,
    event_id: int,
    to: str,
    version: int,
    *,
    note: str | None = None,
    department: str | None = None,
    catalog: Catalog | None = None,
) -> dict:
    """Move an event to state ``to``; the caller sends the ``version`` it saw. Returns the event and
    ``from`` (the state it left). 404 outside the scope, 403 role, 409 state or stale version, 422 input."""
    catalog = catalog or load_catalog()
    target = machine.parse_state(to)
    note = _clean(note, "说明 note", MAX_NOTE, required=False)
    if department:
        department = catalog.department(department).code
    row = conn.execute(text("SELECT status, version FROM event WHERE id = :id"), {"id": event_id}).first()
    if row is None:
        raise NotFound(f"未找到事件 event not found: {event_id}")
    frm = State(row.status)
    err = machine.refusal(p.role, frm, target)
    if isinstance(err, machine.TransitionForbidden):
        raise err
    if version != row.version:
        raise machine.stale(version, row.version, frm)
    machine.check(p.role, frm, target, department=department, note=note)
    col = machine.STEP_COLUMN[target]
    done = conn.execute(
        text(f"""
        UPDATE event SET status = :to, {col} = now(), updated_at = now(), version = version + 1,
               department = CASE WHEN :to = 'dispatched' THEN :dep ELSE department END,
               escalated_to = CASE WHEN :to = 'escalated_street' THEN 'street'
                                   WHEN :to = 'escalated_community' AND escalated_to IS DISTINCT FROM 'street'
                                        THEN 'community'
                                   ELSE escalated_to END
        WHERE id = :id AND version = :v AND status = :frm
        RETURNING version"""),
        {"to": target.value, "dep": department, "id": event_id, "v": version, "frm": frm.value},
    ).first()
    if done is None:  # a concurrent transition committed first
        now = conn.execute(text("SELECT status, version FROM event WHERE id = :id"), {"id": event_id}).first()
        raise machine.stale(version, now.version if now else version, now.status if now else frm)
    _history(conn, event_id, p, frm, target, note, department)
    return get(conn, p, event_id, catalog=catalog) | {"from": frm.value}


def open_by_grid(conn: Connection, catalog: Catalog | None = None) -> dict:
    """Open events in scope clustered by grid (events outside every grid: by community), as GeoJSON
    points at the grid's (community's) label point, with counts only."""
    catalog = catalog or load_catalog()
    rows = (
        conn.execute(
            text("""
        WITH o AS (
            SELECT coalesce(e.grid_code, e.community_code, e.street_code) AS code,
                   CASE WHEN e.grid_code IS NOT NULL THEN 'grid' WHEN e.community_code IS NOT NULL THEN 'community'
                        ELSE 'street' END AS level,
                   e.category, (e.deadline < now()) AS late
            FROM event e WHERE e.status NOT IN ('closed', 'rejected')
        ), pc AS (
            SELECT code, level, category, count(*) AS n, count(*) FILTER (WHERE late) AS late
            FROM o GROUP BY code, level, category
        ), agg AS (
            SELECT code, level, sum(n)::int AS open, sum(late)::int AS overdue,
                   jsonb_object_agg(category, n) AS categories
            FROM pc GROUP BY code, level
        )
        SELECT a.code, a.level, a.open, a.overdue, a.categories,
               coalesce(g.name, c.name, s.name) AS name,
               ST_AsGeoJSON(ST_Transform(ST_PointOnSurface(coalesce(g.geom, c.geom, s.geom)), 4326), :prec) AS label
        FROM agg a
        LEFT JOIN LATERAL (SELECT x.name, x.geom FROM grid_current() x WHERE a.level = 'grid' AND x.code = a.code
                           ORDER BY x.id LIMIT 1) g ON true
        LEFT JOIN community c ON a.level = 'community' AND c.code = a.code
        LEFT JOIN street s ON a.level = 'street' AND s.code = a.code
        ORDER BY a.code"""),
            {"prec": GEOJSON_PRECISION},
        )
        .mappings()
        .all()
    )
    features = []
    for r in rows:
        if r["label"] is None:  # a grid no longer current (plan changed): no label point to show it at
            continue
        features.append(
            {
                "type": "Feature",
                "id": r["code"],
                "geometry": json.loads(r["label"]),
                "properties": {
                    "code": r["code"],
                    "level": r["level"],
                    "name": r["name"],
                    "open": r["open"],
                    "overdue": r["overdue"],
                    "categories": {
                        k: {"n": v, "label": catalog.label(k)} for k, v in sorted((r["categories"] or {}).items())
                    },
                },
            }
        )
    return {
        "type": "FeatureCollection",
        "features": features,
        "total_open": sum(r["open"] for r in rows),
        "total_overdue": sum(r["overdue"] for r in rows),
    }
