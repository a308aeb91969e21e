"""Grid edit sessions stored in PostgreSQL: they survive an app restart (a second app on the same
database, no in-process state), many sessions of one account evict nothing, an idle session answers
410 with what to do (and can be resumed with its moves), another account's session answers 404, a
stale revision answers 409; plus the request budgets of the grid routes (solver time cap, list lengths)."""

from __future__ import annotations

import numpy as np
import pytest
from auth_helpers import app_engine, bearer_token, ensure_user
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, pool, text

from gisgov.api.app import create_app
from gisgov.config import Settings
from gisgov.gridding import plans, service, sessions
from tests.grid_city import COMMUNITY, STREET, block_layout

SETTINGS = Settings(login_rate_per_minute=1000)
HH = np.array([120, 90, 150, 110, 80, 130, 100, 140, 95, 105, 125, 85])


@pytest.fixture(scope="module")
def db(db_factory):
    url = db_factory.create(prefix="gisgov_test_sessions")
    eng = create_engine(url, poolclass=pool.NullPool)
    with eng.begin() as conn:
        block_layout(4, 3, HH, people_per_hh=2.3).load(conn)
    with eng.begin() as conn:
        v = service.propose_plan(conn, COMMUNITY, save=True, time_limit_s=2.0)["version"]
        plans.activate(conn, COMMUNITY, v)
    yield url, eng
    eng.dispose()


@pytest.fixture(scope="module")
def app_eng(db):
    eng = app_engine(db[0])
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def planner(db):
    return ensure_user(db[0], "planner", STREET)


def client_for(app_eng, user: str, settings: Settings = SETTINGS) -> TestClient:
    c = TestClient(create_app(settings, engine=app_eng))
    c.__enter__()
    c.headers["Authorization"] = f"Bearer {bearer_token(c, user)}"
    return c


def a_move(c: TestClient, sid: str) -> tuple[str, str]:
    """(compound, target grid): a compound and a grid it is not in."""
    layers = c.get(f"/api/grids/sessions/{sid}/layers").json()
    comp = layers["compounds"]["features"][0]["properties"]
    return comp["code"], next(g["code"] for g in layers["grids"] if g["code"] not in comp["grids"])


def grids_of(c: TestClient, sid: str, compound: str) -> list[str]:
    r = c.get(f"/api/grids/sessions/{sid}/layers")
    assert r.status_code == 200, r.text
    return next(
        f["properties"]["grids"] for f in r.json()["compounds"]["features"] if f["properties"]["code"] == compound
    )


def test_session_survives_an_app_restart(db, app_eng, planner):
    c1 = client_for(app_eng, planner)
    r = c1.post("/api/grids/sessions", json={"community": COMMUNITY})
    assert r.status_code == 200, r.text
    sid = r.json()["session"]
    assert r.json()["revision"] == 0 and r.json()["base_version"] is not None
    comp, to = a_move(c1, sid)
    r = c1.post(f"/api/grids/sessions/{sid}/move", json={"to": to, "compound": comp})
    assert r.status_code == 200 and r.json()["revision"] == 1, r.text
    c1.__exit__(None, None, None)
    # a new process: nothing of the first app is left (not even the editor cache)
    sessions._CACHE.clear()
    c2 = client_for(app_eng, planner)
    try:
        assert grids_of(c2, sid, comp) == [to]
        report = c2.get(f"/api/grids/sessions/{sid}")
        assert report.status_code == 200 and report.json()["session"]["revision"] == 1
        back = next(g for g in c2.get(f"/api/grids/sessions/{sid}/layers").json()["grids"] if g["code"] != to)["code"]
        r = c2.post(f"/api/grids/sessions/{sid}/move", json={"to": back, "compound": comp, "revision": 1})
        assert r.status_code == 200 and r.json()["revision"] == 2, r.text
        with db[1].connect() as conn:
            row = conn.execute(
                text("SELECT revision, community_code FROM grid_edit_session WHERE id = :i"), {"i": sid}
            ).one()
        assert tuple(row) == (2, COMMUNITY)
        # a stale revision (another tab) is refused and changes nothing
        r = c2.post(f"/api/grids/sessions/{sid}/move", json={"to": to, "compound": comp, "revision": 1})
        assert r.status_code == 409 and r.json()["error"] == "SessionChanged"
        assert "刷新" in r.json()["detail"] and grids_of(c2, sid, comp) == [back]
        r = c2.post(f"/api/grids/sessions/{sid}/save", json={"revision": 0})
        assert r.status_code == 409
        # the save stores the stored state, with the version the session started from as parent
        r = c2.post(f"/api/grids/sessions/{sid}/save", json={"revision": 2, "note": "after restart"})
        assert r.status_code == 200, r.text
        v = r.json()["version"]
        assert r.json()["conflict"] is None
        plans_ = {p["version"]: p for p in c2.get(f"/api/grids/plans/{COMMUNITY}").json()}
        assert plans_[v]["parent_version"] == report.json()["session"]["base_version"]
        draft = c2.get(f"/api/grids/plans/{COMMUNITY}/{v}").json()
        assert {f["id"] for f in draft["features"]} >= {back}
    finally:
        c2.__exit__(None, None, None)


def test_forty_sessions_evict_nothing(db, app_eng, planner):
    c = client_for(app_eng, planner)
    try:
        ids = []
        for _ in range(40):
            r = c.post("/api/grids/sessions", json={"community": COMMUNITY})
            assert r.status_code == 200, r.text
            ids.append(r.json()["session"])
        comp, to = a_move(c, ids[0])
        r = c.post(f"/api/grids/sessions/{ids[0]}/move", json={"to": to, "compound": comp})
        assert r.status_code == 200, r.text
        assert grids_of(c, ids[0], comp) == [to]
        assert c.get(f"/api/grids/sessions/{ids[1]}").status_code == 200
    finally:
        c.__exit__(None, None, None)


def test_expired_session_says_so_and_resumes(db, app_eng, planner):
    c = client_for(app_eng, planner)
    try:
        sid = c.post("/api/grids/sessions", json={"community": COMMUNITY}).json()["session"]
        comp, to = a_move(c, sid)
        assert c.post(f"/api/grids/sessions/{sid}/move", json={"to": to, "compound": comp}).status_code == 200
        with db[1].begin() as conn:
            conn.execute(
                text("UPDATE grid_edit_session SET touched = now() - make_interval(secs => :h * 3600) WHERE id = :i"),
                {"i": sid, "h": SETTINGS.edit_session_idle_hours + 1},
            )
        for r in (
            c.get(f"/api/grids/sessions/{sid}"),
            c.get(f"/api/grids/sessions/{sid}/layers"),
            c.post(f"/api/grids/sessions/{sid}/move", json={"to": to, "compound": comp}),
            c.post(f"/api/grids/sessions/{sid}/save", json={}),
        ):
            assert r.status_code == 410, r.text
            body = r.json()
            assert body["error"] == "SessionExpired" and "过期" in body["detail"] and "expired" in body["detail"]
            assert "resume" in body["detail"]
        # another account cannot resume it (404), its owner can: the moves come along
        other = client_for(app_eng, ensure_user(db[0], "street_leader", STREET))
        try:
            assert other.post("/api/grids/sessions", json={"community": COMMUNITY, "resume": sid}).status_code == 404
        finally:
            other.__exit__(None, None, None)
        r = c.post("/api/grids/sessions", json={"community": COMMUNITY, "resume": sid})
        assert r.status_code == 200, r.text
        new = r.json()["session"]
        assert new != sid and r.json()["resumed"] == sid
        assert grids_of(c, new, comp) == [to]
        r = c.get(f"/api/grids/sessions/{sid}")
        assert r.status_code == 410 and "closed" in r.json()["detail"]
    finally:
        c.__exit__(None, None, None)


def test_sessions_belong_to_their_opener(db, app_eng, planner):
    c = client_for(app_eng, planner)
    others = [
        client_for(app_eng, ensure_user(db[0], role, scope))
        for role, scope in (("street_leader", STREET), ("admin", ""), ("planner", COMMUNITY))
    ]
    try:
        sid = c.post("/api/grids/sessions", json={"community": COMMUNITY}).json()["session"]
        comp, to = a_move(c, sid)
        for o in others:
            assert o.get(f"/api/grids/sessions/{sid}").status_code == 404
            assert o.get(f"/api/grids/sessions/{sid}/layers").status_code == 404
            assert o.post(f"/api/grids/sessions/{sid}/move", json={"to": to, "compound": comp}).status_code == 404
            assert o.post(f"/api/grids/sessions/{sid}/save", json={}).status_code == 404
        for bad in ("nosuchsession", "00000000-0000-0000-0000-000000000000"):
            assert c.get(f"/api/grids/sessions/{bad}").status_code == 404
        assert grids_of(c, sid, comp) != [to]  # nobody else moved anything
    finally:
        for x in [c, *others]:
            x.__exit__(None, None, None)


def test_save_after_another_activation_is_a_conflict_until_rebase(db, app_eng, planner):
    """Saving a session opened on a version that is no longer active: 409 with what changed, nothing
    saved, the session and its moves kept; saving again with rebase stores the draft on the active plan."""
    _url, eng = db
    c = client_for(app_eng, planner)
    try:
        opened = c.post("/api/grids/sessions", json={"community": COMMUNITY}).json()
        sid, base = opened["session"], opened["base_version"]
        comp, to = a_move(c, sid)
        assert c.post(f"/api/grids/sessions/{sid}/move", json={"to": to, "compound": comp}).status_code == 200
        # meanwhile another plan is activated
        with eng.begin() as conn:
            newer = service.propose_plan(conn, COMMUNITY, save=True, time_limit_s=1.0, seed=11)["version"]
            plans.activate(conn, COMMUNITY, newer, force=True)
        with eng.connect() as conn:
            before = conn.execute(
                text("SELECT count(*) FROM grid_plan WHERE community_code = :c"), {"c": COMMUNITY}
            ).scalar()
        r = c.post(f"/api/grids/sessions/{sid}/save", json={})
        assert r.status_code == 409, r.text
        body = r.json()
        assert body["error"] == "PlanConflict" and "方案冲突" in body["detail"] and "rebase" in body["detail"]
        assert body["conflict"]["parent_version"] == base and body["conflict"]["active_version"] == newer
        with eng.connect() as conn:
            assert (
                conn.execute(
                    text("SELECT count(*) FROM grid_plan WHERE community_code = :c"), {"c": COMMUNITY}
                ).scalar()
                == before
            )  # nothing saved
        report = c.get(f"/api/grids/sessions/{sid}")
        assert report.status_code == 200  # the session (and its move) is kept
        r = c.post(f"/api/grids/sessions/{sid}/save", json={"rebase": True})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["parent_version"] == newer and out["rebased"] == {"from": base, "to": newer}
        with eng.connect() as conn:
            assert (
                conn.execute(
                    text("SELECT parent_version FROM grid_plan WHERE community_code = :c AND version = :v"),
                    {"c": COMMUNITY, "v": out["version"]},
                ).scalar()
                == newer
            )
    finally:
        c.__exit__(None, None, None)


def test_solver_cap_and_list_limits(db, app_eng):
    small = Settings(login_rate_per_minute=1000, solver_max_s=0.5, max_list_items=3)
    c = client_for(app_eng, ensure_user(db[0], "planner", STREET), small)
    try:
        r = c.post("/api/grids/propose", json={"community": COMMUNITY, "time_limit_s": 600, "method": "heuristic"})
        assert r.status_code == 200, r.text
        assert r.json()["time_limit_s"] == 0.5 and r.json()["time_limit_requested_s"] == 600
        r = c.post("/api/grids/propose", json={"community": COMMUNITY, "time_limit_s": 0.2, "method": "heuristic"})
        assert r.json()["time_limit_s"] == 0.2 and "time_limit_requested_s" not in r.json()
        r = c.post("/api/grids/repair", json={"community": COMMUNITY, "time_limit_s": 100})
        assert r.status_code == 200 and r.json()["time_limit_s"] == 0.5, r.text
        four = {f"b{i}": None for i in range(4)}
        for path, body in (
            ("/api/grids/validate", {"community": COMMUNITY, "assignments": four}),
            ("/api/grids/sessions", {"community": COMMUNITY, "assignments": four}),
            ("/api/grids/propose", {"community": COMMUNITY, "lock": list(four)}),
        ):
            r = c.post(path, json=body)
            assert r.status_code == 422 and "GISGOV_MAX_LIST_ITEMS" in r.json()["detail"], (path, r.text)
        # the schema keeps its bound and documents the cap
        schema = c.get("/openapi.json").json()["components"]["schemas"]["ProposeBody"]["properties"]["time_limit_s"]
        assert schema["maximum"] == 600 and "GISGOV_SOLVER_MAX_S" in schema["description"]
    finally:
        c.__exit__(None, None, None)
