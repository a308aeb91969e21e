"""Special-group services in PostgreSQL: members, distances from the coverage engine, visits.

Every function works on the caller's connection (the API's request transaction with the caller's
``gisgov.scope`` for row-level security, or the CLI's acting as an account). Personal rows (who is in
a group, who was visited) are read FIRST, under the caller's scope; only then is the transaction
widened to the whole city (:func:`widen`) so that the shared coverage model can be loaded, as the
coverage routes do. Nothing personal is read after widening.

Distances: the nearest facility of any of a need's services, per building, from the coverage engine
(:class:`gisgov.coverage.service.CoverageService`: its walking graph and snaps; one multi-source pass
per need, cached until the model, its facilities or the file change), checked against the budget of
the file's circle under its walking profile.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import Connection, text

from gisgov.coverage.service import CoverageService
from gisgov.errors import Forbidden, InvalidInput, NotFound
from gisgov.security import suppress
from gisgov.security.pii import mask_id
from gisgov.security.roles import Perm, Principal
from gisgov.services import rules
from gisgov.services.rules import Config
from gisgov.stats import privacy
from gisgov.stats import queries as stats_queries

MAX_LIST = 5000
MAX_NOTE = 500

# members of the configured groups in the caller's scope (row-level security), with their building's
# community / current grid / compound and the last visit (visits whose event was not rejected)
MEMBERS_SQL = """
SELECT r.id, r.name, r.gender, r.id_last4, r.phone_masked, h.door_no, b.id AS building_id,
       b.code AS building_code, b.name AS building_name, b.community_code, c.name AS community_name,
       g.code AS grid_code, coalesce(g.name, '网格' || right(g.code, 3)) AS grid_name, cp.code AS compound_code,
       cp.name AS compound_name,
       array_agg(DISTINCT rg.group_code ORDER BY rg.group_code) AS groups,
       (SELECT max(v.visited_at) FROM special_visit v JOIN event e ON e.id = v.event_id
        WHERE v.resident_id = r.id AND e.status <> 'rejected') AS last_visit
FROM resident_group rg
JOIN resident r ON r.id = rg.resident_id
JOIN household h ON h.id = r.household_id
JOIN building b ON b.code = h.building_code
JOIN community c ON c.code = b.community_code
LEFT JOIN grid g ON g.id = b.grid_id
LEFT JOIN compound cp ON cp.id = b.compound_id
WHERE rg.group_code = ANY(:groups)
  AND b.community_code LIKE :prefix || '%'
  AND (CAST(:grid AS text) IS NULL OR g.code = :grid)
  AND (CAST(:grid_ids AS bigint[]) IS NULL OR b.grid_id = ANY(CAST(:grid_ids AS bigint[])))
GROUP BY r.id, h.id, b.id, c.id, g.id, cp.id
ORDER BY b.community_code, g.code NULLS LAST, b.code, h.door_no, r.id
"""


def widen(conn: Connection) -> None:
    from gisgov.api.deps import system_scope

    system_scope(conn)


def known_groups(conn: Connection) -> dict[str, tuple[str, str]]:
    return {
        r.code: (r.name_zh, r.name_en)
        for r in conn.execute(text("SELECT code, name_zh, name_en FROM special_group ORDER BY sort, code"))
    }


def config_for(conn: Connection, svc: CoverageService, path=None) -> Config:
    cfg = rules.load_config(path, svc.catalog())
    rules.check_groups(cfg, set(known_groups(conn)))
    return cfg


def _area(conn: Connection, p: Principal, code: str | None) -> tuple[str, str | None, list[int] | None]:
    """(community-code prefix, grid code, current grid ids) of the asked area inside the caller's node;
    a code outside it answers 404."""
    own = p.scope_code
    code = (code or "").strip() or own
    if len(code) not in (0, 9, 12, 15) or (not code.isdigit() and code):
        raise InvalidInput(f"编码无效 code {code!r} must be a street (9), community (12) or grid (15) code")
    if not code.startswith(own):
        raise NotFound(f"未找到 area not found: {code}")
    if len(code) == 15:
        ids = (
            conn.execute(text("SELECT g.id FROM grid_current() g WHERE g.code = :c ORDER BY g.id"), {"c": code})
            .scalars()
            .all()
        )
        if not ids:
            raise NotFound(f"未找到网格 grid not found: {code}")
        return code[:12], code, list(ids)
    return code, None, None


def members(
    conn: Connection, p: Principal, cfg: Config, code: str | None = None, groups: list[str] | None = None
) -> list[dict]:
    """Members of the configured groups (needs and visit rules) in the area, under row-level security."""
    want = sorted(set(groups or (set(cfg.groups) | set(cfg.visits))))
    prefix, grid, ids = _area(conn, p, code)
    rows = (
        conn.execute(text(MEMBERS_SQL), {"groups": want, "prefix": prefix, "grid": grid, "grid_ids": ids})
        .mappings()
        .all()
    )
    return [dict(r) for r in rows]


# -- distances ---------------------------------------------------------------------------------------------

_dist_lock = threading.Lock()
_dist_cache: dict = {}


def need_distances(conn: Connection, svc: CoverageService, cfg: Config) -> tuple[dict, dict, str]:
    """(group → building id → metres to the nearest service (inf: none within the cap),
    group → building id → (facility id, name, kind), method). Widens the transaction first."""
    widen(conn)
    with svc._lock:
        model = svc.ensure_model(conn)
        cat = svc.catalog()
        key = (id(svc), id(model), svc._fac_key, cat.checksum, cfg.checksum, tuple(n.group for n in cfg.needs))
        with _dist_lock:
            hit = _dist_cache.get(key)
        if hit is not None:
            return hit
        ids = model.buildings["id"].to_numpy()
        fac = model.facilities
        dist, near = {}, {}
        for n in cfg.needs:
            rows = np.unique(np.concatenate([model.category_rows(c) for c in n.services] or [np.zeros(0, int)]))
            d, f = model.distances_from_rows(rows.astype(np.int64))
            dist[n.group] = {int(b): float(x) for b, x in zip(ids, d, strict=False)}
            near[n.group] = {
                int(b): (
                    int(fac["id"].iloc[k]),
                    str(fac["name"].iloc[k]),
                    None if fac["kind"].iloc[k] is None else str(fac["kind"].iloc[k]),
                )
                for b, k in zip(ids, f, strict=False)
                if k >= 0
            }
        out = (dist, near, model.method)
        with _dist_lock:
            _dist_cache.clear()
            _dist_cache[key] = out
        return out


# -- lists for the responsible grid worker ---------------------------------------------------------------


def _person(r: dict) -> dict:
    """What a list shows of a resident: masked name, masked ID (no birth year in the same output), the
    stored masked phone, where they live."""
    return {
        "resident_id": int(r["id"]),
        "name": rules.mask_name(r["name"]),
        "gender": r["gender"],
        "id_masked": mask_id(r["id_last4"]),
        "phone_masked": r["phone_masked"],
        "building": r["building_code"],
        "building_name": r["building_name"],
        "door_no": r["door_no"],
        "compound": r["compound_code"],
        "compound_name": r["compound_name"],
        "grid": r["grid_code"],
        "grid_name": r["grid_name"] if r["grid_code"] else None,
        "community": r["community_code"],
        "community_name": r["community_name"],
    }


def _page(limit: int, offset: int) -> None:
    if not 1 <= limit <= MAX_LIST:
        raise InvalidInput(f"每页条数须在 1–{MAX_LIST} 之间 limit must be 1..{MAX_LIST}")
    if offset < 0:
        raise InvalidInput("offset 不能为负 offset must be >= 0")


def _check_personal(p: Principal) -> None:
    if not (p.can(Perm.read_personal) and p.can(Perm.read_special_groups)):
        raise Forbidden(
            f"无权限 not allowed for role {p.role.value} ({p.label}): needs read_personal, "
            "read_special_groups (named special-group members)"
        )


def beyond_list(
    conn: Connection,
    svc: CoverageService,
    p: Principal,
    *,
    code: str | None = None,
    group: str | None = None,
    limit: int = 500,
    offset: int = 0,
    cfg: Config | None = None,
) -> dict:
    """Residents of the area whose most-needed service lies beyond the circle (named, masked)."""
    _check_personal(p)
    _page(limit, offset)
    cfg = cfg or config_for(conn, svc)
    groups = [cfg.need(group).group] if group else cfg.groups
    rows = members(conn, p, cfg, code, groups)  # personal rows first, under the caller's scope
    dist, near, method = need_distances(conn, svc, cfg)
    budget = cfg.budget_m(svc.catalog())
    hits = rules.beyond(rows, dist, budget, groups)
    names = {n.group: (n.name_zh, n.name_en) for n in cfg.needs}
    items = []
    for h in hits[offset : offset + limit]:
        f = near.get(h["group"], {}).get(h["building_id"])
        items.append(
            {
                **_person(h),
                "group": h["group"],
                "need": names[h["group"]][0],
                "distance_m": h["distance_m"],
                "budget_m": budget,
                "nearest": None if f is None else {"facility_id": f[0], "name": f[1], "kind": f[2]},
            }
        )
    return {
        "area": code or p.scope_code,
        "circle": cfg.circle,
        "profile": cfg.profile,
        "budget_m": budget,
        "method": method,
        "total": len(hits),
        "members": sum(1 for r in rows for g in r["groups"] if g in groups),
        "limit": limit,
        "offset": offset,
        "items": items,
    }


def overdue_list(
    conn: Connection,
    p: Principal,
    cfg: Config,
    *,
    code: str | None = None,
    group: str | None = None,
    now: datetime | None = None,
    limit: int = 500,
    offset: int = 0,
) -> dict:
    """Members of groups with a visit rule whose last visit is older than the rule (or who were never
    visited), most overdue first (never visited first)."""
    _check_personal(p)
    _page(limit, offset)
    if group and group not in cfg.visits:
        raise InvalidInput(
            f"该人群无走访频次规则 no visit rule for group {group!r}; rules: {', '.join(sorted(cfg.visits))}"
        )
    visits = {group: cfg.visits[group]} if group else cfg.visits
    now = now or datetime.now(UTC)
    rows = members(conn, p, cfg, code, sorted(visits))
    hits = rules.overdue(rows, visits, now)
    hits.sort(key=lambda r: (r["due"] is not None, r["due"] or now, r["id"]))
    items = [
        {
            **_person(h),
            "groups": [g for g in h["groups"] if g in visits],
            "rule_group": h["rule_group"],
            "interval_days": h["days"],
            "last_visit": h["last_visit"].isoformat() if h["last_visit"] else None,
            "due": h["due"].isoformat() if h["due"] else None,
            "days_overdue": h["days_overdue"],
        }
        for h in hits[offset : offset + limit]
    ]
    return {
        "area": code or p.scope_code,
        "now": now.isoformat(),
        "total": len(hits),
        "limit": limit,
        "offset": offset,
        "items": items,
    }


# -- aggregates for leaders --------------------------------------------------------------------------------


def summary(
    conn: Connection,
    svc: CoverageService,
    p: Principal,
    *,
    k: int,
    cfg: Config | None = None,
    now: datetime | None = None,
) -> dict:
    """Per community and grid of the caller's area, per configured group: members, beyond the circle,
    overdue for a visit. Roles without ``read_special_groups`` see them with small cells suppressed, with
    the statistics' statuses for the members (:mod:`gisgov.stats.privacy`) and the beyond / overdue
    counts protected as sub-counts of them."""
    cfg = cfg or config_for(conn, svc)
    now = now or datetime.now(UTC)
    groups = sorted(set(cfg.groups) | set(cfg.visits))
    rows = members(conn, p, cfg, None, groups)  # under the caller's scope
    area = stats_queries.area_of(conn, p.scope_code)
    exact = p.exact_special_groups
    u = None if exact else privacy.build(stats_queries.cells(conn, area), groups, k)  # same scope as /api/stats
    dist, _, method = need_distances(conn, svc, cfg)
    budget = cfg.budget_m(svc.catalog())
    # per atom (community, grid, compound) counts
    counts: dict[str, dict[str, dict[tuple, int]]] = {g: {"members": {}, "beyond": {}, "overdue": {}} for g in groups}
    units: dict[tuple[str, str], str] = {}
    for r in rows:
        atom = (r["community_code"], r["grid_code"] or "", r["compound_code"] or "")
        units[("community", r["community_code"])] = r["community_name"]
        if r["grid_code"]:
            units[("grid", r["grid_code"])] = r["grid_name"]
        late = rules.group_overdue(r["groups"], r["last_visit"], cfg.visits, now)
        for g in r["groups"]:
            if g not in counts:
                continue
            c = counts[g]
            c["members"][atom] = c["members"].get(atom, 0) + 1
            if g in cfg.groups and rules.is_beyond(dist.get(g, {}).get(r["building_id"]), budget):
                c["beyond"][atom] = c["beyond"].get(atom, 0) + 1
            if g in late:
                c["overdue"][atom] = c["overdue"].get(atom, 0) + 1
    if u is not None:  # every unit of the area, also those without members (their counts are 0 or suppressed)
        for a in u.atoms:
            units.setdefault(("community", a[0]), None)
            if a[1]:
                units.setdefault(("grid", a[1]), None)
    statuses = {}
    if u is not None:
        shown = privacy.unit_cells(u)
        for g in groups:
            subs = {"beyond": counts[g]["beyond"], "overdue": counts[g]["overdue"]}
            if g not in cfg.groups:
                subs.pop("beyond")
            if g not in cfg.visits:
                subs.pop("overdue")
            try:
                statuses[g] = privacy.beyond_statuses(u, g, subs, shown)
            except ValueError:  # members and the statistics cells out of step: show no sub-count
                statuses[g] = {}
    out_units = []
    names = dict(known_groups(conn))
    for (level, ucode), name in sorted(units.items(), key=lambda x: (x[0][1], x[0][0] != "community")):
        pred = (lambda a, c=ucode: a[0] == c) if level == "community" else (lambda a, c=ucode: a[1] == c)
        cell = privacy.key(a for a in u.atoms if pred(a)) if u is not None else None
        gl = []
        for g in groups:
            vals = {f: sum(n for a, n in counts[g][f].items() if pred(a)) for f in ("members", "beyond", "overdue")}
            row = {
                "group": g,
                "group_name": names.get(g, (g, g))[0],
                "members": vals["members"],
                "beyond": vals["beyond"] if g in cfg.groups else None,
                "overdue": vals["overdue"] if g in cfg.visits else None,
                "suppressed": [],
            }
            if u is not None:
                t_status = u.lookup(g, cell) or suppress.HIDDEN
                row["members"] = suppress.label(vals["members"], t_status, k)
                if t_status != suppress.SHOWN:
                    row["suppressed"].append("members")
                for f in ("beyond", "overdue"):
                    if row[f] is None:
                        continue
                    st = statuses.get(g, {}).get(f, {}).get(cell, suppress.HIDDEN) if cell else suppress.SHOWN
                    row[f] = suppress.label(vals[f], st, k)
                    if st != suppress.SHOWN:
                        row["suppressed"].append(f)
            gl.append(row)
        out_units.append({"level": level, "code": ucode, "name": name, "groups": gl})
    return {
        "area": p.scope_code,
        "circle": cfg.circle,
        "profile": cfg.profile,
        "budget_m": budget,
        "method": method,
        "now": now.isoformat(),
        "units": out_units,
        "suppression": None
        if exact
        else {
            "k": k,
            "below": f"<{k}",
            "complement": f"≥{k}",
            "note": f"特殊人群人数少于{k}人显示为“<{k}”，部分数字显示为“≥{k}”以免由合计推算 special-group counts below "
            f"{k} are shown as '<{k}', some others as '≥{k}' so totals do not reveal them",
        },
    }


# -- visits -----------------------------------------------------------------------------------------------


def record_visit(conn: Connection, p: Principal, resident_id: int, cfg: Config, *, note: str | None = None) -> dict:
    """Record a 走访 visit: an event of the visit category at the resident's building (reported by the
    caller, in its scope) and the ``special_visit`` row naming the resident. 404 for a resident outside
    the caller's scope or in no special group."""
    from gisgov.events import store as events

    _check_personal(p)
    note = (note or "").replace("\x00", "").strip()
    if len(note) > MAX_NOTE:
        raise InvalidInput(f"说明过长 note longer than {MAX_NOTE} characters")
    row = conn.execute(
        text("""
        SELECT r.id, ST_X(ST_Transform(b.pos, 4490)) AS lon, ST_Y(ST_Transform(b.pos, 4490)) AS lat, b.code,
               array_agg(rg.group_code ORDER BY rg.group_code) AS groups
        FROM resident r JOIN household h ON h.id = r.household_id JOIN building b ON b.code = h.building_code
        JOIN resident_group rg ON rg.resident_id = r.id
        WHERE r.id = :id GROUP BY r.id, b.id"""),
        {"id": resident_id},
    ).first()
    if row is None:
        raise NotFound(f"未找到特殊人群居民 special-group resident not found: {resident_id}")
    desc = "特殊人群走访 special-group visit" + (f"：{note}" if note else "")
    ev = events.report(conn, p, lon=row.lon, lat=row.lat, category=cfg.visit_category, description=desc)
    at = conn.execute(
        text(
            "INSERT INTO special_visit (event_id, resident_id, visited_at) "
            "SELECT e.id, :r, e.reported_at FROM event e WHERE e.id = :e RETURNING visited_at"
        ),
        {"e": ev["id"], "r": resident_id},
    ).scalar_one()
    return {
        "event_id": ev["id"],
        "resident_id": int(resident_id),
        "building": row.code,
        "groups": list(row.groups),
        "visited_at": at.isoformat(),
        "event_status": ev["status"],
        "grid": ev["grid_code"],
        "community": ev["community_code"],
    }
