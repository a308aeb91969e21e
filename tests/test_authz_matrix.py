"""The authorization matrix: every operation of the OpenAPI schema × every role (and no sign-in) ×
(own node, sibling node, node of another street) → the expected status.

The expectation is computed from one rule per operation (:data:`OPS`): the permission it needs
(403 without it), whether it is about a node (404 outside the caller's area, never 403 — codes
cannot be probed), and what a permitted, in-scope call answers. The test FAILS if the schema has an
operation with no entry here, so a new route cannot ship without a decision on who may call it.

Accounts (sample city, two streets S1/S2): admin (city), street_leader/planner (S1),
community_staff/viewer (community A of S1), grid_worker (a grid of A's active plan). Targets:
own = A, sibling = B (another community of S1), other = C (a community of S2).
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
from gisgov.security.roles import Perm, Principal, Role

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


R = Perm.read_aggregates
OPS: dict[str, Op] = {
    "GET /health": Op(None, q("/health"), scoped=False, public=True),
    "POST /api/auth/login": Op(None, body("/api/auth/login", {"username": "nobody", "password": "wrong-passw0rd"}),
                               scoped=False, public=True, ok=frozenset({401})),
    "POST /api/auth/token": Op(None, lambda t: ("/api/auth/token", {"data": {"username": "nobody", "password": "x1"}}),
                               scoped=False, public=True, ok=frozenset({401})),
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
    "POST /api/import": Op(Perm.import_data, lambda t: ("/api/import", {
        "data": {"level": "facility", "dry_run": "true"},
        "files": {"file": ("f.geojson", json.dumps({"type": "FeatureCollection", "features": []}).encode(),
                           "application/geo+json")}}), scoped=False, ok=frozenset({200, 422})),
    "GET /api/import/{job_id}": Op(None, q("/api/import/" + str(uuid.uuid4())), scoped=False, ok=frozenset({404})),
    "GET /api/export": Op(R, q("/api/export", level="compound", format="geojson", community="{community}")),
    "GET /api/template/residents": Op(None, q("/api/template/residents"), scoped=False),
    "GET /api/coverage/catalog": Op(R, q("/api/coverage/catalog"), scoped=False),
    "GET /api/coverage/summary": Op(R, q("/api/coverage/summary", level="community", code="{community}"), heavy=True),
    "GET /api/coverage/areas": Op(R, q("/api/coverage/areas", category="weisheng", circle="c15"),
                                  scoped=False, heavy=True),
    "GET /api/coverage/gaps": Op(R, q("/api/coverage/gaps", category="weisheng", level="community", code="{community}"),
                                 heavy=True),
    "POST /api/coverage/site": Op(Perm.run_analyses, body("/api/coverage/site", {
        "category": "weisheng", "k": 1, "level": "community", "code": "{community}"}), heavy=True),
    "POST /api/coverage/whatif": Op(Perm.run_analyses, lambda t: ("/api/coverage/whatif", {"json": {
        "op": "add", "category": "weisheng", "lon": t["lon"], "lat": t["lat"], "commit": False,
        "level": "community", "code": t["community"]}}),
        heavy=True),
    "POST /api/coverage/compute": Op(Perm.run_analyses, body("/api/coverage/compute", {"categories": ["weisheng"]}),
                                     scoped=False, heavy=True),
    "GET /coverage/map": Op(R, q("/coverage/map", category="weisheng", level="community", code="{community}"),
                            heavy=True),
    "POST /api/grids/validate": Op(R, body("/api/grids/validate", {"community": "{community}"})),
    "POST /api/grids/feasibility": Op(R, body("/api/grids/feasibility", {}, community="{community}"), heavy=True),
    "POST /api/grids/propose": Op(Perm.edit_plans, body("/api/grids/propose", {
        "community": "{community}", "method": "heuristic", "time_limit_s": 5, "closest": True}), heavy=True),
    "POST /api/grids/repair": Op(Perm.edit_plans, body("/api/grids/repair", {"community": "{community}"}),
                                 heavy=True),
    "GET /api/grids/plans/{community}": Op(R, q("/api/grids/plans/{community}")),
    "GET /api/grids/plans/{community}/{version}": Op(R, q("/api/grids/plans/{community}/{version}")),
    "POST /api/grids/plans/{community}/{version}/activate": Op(
        Perm.activate_plans, body("/api/grids/plans/{community}/{version}/activate", {}), ok=frozenset({200, 409})),
    "GET /api/grids/plans/{community}/{version}/codes": Op(R, q("/api/grids/plans/{community}/{version}/codes")),
    "GET /api/grids/diff/{community}": Op(R, q("/api/grids/diff/{community}", a="{version}", b="{version}")),
    "GET /api/grids/map/{community}": Op(R, q("/api/grids/map/{community}")),
    "POST /api/grids/sessions": Op(Perm.edit_plans, body("/api/grids/sessions", {"community": "{community}"})),
    "POST /api/grids/sessions/{sid}/move": Op(Perm.edit_plans, body(
        "/api/grids/sessions/nosuchsession/move", {"to": "{grid}", "building": "{building}"}), scoped=False,
        ok=frozenset({404})),
    "GET /api/grids/sessions/{sid}": Op(R, q("/api/grids/sessions/nosuchsession"), scoped=False,
                                        ok=frozenset({404})),
    "POST /api/grids/sessions/{sid}/save": Op(Perm.edit_plans, body("/api/grids/sessions/nosuchsession/save", {}),
                                              scoped=False, ok=frozenset({404})),
    "GET /api/grids/sessions/{sid}/layers": Op(R, q("/api/grids/sessions/nosuchsession/layers"),
                                               scoped=False, ok=frozenset({404})),
    "GET /api/stats": Op(R, q("/api/stats"), scoped=False),
    "GET /api/stats/features": Op(R, q("/api/stats/features"), scoped=False),
    "GET /api/stats/{level}/{code}": Op(R, q("/api/stats/community/{community}")),
    "GET /api/stats/{level}/{code}/features": Op(R, q("/api/stats/community/{community}/features")),
    "GET /dashboard": Op(R, q("/dashboard"), scoped=False),
    "GET /grids/editor": Op(R, q("/grids/editor", community="{community}"), scoped=False),
    "GET /api/audit": Op(Perm.read_audit, q("/api/audit", limit=5), scoped=False),
    "GET /api/users": Op(Perm.manage_users, q("/api/users"), scoped=False),
    "GET /admin/audit": Op(Perm.read_audit, q("/admin/audit"), scoped=False),
}


def _nodes(owner_url: str) -> dict:
    eng = create_engine(owner_url, poolclass=pool.NullPool)
    with eng.connect() as c:
        streets = c.execute(text("SELECT code FROM street ORDER BY code")).scalars().all()
        assert len(streets) >= 2, "the sample city must have two streets"

        def node(comm: str) -> dict:
            r = c.execute(text("""
                SELECT g.code AS grid, p.version,
                       (SELECT code FROM compound WHERE community_code = :c ORDER BY code LIMIT 1) AS compound,
                       (SELECT code FROM building WHERE community_code = :c ORDER BY code LIMIT 1) AS building,
                       (SELECT code FROM facility WHERE community_code = :c ORDER BY code LIMIT 1) AS facility,
                       (SELECT min(r.id) FROM resident r JOIN household h ON h.id = r.household_id
                         JOIN building b ON b.code = h.building_code WHERE b.grid_id = g.id) AS resident,
                       (SELECT ST_X(ST_PointOnSurface(geom)) FROM community WHERE code = :c) AS lon,
                       (SELECT ST_Y(ST_PointOnSurface(geom)) FROM community WHERE code = :c) AS lat
                FROM grid g JOIN grid_plan p ON p.id = g.plan_id AND p.status = 'active'
                WHERE g.community_code = :c ORDER BY g.code LIMIT 1"""), {"c": comm}).mappings().one()
            return dict(r) | {"community": comm, "street": comm[:9], "resident": str(r["resident"]),
                              "road": str(c.execute(text("SELECT min(id) FROM road_edge")).scalar())}

        s1 = c.execute(text("SELECT code FROM community WHERE street_code = :s ORDER BY code LIMIT 2"),
                       {"s": streets[0]}).scalars().all()
        s2 = c.execute(text("SELECT code FROM community WHERE street_code = :s ORDER BY code LIMIT 1"),
                       {"s": streets[1]}).scalar()
        out = {"own": node(s1[0]), "sibling": node(s1[1]), "other": node(s2)}
    eng.dispose()
    return out


def _scope(role: str, own: dict) -> str:
    return {"admin": "", "street_leader": own["street"], "planner": own["street"], "community_staff": own["community"],
            "viewer": own["community"], "grid_worker": own["grid"]}[role]


def expected(op: Op, role: str | None, target: dict, own: dict) -> frozenset[int]:
    if op.public:
        return op.ok
    if role is None:
        return frozenset({401})
    p = Principal(0, "x", "x", Role(role), _scope(role, own))
    if op.perm is not None and not p.can(op.perm):
        return frozenset({403})
    if op.scoped and not p.covers(target[op.scope_key]):
        return frozenset({404})
    return op.ok


@pytest.fixture(scope="module")
def matrix_db(db_factory, sample_city):
    """A database of its own (writes such as plan activation happen here), with active grid plans
    in the three communities the matrix uses."""
    from security_city import build_gridded_city

    return build_gridded_city(db_factory, sample_city, "gisgov_test_matrix")


@pytest.fixture(scope="module")
def world(matrix_db):
    nodes = _nodes(matrix_db)
    own = nodes["own"]
    users = {role: ensure_user(matrix_db, role, _scope(role, own)) for role in ROLES}
    eng = app_engine(matrix_db)
    app = create_app(Settings(login_rate_per_minute=1000), engine=eng)
    with TestClient(app) as c:
        tokens = {role: bearer_token(c, users[role]) for role in ROLES}
        yield c, nodes, tokens
    eng.dispose()


def test_every_operation_has_an_entry(world):
    client, _, tokens = world
    schema = client.get("/openapi.json", headers={"Authorization": f"Bearer {tokens['admin']}"}).json()
    ops = {f"{m.upper()} {p}" for p, item in schema["paths"].items() for m in item}
    pages = {"GET /map", "GET /dashboard", "GET /grids/editor", "GET /admin/audit", "GET /coverage/map"}
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
        headers = {"Authorization": f"Bearer {bearer_token(client, f't_{role}_' + (_scope(role, nodes['own']) or 'all'))}"}
    r = client.request(method, url, headers=headers, follow_redirects=False, **kw)
    want = expected(op, role, nodes[target], nodes["own"])
    if role is None and not op.public and method == "GET" and not url.startswith("/api"):
        want = frozenset({303})  # pages send the browser to /login
    assert r.status_code in want, f"{key} as {role or 'anonymous'} on {target} ({url}): {r.status_code} {r.text[:300]}"
