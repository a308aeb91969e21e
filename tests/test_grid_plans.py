"""Grid plans on a real PostGIS: propose → save (draft) → check → activate (atomic, renumbered) →
history, diff, code table; API routes and CLI; migration down/up with plans present."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, pool, text

from gisgov.api.app import create_app
from gisgov.db import migrate
from gisgov.errors import NotFound, PlanConflict
from gisgov.gridding import plans, service
from gisgov.gridding.io import plan_row
from gisgov.maps.offline import external_asset_urls
from tests.grid_city import COMMUNITY, block_layout

HH = np.array([120, 90, 150, 110, 80, 130, 100, 140, 95, 105, 125, 85])  # 4×3 compounds, 1,330 households


@pytest.fixture(scope="module")
def grid_db(db_factory):
    url = db_factory.create(prefix="gisgov_test_grids")
    eng = create_engine(url, poolclass=pool.NullPool)
    with eng.begin() as conn:
        block_layout(4, 3, HH, people_per_hh=2.3).load(conn)
    yield url, eng
    eng.dispose()


def test_plan_lifecycle(grid_db):
    url, eng = grid_db
    with eng.connect() as conn:
        with pytest.raises(NotFound, match="no grids yet"):
            service.check(conn, COMMUNITY)
        f = service.feasibility(conn, COMMUNITY)
        assert f["feasible"] and f["households"] == int(HH.sum()) and (f["k_min"], f["k_max"]) == (4, 4)  # 3,059 people need 4 grids
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
        bad = conn.execute(text("""SELECT count(*) FROM building b JOIN grid_assignment a ON a.building_id = b.id
            JOIN grid_plan p ON p.id = a.plan_id AND p.status = 'active' WHERE a.grid_id <> b.grid_id""")).scalar()
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
    url, eng = grid_db
    with eng.begin() as conn:
        # store a deliberately bad plan: everything in one grid (1,330 households)
        from gisgov.gridding.io import load_context, save_plan
        from gisgov.gridding.validate import PlanInput

        ctx = load_context(conn, COMMUNITY)
        ag = np.zeros(ctx.atoms.n, dtype=np.int64)
        v = save_plan(conn, ctx, PlanInput([f"{COMMUNITY}001"], ag), author="t")
    with pytest.raises(PlanConflict, match="households_over|above the maximum"):
        with eng.begin() as conn:
            plans.activate(conn, COMMUNITY, v)
    with eng.begin() as conn:
        fixed = service.repair_plan(conn, COMMUNITY, version=v, save=True, time_limit_s=2.0)
        assert fixed["breaks_before"] > 0
        # one grid cannot hold 1,330 households and repair keeps the grid count: it can only improve
        assert fixed["breaks_after"] <= fixed["breaks_before"]


@pytest.fixture(scope="module")
def client(grid_db):
    url, eng = grid_db
    with TestClient(create_app(engine=eng)) as c:
        yield c


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
    r = client.post("/api/grids/validate", json={"community": COMMUNITY,
                                                 "assignments": {b: f"{COMMUNITY}001" for b in bcodes}})
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


def test_cli_check_and_codes(grid_db, tmp_path):
    url, _ = grid_db
    env = {**os.environ, "GISGOV_DATABASE_URL": url}
    r = subprocess.run([sys.executable, "-m", "gisgov.cli.main", "grids", "check", "-c", COMMUNITY, "--json"],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["ok"] is True
    out = tmp_path / "codes.csv"
    r = subprocess.run([sys.executable, "-m", "gisgov.cli.main", "grids", "codes", "-c", COMMUNITY, "-o", str(out)],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert out.read_text(encoding="utf-8-sig").startswith("code,")
    r = subprocess.run([sys.executable, "-m", "gisgov.cli.main", "grids", "feasibility", "-c", COMMUNITY, "--min", "50", "--max", "100"],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 3 and "unit_over_max" in r.stdout


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
        cols = conn.execute(text("SELECT column_name FROM information_schema.columns WHERE table_name = 'grid'")).scalars().all()
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
