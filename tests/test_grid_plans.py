"""Grid plans on a real PostGIS: propose → save (draft) → check → activate (atomic, renumbered) →
history, diff, code table; API routes (signed in, by role and scope, audited, CSRF) and CLI;
migration down/up with plans present."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from auth_helpers import app_engine, bearer_token, ensure_user, signed_in_client
from sqlalchemy import create_engine, pool, text

from gisgov.config import Settings
from gisgov.db import migrate
from gisgov.errors import NotFound, PlanConflict
from gisgov.gridding import plans, service
from gisgov.gridding.io import plan_row
from gisgov.maps.offline import external_asset_urls
from tests.grid_city import COMMUNITY, STREET, block_layout

OTHER_STREET = "340104002"  # a second street (no buildings): its accounts must not see COMMUNITY
OTHER_COMMUNITY = "340104002001"
SETTINGS = Settings(login_rate_per_minute=1000)

HH = np.array([120, 90, 150, 110, 80, 130, 100, 140, 95, 105, 125, 85])  # 4×3 compounds, 1,330 households


@pytest.fixture(scope="module")
def grid_db(db_factory):
    url = db_factory.create(prefix="gisgov_test_grids")
    eng = create_engine(url, poolclass=pool.NullPool)
    with eng.begin() as conn:
        block_layout(4, 3, HH, people_per_hh=2.3).load(conn)
        conn.execute(
            text(
                "INSERT INTO street (code, name, geom) VALUES (:c, '另一街道', "
                "ST_Multi(ST_GeomFromText('POLYGON((117.4 31.9, 117.41 31.9, 117.41 31.91, 117.4 31.91, "
                "117.4 31.9))', 4490)))"
            ),
            {"c": OTHER_STREET},
        )
        conn.execute(
            text(
                "INSERT INTO community (code, street_code, name, geom) SELECT :c, code, '另一社区', geom "
                "FROM street WHERE code = :s"
            ),
            {"c": OTHER_COMMUNITY, "s": OTHER_STREET},
        )
    yield url, eng
    eng.dispose()


def test_plan_lifecycle(grid_db):
    _url, eng = grid_db
    with eng.connect() as conn:
        with pytest.raises(NotFound, match="no grids yet"):
            service.check(conn, COMMUNITY)
        f = service.feasibility(conn, COMMUNITY)
        assert (
            f["feasible"] and f["households"] == int(HH.sum()) and (f["k_min"], f["k_max"]) == (4, 4)
        )  # 3,059 people need 4 grids
    with eng.begin() as conn:
        p1 = service.propose_plan(conn, COMMUNITY, save=True, author="测试员", time_limit_s=2.0)
        assert p1["status"] == "ok" and p1["version"] == 1 and p1["report"]["ok"]
        assert p1["method"] == "exact-cpsat"
    with eng.connect() as conn:
        rep = service.check(conn, COMMUNITY, version=1)
        assert rep["ok"] and rep["plan"] == {"version": 1, "status": "draft"}
        assert conn.execute(text("SELECT count(*) FROM building WHERE grid_id IS NOT NULL")).scalar() == 0
    with eng.begin() as conn:
        out = plans.activate(conn, COMMUNITY, 1)
        assert out["previous"] is None and out["buildings"] == 12
    with eng.connect() as conn:
        assert plan_row(conn, COMMUNITY, None)["version"] == 1
        n_null = conn.execute(text("SELECT count(*) FROM building WHERE grid_id IS NULL")).scalar()
        assert n_null == 0
        cur = conn.execute(text("SELECT code FROM grid_current() ORDER BY code")).scalars().all()
        assert cur == [f"{COMMUNITY}{i:03d}" for i in range(1, len(cur) + 1)]
        rep = service.check(conn, COMMUNITY)  # the active plan
        assert rep["ok"] and rep["plan"]["status"] == "active"
        # building.grid_id agrees with the stored assignment
        bad = conn.execute(
            text("""SELECT count(*) FROM building b JOIN grid_assignment a ON a.building_id = b.id
            JOIN grid_plan p ON p.id = a.plan_id AND p.status = 'active' WHERE a.grid_id <> b.grid_id""")
        ).scalar()
        assert bad == 0
    # version 2: a different seed; activation fails mid-way → version 1 stays active, nothing changed
    with eng.begin() as conn:
        p2 = service.propose_plan(conn, COMMUNITY, save=True, seed=7, method="heuristic")
        assert p2["version"] == 2
    with eng.connect() as conn:
        before = conn.execute(text("SELECT id, grid_id FROM building ORDER BY id")).all()
        codes_before = conn.execute(text("SELECT id, code FROM grid ORDER BY id")).all()

    def boom(step):
        if step == "buildings":
            raise RuntimeError("simulated failure after archiving the old plan")

    with pytest.raises(RuntimeError, match="simulated"):
        with eng.begin() as conn:
            plans.activate(conn, COMMUNITY, 2, checkpoint=boom)
    with eng.connect() as conn:
        assert plan_row(conn, COMMUNITY, None)["version"] == 1
        assert plan_row(conn, COMMUNITY, 2)["status"] == "draft"
        assert conn.execute(text("SELECT id, grid_id FROM building ORDER BY id")).all() == before
        assert conn.execute(text("SELECT id, code FROM grid ORDER BY id")).all() == codes_before
    with eng.begin() as conn:
        out = plans.activate(conn, COMMUNITY, 2)
        assert out["previous"] == 1
        with pytest.raises(PlanConflict, match="already active"):
            plans.activate(conn, COMMUNITY, 2)
    with eng.connect() as conn:
        statuses = {r["version"]: r["status"] for r in service_list(conn)}
        assert statuses == {1: "archived", 2: "active"}
        d = plans.diff(conn, COMMUNITY, 1, 2)
        assert d["from"] == 1 and d["to"] == 2 and d["buildings_moved"] == len(d["moved"])
        assert sum((g["after"] or {}).get("households", 0) for g in d["grids"]) == int(HH.sum())
        table = plans.code_table(conn, COMMUNITY, 2)
        assert [r["code"] for r in table] == sorted(r["code"] for r in table)
        assert sum(r["households"] for r in table) == int(HH.sum())


def service_list(conn):
    from gisgov.gridding.io import list_plans

    return list_plans(conn, COMMUNITY)


def test_activation_refuses_a_plan_with_breaks(grid_db):
    _url, eng = grid_db
    with eng.begin() as conn:
        # store a deliberately bad plan: everything in one grid (1,330 households)
        from gisgov.gridding.io import load_context, save_plan
        from gisgov.gridding.validate import PlanInput

        ctx = load_context(conn, COMMUNITY)
        ag = np.zeros(ctx.atoms.n, dtype=np.int64)
        v = save_plan(conn, ctx, PlanInput([f"{COMMUNITY}001"], ag), author="t")
    with pytest.raises(PlanConflict, match=r"households_over|above the maximum"):
        with eng.begin() as conn:
            plans.activate(conn, COMMUNITY, v)
    with eng.begin() as conn:
        fixed = service.repair_plan(conn, COMMUNITY, version=v, save=True, time_limit_s=2.0)
        assert fixed["breaks_before"] > 0
        # one grid cannot hold 1,330 households and repair keeps the grid count: it can only improve
        assert fixed["breaks_after"] <= fixed["breaks_before"]


@pytest.fixture(scope="module")
def app_eng(grid_db):
    eng = app_engine(grid_db[0])
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def client(grid_db, app_eng):
    """Signed in (bearer) as the street leader of COMMUNITY's street; ``as_(role, scope)`` gives headers of others."""
    with signed_in_client(SETTINGS, grid_db[0], role="street_leader", scope=STREET, engine=app_eng) as c:
        yield c


def as_(client, url: str, role: str, scope: str) -> dict:
    """Authorization header of another account (role at scope), signed in on the same app."""
    return {"Authorization": f"Bearer {bearer_token(client, ensure_user(url, role, scope))}"}


def audit_rows(url: str, action: str, obj: str | None = None) -> list:
    e = create_engine(url, poolclass=pool.NullPool)
    try:
        with e.connect() as conn:
            return conn.execute(
                text(
                    "SELECT actor, actor_role, object, result, detail FROM audit_log "
                    "WHERE action = :a AND (CAST(:o AS text) IS NULL OR object = :o) ORDER BY id"
                ),
                {"a": action, "o": obj},
            ).all()
    finally:
        e.dispose()


def active_version(url: str) -> int | None:
    e = create_engine(url, poolclass=pool.NullPool)
    try:
        with e.connect() as conn:
            return conn.execute(
                text("SELECT version FROM grid_plan WHERE community_code = :c AND status = 'active'"), {"c": COMMUNITY}
            ).scalar()
    finally:
        e.dispose()


def test_api_validate_propose_session_map(client, grid_db):
    r = client.post("/api/grids/propose", json={"community": COMMUNITY, "time_limit_s": 1.0})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok" and body["geojson"]["type"] == "FeatureCollection"
    # validate the proposal as polygons (GeoJSON, not stored)
    r = client.post("/api/grids/validate", json={"community": COMMUNITY, "grids": body["geojson"]})
    assert r.status_code == 200 and r.json()["ok"], r.json()["breaks"]
    # as assignments: everything in one grid → over the maximum
    with create_engine(grid_db[0], poolclass=pool.NullPool).connect() as conn:
        bcodes = conn.execute(text("SELECT code FROM building ORDER BY code")).scalars().all()
    r = client.post(
        "/api/grids/validate", json={"community": COMMUNITY, "assignments": dict.fromkeys(bcodes, f"{COMMUNITY}001")}
    )
    assert r.status_code == 200 and {b["rule"] for b in r.json()["breaks"]} >= {"households_over", "people_over"}
    r = client.post("/api/grids/validate", json={"community": COMMUNITY, "assignments": {"99999999999999999": "x"}})
    assert r.status_code == 422 and "99999999999999999" in r.json()["detail"]
    assert client.post("/api/grids/validate", json={"community": "999999999999"}).status_code == 404
    # edit session: move a compound, get the two grids back
    r = client.post("/api/grids/sessions", json={"community": COMMUNITY})
    assert r.status_code == 200, r.text
    sid, grids = r.json()["session"], r.json()["grids"]
    plan = client.get(f"/api/grids/plans/{COMMUNITY}/2").json()
    comp = f"{COMMUNITY}0001"
    target = next(g for g in grids if g != plan["features"][0]["id"])
    r = client.post(f"/api/grids/sessions/{sid}/move", json={"to": target, "compound": comp})
    assert r.status_code == 200, r.text
    mv = r.json()
    assert any(g["code"] == target for g in mv["grids"]) and "cannot_leave" in mv["grids"][0]
    # map: local assets only
    r = client.get(f"/api/grids/map/{COMMUNITY}")
    assert r.status_code == 200 and "leaflet" in r.text.lower() and external_asset_urls(r.text) == []
    csv_ = client.get(f"/api/grids/plans/{COMMUNITY}/2/codes", params={"format": "csv"})
    assert csv_.status_code == 200 and csv_.text.lstrip("\ufeff").startswith("code,")
    assert client.get(f"/api/grids/diff/{COMMUNITY}", params={"a": 1, "b": 2}).status_code == 200
    assert client.get(f"/api/grids/plans/{COMMUNITY}").status_code == 200


def test_planner_drafts_but_cannot_activate(client, grid_db):
    url, _ = grid_db
    planner = as_(client, url, "planner", STREET)
    before = active_version(url)
    r = client.post(
        "/api/grids/propose",
        headers=planner,
        json={"community": COMMUNITY, "time_limit_s": 1.0, "save": True, "author": "someone else"},
    )
    assert r.status_code == 200, r.text
    v = r.json()["version"]
    plans_ = {x["version"]: x for x in client.get(f"/api/grids/plans/{COMMUNITY}", headers=planner).json()}
    assert plans_[v]["status"] == "draft" and plans_[v]["author"] == ensure_user(url, "planner", STREET)
    # planners see aggregates only: no special-group counts per grid
    plan = client.get(f"/api/grids/plans/{COMMUNITY}/{v}", headers=planner).json()
    assert plan["features"] and all("groups" not in f["properties"] for f in plan["features"])
    assert all("groups" in f["properties"] for f in client.get(f"/api/grids/plans/{COMMUNITY}/{v}").json()["features"])
    saves = audit_rows(url, "plan_save", f"{COMMUNITY}/v{v}")
    assert [(a.actor, a.result) for a in saves] == [(ensure_user(url, "planner", STREET), "ok")]
    # edit session: move, save a draft (audited plan_edit / plan_save)
    sid = client.post("/api/grids/sessions", headers=planner, json={"community": COMMUNITY}).json()["session"]
    layers = client.get(f"/api/grids/sessions/{sid}/layers", headers=planner).json()
    comp = layers["compounds"]["features"][0]["properties"]
    target = next(g["code"] for g in layers["grids"] if g["code"] not in comp["grids"])
    n_edit = len(audit_rows(url, "plan_edit"))
    r = client.post(f"/api/grids/sessions/{sid}/move", headers=planner, json={"to": target, "compound": comp["code"]})
    assert r.status_code == 200, r.text
    edits = audit_rows(url, "plan_edit")
    assert len(edits) == n_edit + 1 and edits[-1].object == COMMUNITY and edits[-1].detail["to"] == target
    r = client.post(f"/api/grids/sessions/{sid}/save", headers=planner, json={"note": "moved one compound"})
    assert r.status_code == 200, r.text
    v2 = r.json()["version"]
    assert len(audit_rows(url, "plan_save", f"{COMMUNITY}/v{v2}")) == 1
    # … but activation is the street leader's: 403, nothing changed, nothing audited
    for ver in (v, v2):
        r = client.post(f"/api/grids/plans/{COMMUNITY}/{ver}/activate", headers=planner, json={"force": True})
        assert r.status_code == 403, r.text
        assert audit_rows(url, "plan_activate", f"{COMMUNITY}/v{ver}") == []
    assert active_version(url) == before


def test_street_leader_activates_once_audited(client, grid_db):
    url, _ = grid_db
    r = client.post("/api/grids/propose", json={"community": COMMUNITY, "time_limit_s": 1.0, "save": True, "seed": 5})
    assert r.status_code == 200, r.text
    v = r.json()["version"]
    r = client.post(f"/api/grids/plans/{COMMUNITY}/{v}/activate", json={})
    assert r.status_code == 200, r.text
    assert active_version(url) == v
    rows = audit_rows(url, "plan_activate", f"{COMMUNITY}/v{v}")
    assert len(rows) == 1  # exactly one row for one activation
    assert (rows[0].actor, rows[0].actor_role, rows[0].result) == (
        ensure_user(url, "street_leader", STREET),
        "street_leader",
        "ok",
    )
    # activating it again is a conflict: one more row, marked failed (never a second "ok")
    assert client.post(f"/api/grids/plans/{COMMUNITY}/{v}/activate", json={}).status_code == 409
    rows = audit_rows(url, "plan_activate", f"{COMMUNITY}/v{v}")
    assert [x.result for x in rows] == ["ok", "failed"]


def test_viewer_reads_but_cannot_write(client, grid_db):
    url, _ = grid_db
    viewer = as_(client, url, "viewer", COMMUNITY)
    assert client.get(f"/api/grids/plans/{COMMUNITY}", headers=viewer).status_code == 200
    assert client.post("/api/grids/validate", headers=viewer, json={"community": COMMUNITY}).status_code == 200
    r = client.post("/api/grids/feasibility", headers=viewer, params={"community": COMMUNITY}, json={})
    assert r.status_code == 200 and r.json()["feasible"]
    for path, body in (
        ("/api/grids/propose", {"community": COMMUNITY, "time_limit_s": 1.0}),
        ("/api/grids/repair", {"community": COMMUNITY}),
        ("/api/grids/sessions", {"community": COMMUNITY}),
        (f"/api/grids/plans/{COMMUNITY}/1/activate", {}),
    ):
        r = client.post(path, headers=viewer, json=body)
        assert r.status_code == 403, (path, r.text)


def test_other_street_gets_404(client, grid_db):
    url, _ = grid_db
    v = active_version(url)
    for role in ("viewer", "planner", "street_leader"):
        other = as_(client, url, role, OTHER_STREET)
        for path in (
            f"/api/grids/plans/{COMMUNITY}",
            f"/api/grids/plans/{COMMUNITY}/{v}",
            f"/api/grids/plans/{COMMUNITY}/{v}/codes",
            f"/api/grids/map/{COMMUNITY}",
            f"/api/grids/diff/{COMMUNITY}?a=1&b={v}",
        ):
            r = client.get(path, headers=other)
            assert r.status_code == 404, (role, path, r.status_code)
        assert client.post("/api/grids/validate", headers=other, json={"community": COMMUNITY}).status_code == 404
        assert (
            client.post("/api/grids/feasibility", headers=other, params={"community": COMMUNITY}, json={}).status_code
            == 404
        )
        if role != "viewer":
            assert (
                client.post(
                    "/api/grids/propose", headers=other, json={"community": COMMUNITY, "save": True}
                ).status_code
                == 404
            )
            assert client.post("/api/grids/sessions", headers=other, json={"community": COMMUNITY}).status_code == 404
    r = client.post(
        f"/api/grids/plans/{COMMUNITY}/1/activate",
        headers=as_(client, url, "street_leader", OTHER_STREET),
        json={"force": True},
    )
    assert r.status_code == 404 and active_version(url) == v
    # a planner of the community itself is in scope
    assert (
        client.get(f"/api/grids/plans/{COMMUNITY}", headers=as_(client, url, "planner", COMMUNITY)).status_code == 200
    )


def test_edit_sessions_belong_to_their_opener(client, grid_db):
    url, _ = grid_db
    planner = as_(client, url, "planner", STREET)
    r = client.post("/api/grids/sessions", headers=planner, json={"community": COMMUNITY})
    sid, grids = r.json()["session"], r.json()["grids"]
    assert client.get(f"/api/grids/sessions/{sid}", headers=planner).status_code == 200
    # the street leader (and an admin) did not open it: 404 for every session route
    for who in ({}, as_(client, url, "admin", ""), as_(client, url, "planner", COMMUNITY)):
        assert client.get(f"/api/grids/sessions/{sid}", headers=who).status_code == 404
        assert client.get(f"/api/grids/sessions/{sid}/layers", headers=who).status_code == 404
        assert (
            client.post(
                f"/api/grids/sessions/{sid}/move", headers=who, json={"to": grids[0], "compound": f"{COMMUNITY}0001"}
            ).status_code
            == 404
        )
        assert client.post(f"/api/grids/sessions/{sid}/save", headers=who, json={}).status_code == 404


def test_writes_need_json_and_csrf(client, grid_db, app_eng):
    url, _ = grid_db
    r = client.post("/api/grids/propose", json={"community": COMMUNITY, "time_limit_s": 1.0, "save": True, "seed": 9})
    v = r.json()["version"]
    before = active_version(url)
    n_audit = len(audit_rows(url, "plan_activate"))
    act = f"/api/grids/plans/{COMMUNITY}/{v}/activate"
    # bearer client: a form-encoded, text or empty body is refused (415), not read as "no options"
    assert client.post(act, data={"force": "true"}).status_code == 415
    assert client.post(act, content=b"", headers={"Content-Type": "text/plain"}).status_code == 415
    assert client.post(act).status_code == 415
    assert client.post("/api/grids/sessions", data={"community": COMMUNITY}).status_code == 415
    # a cookie session (the pages): the cross-site form post of the incident, a missing token, a wrong one
    with signed_in_client(SETTINGS, url, role="street_leader", scope=STREET, cookie=True, engine=app_eng) as page:
        token = page.headers.pop("X-CSRF-Token")
        assert token and page.cookies.get("gisgov_session")
        cases = [
            dict(
                headers={"Origin": "http://evil.example", "Content-Type": "application/x-www-form-urlencoded"},
                content=b"",
            ),
            dict(headers={"Origin": "http://evil.example", "X-CSRF-Token": token}, json={"force": True}),
            dict(headers={"Origin": SETTINGS.origin}, json={"force": True}),  # no X-CSRF-Token
            dict(headers={"Origin": SETTINGS.origin, "X-CSRF-Token": "x" * len(token)}, json={}),
            dict(headers={"X-CSRF-Token": token, "Origin": "null"}, json={}),  # no usable origin
        ]
        for kw in cases:
            page.headers.pop("Origin", None)
            r = page.post(act, **kw)
            assert r.status_code == 403, (kw, r.status_code, r.text)
        assert active_version(url) == before and len(audit_rows(url, "plan_activate")) == n_audit
        # the same page with its token and its own origin may activate
        r = page.post(act, headers={"Origin": SETTINGS.origin, "X-CSRF-Token": token}, json={})
        assert r.status_code == 200, r.text
    assert active_version(url) == v and len(audit_rows(url, "plan_activate", f"{COMMUNITY}/v{v}")) == 1
    # and nobody signed in: 401
    from fastapi.testclient import TestClient

    from gisgov.api.app import create_app

    with TestClient(create_app(SETTINGS, engine=app_eng)) as anon:
        r = anon.post(act, headers={"Origin": "http://evil.example"}, data={})
        assert r.status_code == 401


def test_cli_check_and_codes(grid_db, tmp_path):
    url, _ = grid_db
    env = {**os.environ, "GISGOV_DATABASE_URL": url}
    r = subprocess.run(
        [sys.executable, "-m", "gisgov.cli.main", "grids", "check", "-c", COMMUNITY, "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["ok"] is True
    out = tmp_path / "codes.csv"
    r = subprocess.run(
        [sys.executable, "-m", "gisgov.cli.main", "grids", "codes", "-c", COMMUNITY, "-o", str(out)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert out.read_text(encoding="utf-8-sig").startswith("code,")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "gisgov.cli.main",
            "grids",
            "feasibility",
            "-c",
            COMMUNITY,
            "--min",
            "50",
            "--max",
            "100",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "unit_over_max" in r.stdout


def test_migration_down_and_up_with_plans(db_factory):
    url = db_factory.create(prefix="gisgov_test_gridmig")
    eng = create_engine(url, poolclass=pool.NullPool)
    with eng.begin() as conn:
        block_layout(4, 3, HH).load(conn)
    with eng.begin() as conn:
        v = service.propose_plan(conn, COMMUNITY, save=True, time_limit_s=1.0)["version"]
        plans.activate(conn, COMMUNITY, v)
        service.propose_plan(conn, COMMUNITY, save=True, seed=3, method="heuristic")  # a draft
    migrate.downgrade(url, "0001")
    with eng.connect() as conn:
        cols = (
            conn.execute(text("SELECT column_name FROM information_schema.columns WHERE table_name = 'grid'"))
            .scalars()
            .all()
        )
        assert "plan_id" not in cols
        assert conn.execute(text("SELECT to_regclass('grid_plan')")).scalar() is None
        n = conn.execute(text("SELECT count(*) FROM grid")).scalar()
        assert n > 0 and conn.execute(text("SELECT count(*) FROM building WHERE grid_id IS NULL")).scalar() == 0
        uq = conn.execute(text("SELECT count(*) FROM pg_constraint WHERE conname = 'grid_code_key'")).scalar()
        assert uq == 1
    migrate.upgrade(url)
    with eng.connect() as conn:
        rows = conn.execute(text("SELECT version, status FROM grid_plan")).all()
        assert rows == [(1, "active")]
        assert conn.execute(text("SELECT count(*) FROM grid_assignment")).scalar() == 12
    eng.dispose()
