"""The authorization matrix: every operation of the OpenAPI schema × every role (and no sign-in) ×
(own node, sibling node, node of another street) → the expected status.

The expectation is computed from one rule per operation (:data:`OPS`): the permission it needs
(403 without it), whether it is about a node (404 outside the caller's area, never 403 — codes
cannot be probed), and what a permitted, in-scope call answers. The test FAILS if the schema has an
operation with no entry here, so a new route cannot ship without a decision on who may call it.

Accounts (sample city, two streets S1/S2): admin (city), street_leader/planner (S1),
community_staff/viewer (community A of S1), grid_worker (a grid of A's active plan). Targets:
own = A, sibling = B (another community of S1), other = C (a community of S2). Each target also has
an event, a staff member and a special-group resident in its first grid (the grid worker's grid for
A), so the routes about those objects are tried inside and outside every caller's area.

Rules that are not one permission (:attr:`Op.roles`): event transitions follow the event state
machine's table, reporting its reporter roles, the special-group lists need two permissions. Where the
scope is decided before the role (:attr:`Op.scope_first`: an event outside the area is invisible, so 404
before the machine's 403) and where "outside the area" is not a 404 (:attr:`Op.outside`: reporting at
a point outside the area is refused with 403 naming the area of the point, which is public geography;
a staff import naming grids outside the area is refused with the per-row 422 "grid unknown or not in
your area", the same as for a grid that does not exist) the entry says so.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from auth_helpers import app_engine, bearer_token, ensure_user
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, pool, text

from gisgov.api.app import create_app
from gisgov.config import Settings
from gisgov.events import machine
from gisgov.security.roles import PERMISSIONS, Perm, Principal, Role

ROLES = [r.value for r in Role]
TARGETS = ("own", "sibling", "other")


@dataclass
class Op:
    perm: Perm | None  # None: any signed-in account
    build: Callable[[dict], tuple[str, dict]]  # target node codes -> (url, request kwargs)
    scoped: bool = True  # 404 outside the caller's area
    ok: frozenset[int] = frozenset({200})
    heavy: bool = False  # only own target for admin + every role on 'other' (cheap 403/404)
    public: bool = False
    scope_key: str = "community"  # which code of the target decides the scope
    roles: frozenset[Role] | None = None  # instead of perm: exactly these roles may
    scope_first: bool = False  # the area is decided before the role (404 outside, then 403)
    outside: int = 404  # the answer outside the caller's area


def holding(*perms: Perm) -> frozenset[Role]:
    """The roles holding every one of ``perms``."""
    return frozenset(r for r in Role if all(p in PERMISSIONS[r] for p in perms))


def q(url: str, **params) -> Callable[[dict], tuple[str, dict]]:
    def build(t: dict) -> tuple[str, dict]:
        return url.format(**t), {"params": {k: (v.format(**t) if isinstance(v, str) else v) for k, v in params.items()}}

    return build


def body(url: str, payload: dict, **params) -> Callable[[dict], tuple[str, dict]]:
    def build(t: dict) -> tuple[str, dict]:
        raw = json.dumps(payload)
        for k, v in t.items():
            raw = raw.replace("{" + k + "}", str(v))
        p = json.loads(raw)
        return url.format(**t), {"json": p, "params": {k: v.format(**t) for k, v in params.items()}}

    return build


def owner_sql(t: dict, sql: str, **params) -> int:
    """Run one INSERT … RETURNING id as the database owner (whole-city scope); the new id."""
    eng = create_engine(t["_db"], poolclass=pool.NullPool)
    try:
        with eng.begin() as c:
            c.execute(text("SELECT set_config('gisgov.scope', '*', true)"))
            return int(c.execute(text(sql), params).scalar_one())
    finally:
        eng.dispose()


NEW_EVENT = """
    INSERT INTO event (geom, category, description, deadline)
    VALUES (ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4490), Find_SRID('public', 'event', 'geom')),
            'shirong', :d, now() + interval '3 days') RETURNING id"""
NEW_STAFF = """
    INSERT INTO grid_staff (grid_id, role, name) SELECT g.id, '信息员', :n
    FROM grid g JOIN grid_plan p ON p.id = g.plan_id AND p.status = 'active' WHERE g.code = :g RETURNING id"""


def fresh_event_transition(t: dict) -> tuple[str, dict]:
    """A new event (reported, version 1) in the target's grid, accepted with the right version: a
    permitted, in-scope call really moves it (200), so every call needs its own event."""
    eid = owner_sql(t, NEW_EVENT, lon=t["glon"], lat=t["glat"], d="权限矩阵 authorization matrix")
    return f"/api/events/{eid}/transition", {"json": {"to": "accepted", "version": 1}}


def fresh_staff_delete(t: dict) -> tuple[str, dict]:
    """A new staff row in the target's grid for every call: a permitted, in-scope call removes it."""
    sid = owner_sql(t, NEW_STAFF, g=t["grid"], n="矩阵测试")
    return f"/api/staff/{sid}", {}


def staff_xlsx(t: dict) -> tuple[str, dict]:
    """A one-row staff roster for the target's grid, checked only (dry run)."""
    import io

    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(["网格编码", "角色", "姓名", "手机号"])
    ws.append([t["grid"], "信息员", "矩阵测试", None])
    buf = io.BytesIO()
    wb.save(buf)
    return "/api/staff/import", {
        "data": {"mode": "append", "dry_run": "true"},
        "files": {"file": ("staff.xlsx", buf.getvalue(), XLSX)},
    }


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
R = Perm.read_aggregates
PERSONAL = Perm.read_personal
SPECIAL = holding(Perm.read_personal, Perm.read_special_groups)  # named special-group members
EDIT_GOV = Perm.import_data  # staff and compound attributes: roster maintenance (admin, community_staff)
NO_JOB = str(uuid.uuid4())


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (40, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()


PHOTO = _png()
OPS: dict[str, Op] = {
    "GET /health": Op(None, q("/health"), scoped=False, public=True),
    "POST /api/auth/login": Op(
        None,
        body("/api/auth/login", {"username": "nobody", "password": "wrong-passw0rd"}),
        scoped=False,
        public=True,
        ok=frozenset({401}),
    ),
    "POST /api/auth/token": Op(
        None,
        lambda t: ("/api/auth/token", {"data": {"username": "nobody", "password": "x1"}}),
        scoped=False,
        public=True,
        ok=frozenset({401}),
    ),
    "POST /api/auth/logout": Op(None, q("/api/auth/logout"), scoped=False),
    "GET /api/auth/me": Op(None, q("/api/auth/me"), scoped=False),
    "GET /api/hierarchy": Op(R, q("/api/hierarchy"), scoped=False),
    "GET /api/layers": Op(None, q("/api/layers"), scoped=False),
    "GET /api/layers/{level}": Op(R, q("/api/layers/community", limit=5), scoped=False),
    "GET /api/street/{code}": Op(R, q("/api/street/{street}"), scope_key="street"),
    "GET /api/community/{code}": Op(R, q("/api/community/{community}")),
    "GET /api/grid/{code}": Op(R, q("/api/grid/{grid}")),
    "GET /api/compound/{code}": Op(R, q("/api/compound/{compound}")),
    "GET /api/building/{code}": Op(R, q("/api/building/{building}")),
    "GET /api/facility/{code}": Op(R, q("/api/facility/{facility}")),
    "GET /api/road/{code}": Op(R, q("/api/road/{road}"), scoped=False),
    "GET /api/resident/{code}": Op(Perm.read_personal, q("/api/resident/{resident}")),
    "GET /map": Op(R, q("/map"), scoped=False),
    "POST /api/import": Op(
        Perm.import_data,
        lambda t: (
            "/api/import",
            {
                "data": {"level": "facility", "dry_run": "true"},
                "files": {
                    "file": (
                        "f.geojson",
                        json.dumps({"type": "FeatureCollection", "features": []}).encode(),
                        "application/geo+json",
                    )
                },
            },
        ),
        scoped=False,
        ok=frozenset({200, 422}),
    ),
    "GET /api/import/{job_id}": Op(None, q("/api/import/" + str(uuid.uuid4())), scoped=False, ok=frozenset({404})),
    "POST /api/import/{job_id}/retry": Op(
        Perm.import_data, body(f"/api/import/{uuid.uuid4()}/retry", {}), scoped=False, ok=frozenset({404})
    ),
    "GET /tiles/{layer}/{z}/{x}/{y}.pbf": Op(R, q("/tiles/building/0/0/0.pbf"), scoped=False),
    "GET /api/export": Op(R, q("/api/export", level="compound", format="geojson", community="{community}")),
    "GET /api/template/residents": Op(None, q("/api/template/residents"), scoped=False),
    "GET /api/coverage/catalog": Op(R, q("/api/coverage/catalog"), scoped=False),
    "GET /api/coverage/summary": Op(R, q("/api/coverage/summary", level="community", code="{community}"), heavy=True),
    "GET /api/coverage/areas": Op(
        R, q("/api/coverage/areas", category="weisheng", circle="c15"), scoped=False, heavy=True
    ),
    "GET /api/coverage/gaps": Op(
        R, q("/api/coverage/gaps", category="weisheng", level="community", code="{community}"), heavy=True
    ),
    "POST /api/coverage/site": Op(
        Perm.run_analyses,
        body("/api/coverage/site", {"category": "weisheng", "k": 1, "level": "community", "code": "{community}"}),
        heavy=True,
    ),
    "POST /api/coverage/whatif": Op(
        Perm.run_analyses,
        lambda t: (
            "/api/coverage/whatif",
            {
                "json": {
                    "op": "add",
                    "category": "weisheng",
                    "lon": t["lon"],
                    "lat": t["lat"],
                    "commit": False,
                    "level": "community",
                    "code": t["community"],
                }
            },
        ),
        heavy=True,
    ),
    "POST /api/coverage/compute": Op(
        Perm.run_analyses, body("/api/coverage/compute", {"categories": ["weisheng"]}), scoped=False, heavy=True
    ),
    "GET /coverage/map": Op(
        R, q("/coverage/map", category="weisheng", level="community", code="{community}"), heavy=True
    ),
    "POST /api/grids/validate": Op(R, body("/api/grids/validate", {"community": "{community}"})),
    "POST /api/grids/feasibility": Op(R, body("/api/grids/feasibility", {}, community="{community}"), heavy=True),
    "POST /api/grids/propose": Op(
        Perm.edit_plans,
        body(
            "/api/grids/propose",
            {"community": "{community}", "method": "heuristic", "time_limit_s": 5, "closest": True},
        ),
        heavy=True,
    ),
    "POST /api/grids/repair": Op(Perm.edit_plans, body("/api/grids/repair", {"community": "{community}"}), heavy=True),
    "GET /api/grids/plans/{community}": Op(R, q("/api/grids/plans/{community}")),
    "GET /api/grids/plans/{community}/{version}": Op(R, q("/api/grids/plans/{community}/{version}")),
    "POST /api/grids/plans/{community}/{version}/activate": Op(
        Perm.activate_plans, body("/api/grids/plans/{community}/{version}/activate", {}), ok=frozenset({200, 409})
    ),
    "GET /api/grids/plans/{community}/{version}/codes": Op(R, q("/api/grids/plans/{community}/{version}/codes")),
    "GET /api/grids/plans/{community}/{version}/export": Op(
        R, q("/api/grids/plans/{community}/{version}/export", format="gpkg")
    ),
    # {version} is the active plan: refused (409), nothing deleted
    "DELETE /api/grids/plans/{community}/{version}": Op(
        Perm.edit_plans, body("/api/grids/plans/{community}/{version}", {}), ok=frozenset({409})
    ),
    "POST /api/grids/sessions/{sid}/edit": Op(
        Perm.edit_plans,
        body("/api/grids/sessions/nosuchsession/edit", {"op": "delete", "grid": "{grid}"}),
        scoped=False,
        ok=frozenset({404}),
    ),
    "GET /api/context": Op(None, q("/api/context", bbox="117.2,31.8,117.3,31.9", zoom=15), scoped=False),
    "GET /api/context/basemap": Op(None, q("/api/context/basemap"), scoped=False),
    "GET /coverage": Op(R, q("/coverage"), scoped=False),
    "GET /api/coverage/buildings": Op(
        R, q("/api/coverage/buildings", category="weisheng", circle="c15"), scoped=False, heavy=True
    ),
    "GET /api/coverage/facilities": Op(
        R, q("/api/coverage/facilities", category="weisheng", circle="c15"), scoped=False, heavy=True
    ),
    "GET /api/coverage/communities": Op(
        R, q("/api/coverage/communities", category="weisheng", circle="c15"), scoped=False, heavy=True
    ),
    "GET /api/grids/diff/{community}": Op(R, q("/api/grids/diff/{community}", a="{version}", b="{version}")),
    "GET /api/grids/map/{community}": Op(R, q("/api/grids/map/{community}")),
    "POST /api/grids/sessions": Op(Perm.edit_plans, body("/api/grids/sessions", {"community": "{community}"})),
    "POST /api/grids/sessions/{sid}/move": Op(
        Perm.edit_plans,
        body("/api/grids/sessions/nosuchsession/move", {"to": "{grid}", "building": "{building}"}),
        scoped=False,
        ok=frozenset({404}),
    ),
    "GET /api/grids/sessions/{sid}": Op(R, q("/api/grids/sessions/nosuchsession"), scoped=False, ok=frozenset({404})),
    "POST /api/grids/sessions/{sid}/save": Op(
        Perm.edit_plans, body("/api/grids/sessions/nosuchsession/save", {}), scoped=False, ok=frozenset({404})
    ),
    "GET /api/grids/sessions/{sid}/layers": Op(
        R, q("/api/grids/sessions/nosuchsession/layers"), scoped=False, ok=frozenset({404})
    ),
    "GET /api/stats": Op(R, q("/api/stats"), scoped=False),
    "GET /api/rollup/cities": Op(None, q("/api/rollup/cities"), scoped=False, roles=frozenset({Role.admin})),
    "GET /api/rollup/units": Op(
        None, q("/api/rollup/units", level="community"), scoped=False, roles=frozenset({Role.admin})
    ),
    "GET /api/rollup/features": Op(
        None, q("/api/rollup/features", level="city"), scoped=False, roles=frozenset({Role.admin})
    ),
    "GET /province": Op(R, q("/province"), scoped=False),
    "GET /api/stats/features": Op(R, q("/api/stats/features"), scoped=False),
    "GET /api/stats/{level}/{code}": Op(R, q("/api/stats/community/{community}")),
    "GET /api/stats/{level}/{code}/features": Op(R, q("/api/stats/community/{community}/features")),
    "GET /dashboard": Op(R, q("/dashboard"), scoped=False),
    "GET /grids/editor": Op(R, q("/grids/editor", community="{community}"), scoped=False),
    "GET /api/audit": Op(Perm.read_audit, q("/api/audit", limit=5), scoped=False),
    "GET /api/users": Op(Perm.manage_users, q("/api/users"), scoped=False),
    "GET /admin/audit": Op(Perm.read_audit, q("/admin/audit"), scoped=False),
    # export jobs: the owner (and admin for the status) only; anyone else's or an unknown job is 404
    "GET /api/export/jobs/{job_id}": Op(None, q("/api/export/jobs/" + NO_JOB), scoped=False, ok=frozenset({404})),
    "GET /api/jobs/{job_id}": Op(None, q("/api/jobs/" + NO_JOB), scoped=False, ok=frozenset({404})),
    "GET /api/export/jobs/{job_id}/file": Op(
        None, q(f"/api/export/jobs/{NO_JOB}/file"), scoped=False, ok=frozenset({404})
    ),
    # events 事件
    "GET /events": Op(None, q("/events"), scoped=False),
    "GET /governance": Op(R, q("/governance"), scoped=False),
    "GET /api/events/catalog": Op(R, q("/api/events/catalog"), scoped=False),
    "GET /api/events/geojson": Op(R, q("/api/events/geojson"), scoped=False),
    "GET /api/events/stats": Op(R, q("/api/events/stats", community="{community}")),
    "GET /api/events": Op(PERSONAL, q("/api/events", status="reported", limit=5), scoped=False),  # rows under RLS
    "GET /api/events/{event_id}": Op(PERSONAL, q("/api/events/{event}"), scope_key="grid"),
    "GET /api/dashboard/events": Op(R, q("/api/dashboard/events", street="{street}"), scope_key="street"),
    "GET /api/events/{event_id}/photos": Op(PERSONAL, q("/api/events/{event}/photos"), scope_key="grid"),
    "GET /api/events/photos/{photo_id}": Op(PERSONAL, q("/api/events/photos/{photo}"), scope_key="grid"),
    "POST /api/events/{event_id}/photos": Op(
        None,
        lambda t: (f"/api/events/{t['event']}/photos", {"files": {"file": ("photo.png", PHOTO, "image/png")}}),
        roles=machine.REPORTERS,
        scope_key="grid",
        ok=frozenset({201}),
    ),  # the same photo again: stored once ("duplicate")
    "POST /api/events": Op(
        None,
        lambda t: (
            "/api/events",
            {
                "json": {
                    "lon": t["glon"],
                    "lat": t["glat"],
                    "category": "shirong",
                    "description": "权限矩阵 authorization matrix",
                }
            },
        ),
        roles=machine.REPORTERS,
        scope_key="grid",
        outside=403,
        ok=frozenset({201}),
    ),
    "POST /api/events/{event_id}/transition": Op(
        None,
        fresh_event_transition,
        roles=machine.TRANSITIONS[(machine.State.reported, machine.State.accepted)],
        scope_key="grid",
        scope_first=True,
    ),
    # staff 网格员 (names for read_personal only; edits: import_data)
    "GET /api/staff": Op(R, q("/api/staff", code="{community}")),
    "GET /api/staff/gaps": Op(R, q("/api/staff/gaps", code="{community}")),
    "GET /api/staff/template": Op(R, q("/api/staff/template"), scoped=False),
    "POST /api/staff": Op(
        EDIT_GOV,
        body("/api/staff", {"grid": "{grid}", "role": "信息员", "name": "矩阵测试"}),
        scope_key="grid",
        ok=frozenset({201}),
    ),
    "PATCH /api/staff/{staff_id}": Op(EDIT_GOV, body("/api/staff/{staff}", {}), scope_key="grid"),  # no change
    "DELETE /api/staff/{staff_id}": Op(EDIT_GOV, fresh_staff_delete, scope_key="grid"),
    "POST /api/staff/import": Op(EDIT_GOV, staff_xlsx, scope_key="grid", outside=422),
    # compounds 小区
    "GET /api/compounds/rules": Op(R, q("/api/compounds/rules"), scoped=False),
    "GET /api/compounds/check": Op(R, q("/api/compounds/check", code="{community}")),
    "GET /api/compounds/breaches": Op(R, q("/api/compounds/breaches", code="{community}")),
    "GET /api/compounds/{code}": Op(R, q("/api/compounds/{compound}"), scope_key="compound"),
    "PATCH /api/compounds/{code}": Op(
        EDIT_GOV,
        lambda t: (f"/api/compounds/{t['compound']}", {"json": {"version": t["compound_version"]}}),
        scope_key="compound",
    ),  # the current version, no change
    # special groups 特殊人群服务
    "GET /api/special/needs": Op(R, q("/api/special/needs"), scoped=False),
    "GET /api/special/summary": Op(R, q("/api/special/summary"), scoped=False),
    "GET /api/special/beyond": Op(
        None, q("/api/special/beyond", code="{grid}", limit=5), roles=SPECIAL, scope_key="grid"
    ),
    "GET /api/special/visits/overdue": Op(
        None, q("/api/special/visits/overdue", code="{grid}", limit=5), roles=SPECIAL, scope_key="grid"
    ),
    "POST /api/special/visits": Op(
        None,
        lambda t: ("/api/special/visits", {"json": {"resident_id": t["special"]}}),
        roles=SPECIAL,
        scope_key="grid",
        ok=frozenset({201}),
    ),
}


def _nodes(owner_url: str) -> dict:
    eng = create_engine(owner_url, poolclass=pool.NullPool)
    with eng.connect() as c:
        c.execute(text("SELECT set_config('gisgov.scope', '*', false)"))
        streets = c.execute(text("SELECT code FROM street ORDER BY code")).scalars().all()
        assert len(streets) >= 2, "the sample city must have two streets"

        def node(comm: str) -> dict:
            r = (
                c.execute(
                    text("""
                SELECT g.code AS grid, p.version,
                       (SELECT code FROM compound WHERE community_code = :c ORDER BY code LIMIT 1) AS compound,
                       (SELECT code FROM building WHERE community_code = :c ORDER BY code LIMIT 1) AS building,
                       (SELECT code FROM facility WHERE community_code = :c ORDER BY code LIMIT 1) AS facility,
                       (SELECT min(r.id) FROM resident r JOIN household h ON h.id = r.household_id
                         JOIN building b ON b.code = h.building_code WHERE b.grid_id = g.id) AS resident,
                       (SELECT ST_X(ST_PointOnSurface(geom)) FROM community WHERE code = :c) AS lon,
                       (SELECT ST_Y(ST_PointOnSurface(geom)) FROM community WHERE code = :c) AS lat,
                       ST_X(ST_Transform(ST_PointOnSurface(g.geom), 4490)) AS glon,
                       ST_Y(ST_Transform(ST_PointOnSurface(g.geom), 4490)) AS glat,
                       (SELECT min(s.id) FROM grid_staff s WHERE s.grid_id = g.id) AS staff,
                       (SELECT version FROM compound WHERE community_code = :c ORDER BY code LIMIT 1)
                           AS compound_version,
                       (SELECT min(r.id) FROM resident r JOIN household h ON h.id = r.household_id
                         JOIN building b ON b.code = h.building_code
                         WHERE b.grid_id = g.id AND ST_Covers(g.geom, b.pos)
                           AND EXISTS (SELECT 1 FROM resident_group rg WHERE rg.resident_id = r.id)) AS special
                FROM grid g JOIN grid_plan p ON p.id = g.plan_id AND p.status = 'active'
                WHERE g.community_code = :c ORDER BY g.code LIMIT 1"""),
                    {"c": comm},
                )
                .mappings()
                .one()
            )
            assert None not in (r["staff"], r["special"], r["compound_version"]), dict(r)
            ev = c.execute(
                text(NEW_EVENT), {"lon": r["glon"], "lat": r["glat"], "d": "权限矩阵 authorization matrix"}
            ).scalar_one()
            placed = c.execute(text("SELECT grid_code FROM event WHERE id = :i"), {"i": ev}).scalar_one()
            assert placed == r["grid"], (placed, dict(r))
            return dict(r) | {
                "community": comm,
                "street": comm[:9],
                "resident": str(r["resident"]),
                "road": str(c.execute(text("SELECT min(id) FROM road_edge")).scalar()),
                "event": ev,
                "_db": owner_url,
            }

        s1 = (
            c.execute(
                text("SELECT code FROM community WHERE street_code = :s ORDER BY code LIMIT 2"), {"s": streets[0]}
            )
            .scalars()
            .all()
        )
        s2 = c.execute(
            text("SELECT code FROM community WHERE street_code = :s ORDER BY code LIMIT 1"), {"s": streets[1]}
        ).scalar()
        out = {"own": node(s1[0]), "sibling": node(s1[1]), "other": node(s2)}
        c.commit()
    eng.dispose()
    return out


def _scope(role: str, own: dict) -> str:
    return {
        "admin": "",
        "street_leader": own["street"],
        "planner": own["street"],
        "community_staff": own["community"],
        "viewer": own["community"],
        "grid_worker": own["grid"],
    }[role]


def expected(op: Op, role: str | None, target: dict, own: dict) -> frozenset[int]:
    if op.public:
        return op.ok
    if role is None:
        return frozenset({401})
    p = Principal(0, "x", "x", Role(role), _scope(role, own))
    allowed = p.role in op.roles if op.roles is not None else op.perm is None or p.can(op.perm)
    outside = op.scoped and not p.covers(target[op.scope_key])
    if outside and op.scope_first:
        return frozenset({op.outside})
    if not allowed:
        return frozenset({403})
    if outside:
        return frozenset({op.outside})
    return op.ok


@pytest.fixture(scope="module")
def matrix_db(db_factory, sample_city):
    """A database of its own (writes such as plan activation happen here), with active grid plans
    in the three communities the matrix uses."""
    from security_city import build_gridded_city

    return build_gridded_city(db_factory, sample_city, "gisgov_test_matrix")


@pytest.fixture(scope="module")
def world(matrix_db, tmp_path_factory):
    nodes = _nodes(matrix_db)
    own = nodes["own"]
    users = {role: ensure_user(matrix_db, role, _scope(role, own)) for role in ROLES}
    eng = app_engine(matrix_db)
    home = tmp_path_factory.mktemp("matrix-home")  # event photos are stored under the home folder
    app = create_app(Settings(home=home, login_rate_per_minute=1000), engine=eng)
    with TestClient(app) as c:
        tokens = {role: bearer_token(c, users[role]) for role in ROLES}
        for t in nodes.values():  # a photo of each target's event
            r = c.post(
                f"/api/events/{t['event']}/photos",
                headers={"Authorization": f"Bearer {tokens['admin']}"},
                files={"file": ("photo.png", PHOTO, "image/png")},
            )
            assert r.status_code == 201, r.text
            t["photo"] = r.json()["id"]
        yield c, nodes, tokens
    eng.dispose()


def test_every_operation_has_an_entry(world):
    client, _, tokens = world
    schema = client.get("/openapi.json", headers={"Authorization": f"Bearer {tokens['admin']}"}).json()
    ops = {f"{m.upper()} {p}" for p, item in schema["paths"].items() for m in item}
    pages = {
        "GET /map",
        "GET /dashboard",
        "GET /grids/editor",
        "GET /admin/audit",
        "GET /coverage/map",
        "GET /coverage",
    }
    missing = sorted(ops - set(OPS))
    assert not missing, f"operations without an authorization rule: {missing}"
    stale = sorted(set(OPS) - ops - pages)
    assert not stale, f"rules for operations that no longer exist: {stale}"


def _cases():
    for key, op in OPS.items():
        for role in [None, *ROLES]:
            targets = ("own",) if not op.scoped else TARGETS
            for t in targets:
                if op.heavy and t != "other" and role not in ("admin", None):
                    continue
                if op.heavy and role == "admin" and t == "sibling":
                    continue
                yield pytest.param(key, role, t, id=f"{key}|{role or 'anon'}|{t}")


@pytest.mark.parametrize(("key", "role", "target"), list(_cases()))
def test_matrix(world, key, role, target):
    client, nodes, tokens = world
    op = OPS[key]
    method = key.split(" ", 1)[0]
    url, kw = op.build(nodes[target])
    headers = {"Authorization": f"Bearer {tokens[role]}"} if role else {}
    if key == "POST /api/auth/logout" and role:
        # a token of its own, so logging out does not end the shared one
        headers = {
            "Authorization": f"Bearer {bearer_token(client, f't_{role}_' + (_scope(role, nodes['own']) or 'all'))}"
        }
    r = client.request(method, url, headers=headers, follow_redirects=False, **kw)
    want = expected(op, role, nodes[target], nodes["own"])
    if role is None and not op.public and method == "GET" and not url.startswith("/api"):
        want = frozenset({303})  # pages send the browser to /login
    assert r.status_code in want, f"{key} as {role or 'anonymous'} on {target} ({url}): {r.status_code} {r.text[:300]}"
