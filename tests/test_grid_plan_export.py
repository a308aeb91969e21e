"""Plan lifecycle routes of the planner's workbench: the versions list carries the within-bounds share and
the households range, a draft can be deleted (the active and archived versions cannot: 409), and a plan
exports as a GeoPackage or a zipped Shapefile that reads back with the plan's codes, names and counts."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pyogrio
import pytest
from auth_helpers import app_engine, bearer_token, ensure_user
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, pool, text

from gisgov.api.app import create_app
from gisgov.config import Settings
from gisgov.gridding import plans, service
from tests.grid_city import COMMUNITY, STREET, block_layout

SETTINGS = Settings(login_rate_per_minute=1000)
HH = np.array([120, 90, 150, 110, 80, 130, 100, 140, 95, 105, 125, 85])
NAME = "第一网格（东）"


@pytest.fixture(scope="module")
def db(db_factory):
    url = db_factory.create(prefix="gisgov_test_plan_export")
    eng = create_engine(url, poolclass=pool.NullPool)
    with eng.begin() as conn:
        block_layout(4, 3, HH, people_per_hh=2.3).load(conn)
    with eng.begin() as conn:
        v1 = service.propose_plan(conn, COMMUNITY, save=True, time_limit_s=2.0)["version"]
        plans.activate(conn, COMMUNITY, v1)
        conn.execute(
            text(
                "UPDATE grid SET name = :n WHERE id = (SELECT min(g.id) FROM grid g JOIN grid_plan p ON p.id = g.plan_id "
                "WHERE p.community_code = :c AND p.status = 'active')"
            ),
            {"n": NAME, "c": COMMUNITY},
        )
    with eng.begin() as conn:
        v2 = service.propose_plan(conn, COMMUNITY, save=True, time_limit_s=2.0, seed=3)["version"]
    yield url, eng, v1, v2
    eng.dispose()


@pytest.fixture(scope="module")
def app_eng(db):
    eng = app_engine(db[0])
    yield eng
    eng.dispose()


def client_for(app_eng, user: str) -> TestClient:
    c = TestClient(create_app(SETTINGS, engine=app_eng))
    c.__enter__()
    c.headers["Authorization"] = f"Bearer {bearer_token(c, user)}"
    return c


@pytest.fixture(scope="module")
def planner(db, app_eng):
    c = client_for(app_eng, ensure_user(db[0], "planner", STREET))
    yield c
    c.__exit__(None, None, None)


def test_versions_list_within_bounds_and_range(db, planner):
    rows = planner.get(f"/api/grids/plans/{COMMUNITY}").json()
    assert {r["version"] for r in rows} >= {db[2], db[3]}
    for r in rows:
        assert 0.0 <= r["within_bounds"] <= 1.0
        lo, hi = r["households_range"]
        assert 0 <= lo <= hi
        codes = planner.get(f"/api/grids/plans/{COMMUNITY}/{r['version']}/codes").json()
        hh = [c["households"] for c in codes]
        assert [lo, hi] == [min(hh), max(hh)]
        assert r["grids"] == len(codes)


@pytest.mark.parametrize("fmt", ["gpkg", "shp"])
def test_export_reads_back(db, planner, tmp_path, fmt):
    v = db[2]
    r = planner.get(f"/api/grids/plans/{COMMUNITY}/{v}/export", params={"format": fmt})
    assert r.status_code == 200, r.text
    disp = r.headers["content-disposition"]
    assert COMMUNITY in disp and f"v{v}" in disp
    path = tmp_path / f"plan.{'gpkg' if fmt == 'gpkg' else 'zip'}"
    path.write_bytes(r.content)
    if fmt == "shp":
        with zipfile.ZipFile(io.BytesIO(r.content)) as z:
            names = z.namelist()
            assert {n.rsplit(".", 1)[1] for n in names} >= {"shp", "shx", "dbf", "prj", "cpg"}
            cpg = next(n for n in names if n.endswith(".cpg"))
            assert z.read(cpg).decode().strip().upper() in ("UTF-8", "UTF8")
        shp = next(n for n in names if n.endswith(".shp"))
        frame = pyogrio.read_dataframe(f"/vsizip/{path}/{shp}")
    else:
        frame = pyogrio.read_dataframe(path)
    assert frame.crs.to_epsg() == 4490
    table = {c["code"]: c for c in planner.get(f"/api/grids/plans/{COMMUNITY}/{v}/codes").json()}
    assert sorted(frame["code"]) == sorted(table)
    assert frame["code"].str.len().eq(15).all()  # codes kept as text, every digit
    for _, row in frame.iterrows():
        assert int(row["households"]) == table[row["code"]]["households"]
    assert NAME in set(frame["name"])
    stored = planner.get(f"/api/grids/plans/{COMMUNITY}/{v}").json()
    people = {f["id"]: f["properties"]["people"] for f in stored["features"]}
    assert {row["code"]: int(row["people"]) for _, row in frame.iterrows()} == people
    assert set(frame["status"]) <= {"ok", "under", "over"}
    assert planner.get(f"/api/grids/plans/{COMMUNITY}/{v}/export", params={"format": "kml"}).status_code == 422
    assert planner.get(f"/api/grids/plans/{COMMUNITY}/999/export").status_code == 404


def test_delete_draft_only(db, planner, app_eng):
    v_active, v_draft = db[2], db[3]
    r = planner.request("DELETE", f"/api/grids/plans/{COMMUNITY}/{v_active}", json={})
    assert r.status_code == 409 and "只能删除草稿" in r.json()["detail"], r.text
    assert planner.request("DELETE", f"/api/grids/plans/{COMMUNITY}/999", json={}).status_code == 404
    # outside the caller's area: not found; a viewer may not delete
    with db[1].begin() as conn:
        conn.execute(
            text(
                "INSERT INTO street (code, name, geom) VALUES ('340104002', '别的街道', "
                "ST_Multi(ST_MakeEnvelope(118, 32, 118.01, 32.01, 4490))) ON CONFLICT (code) DO NOTHING"
            )
        )
    other = client_for(app_eng, ensure_user(db[0], "planner", "340104002"))
    viewer = client_for(app_eng, ensure_user(db[0], "viewer", STREET))
    try:
        assert other.request("DELETE", f"/api/grids/plans/{COMMUNITY}/{v_draft}", json={}).status_code == 404
        assert viewer.request("DELETE", f"/api/grids/plans/{COMMUNITY}/{v_draft}", json={}).status_code == 403
    finally:
        other.__exit__(None, None, None)
        viewer.__exit__(None, None, None)
    r = planner.request("DELETE", f"/api/grids/plans/{COMMUNITY}/{v_draft}", json={})
    assert r.status_code == 200, r.text
    assert r.json() == {"community": COMMUNITY, "version": v_draft, "deleted": True}
    assert v_draft not in {x["version"] for x in planner.get(f"/api/grids/plans/{COMMUNITY}").json()}
    with db[1].connect() as conn:
        assert not conn.execute(
            text("SELECT count(*) FROM grid g JOIN grid_plan p ON p.id = g.plan_id WHERE p.version = :v"),
            {"v": v_draft},
        ).scalar()
        assert conn.execute(
            text("SELECT count(*) FROM audit_log WHERE action = 'plan_delete' AND object = :o AND result = 'ok'"),
            {"o": f"{COMMUNITY}/v{v_draft}"},
        ).scalar()
    # the active plan is still whole
    assert planner.get(f"/api/grids/plans/{COMMUNITY}/{v_active}").status_code == 200
