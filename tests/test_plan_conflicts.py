"""Conflicting edits of grid plans: every draft records the active version it was made from
(``parent_version``); activating a draft whose parent is no longer active answers 409 with what
changed (and keeps everything), unless the planner rebases on purpose; two concurrent activations of
drafts from the same parent give exactly one 200 and one 409."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from auth_helpers import app_engine, bearer_token, ensure_user, signed_in_client
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, pool, text

from gisgov.api.app import create_app
from gisgov.config import Settings
from gisgov.gridding import plans, service
from gisgov.gridding.io import load_context, load_plan, save_plan
from tests.grid_city import COMMUNITY, STREET, block_layout

SETTINGS = Settings(login_rate_per_minute=1000)
HH = np.array([120, 90, 150, 110, 80, 130, 100, 140, 95, 105, 125, 85])


@pytest.fixture(scope="module")
def db(db_factory):
    url = db_factory.create(prefix="gisgov_test_conflicts")
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
def client(db, app_eng):
    with signed_in_client(SETTINGS, db[0], role="street_leader", scope=STREET, engine=app_eng) as c:
        yield c


def active(eng) -> int | None:
    with eng.connect() as conn:
        return conn.execute(
            text("SELECT version FROM grid_plan WHERE community_code = :c AND status = 'active'"), {"c": COMMUNITY}
        ).scalar()


def grid_of(eng, building: str):
    with eng.connect() as conn:
        return conn.execute(text("SELECT grid_id FROM building WHERE code = :b"), {"b": building}).scalar()


def copy_of_active(eng, note: str) -> int:
    """A draft identical to the active plan, made now (its parent: the active version)."""
    with eng.begin() as conn:
        ctx = load_context(conn, COMMUNITY)
        plan, _ = load_plan(conn, ctx, None)
        return save_plan(conn, ctx, plan, author="t", note=note)


def session_draft(client, layers_pick: int) -> tuple[int, str, str, str]:
    """Open a session on the active plan, move one compound (the ``layers_pick``-th that has a
    neighbour grid) into another grid and save: (version, compound, its building, a building that stayed
    in the target grid)."""
    sid = client.post("/api/grids/sessions", json={"community": COMMUNITY}).json()["session"]
    layers = client.get(f"/api/grids/sessions/{sid}/layers").json()
    feats = layers["buildings"]["features"]
    by_grid: dict[str, list[str]] = {}
    for f in feats:
        by_grid.setdefault(f["properties"]["grid"], []).append(f["properties"]["code"])
    comps = [f["properties"] for f in layers["compounds"]["features"]]
    comp = comps[layers_pick]
    src = comp["grids"][0]
    dst = next(g for g in sorted(by_grid) if g != src)
    stay = by_grid[dst][0]
    building = next(f["properties"]["code"] for f in feats if f["properties"]["compound"] == comp["code"])
    r = client.post(f"/api/grids/sessions/{sid}/move", json={"to": dst, "compound": comp["code"], "revision": 0})
    assert r.status_code == 200, r.text
    r = client.post(f"/api/grids/sessions/{sid}/save", json={"note": f"move {comp['code']}", "revision": 1})
    assert r.status_code == 200, r.text
    return r.json()["version"], comp["code"], building, stay


def test_sequential_second_activation_is_a_conflict(client, db):
    url, eng = db
    v1 = active(eng)
    # two planners start from the same active plan and each move one compound
    v2, _, b2, stay2 = session_draft(client, 0)
    v3, _, b3, stay3 = session_draft(client, 11)
    listing = {p["version"]: p for p in client.get(f"/api/grids/plans/{COMMUNITY}").json()}
    assert listing[v2]["parent_version"] == v1 and listing[v3]["parent_version"] == v1
    assert grid_of(eng, b2) != grid_of(eng, stay2)  # not moved yet in the active plan

    r = client.post(f"/api/grids/plans/{COMMUNITY}/{v2}/activate", json={"force": True})
    assert r.status_code == 200, r.text
    assert r.json()["parent_version"] == v1 and r.json()["rebased"] is None
    assert grid_of(eng, b2) == grid_of(eng, stay2)  # the first planner's move is live

    r = client.post(f"/api/grids/plans/{COMMUNITY}/{v3}/activate", json={"force": True})
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["error"] == "PlanConflict" and {"detail", "error", "conflict", "code", "details"} <= set(body)
    assert body["details"]["conflict"] == body["conflict"]
    c = body["conflict"]
    assert (c["version"], c["parent_version"], c["active_version"]) == (v3, v1, v2)
    assert c["activated_by"] == ensure_user(url, "street_leader", STREET) and c["activated"]
    with eng.connect() as conn:
        assert c["buildings_changed"] == plans.diff(conn, COMMUNITY, v1, v2)["buildings_moved"] >= 1
    assert c["diff"] == f"/api/grids/diff/{COMMUNITY}?a={v1}&b={v2}"
    assert f"第 {v2} 版" in body["detail"] and "rebase" in body["detail"] and f"version {v2}" in body["detail"]
    # nothing lost: v2 still active with its move, v3 still a draft with its parent
    assert active(eng) == v2 and grid_of(eng, b2) == grid_of(eng, stay2)
    listing = {p["version"]: p for p in client.get(f"/api/grids/plans/{COMMUNITY}").json()}
    assert listing[v3]["status"] == "draft" and listing[v3]["parent_version"] == v1
    with eng.connect() as conn:
        rows = conn.execute(
            text("SELECT result, detail FROM audit_log WHERE action = 'plan_activate' AND object = :o ORDER BY id"),
            {"o": f"{COMMUNITY}/v{v3}"},
        ).all()
    assert [(x.result, x.detail["error"], x.detail["active_version"]) for x in rows] == [("failed", "PlanConflict", v2)]

    # after looking, the planner replaces v2 with v3 on purpose
    r = client.post(f"/api/grids/plans/{COMMUNITY}/{v3}/activate", json={"force": True, "rebase": True})
    assert r.status_code == 200, r.text
    assert r.json()["rebased"] == {"from": v1, "to": v2} and r.json()["previous"] == v2
    assert active(eng) == v3 and grid_of(eng, b3) == grid_of(eng, stay3)
    listing = {p["version"]: p for p in client.get(f"/api/grids/plans/{COMMUNITY}").json()}
    assert listing[v3]["parent_version"] == v2


def test_propose_and_repair_record_the_version_they_started_from(client, db):
    _, eng = db
    cur = active(eng)
    r = client.post("/api/grids/propose", json={"community": COMMUNITY, "time_limit_s": 1.0, "save": True, "seed": 4})
    assert r.status_code == 200, r.text
    vp = r.json()["version"]
    assert r.json()["parent_version"] == cur
    r = client.post("/api/grids/repair", json={"community": COMMUNITY, "plan": vp, "save": True, "time_limit_s": 1.0})
    assert r.status_code == 200, r.text
    vr = r.json()["version"]
    listing = {p["version"]: p for p in client.get(f"/api/grids/plans/{COMMUNITY}").json()}
    assert listing[vp]["parent_version"] == cur and listing[vr]["parent_version"] == cur
    # a draft made while another plan is activated in between keeps the old parent → 409
    newer = copy_of_active(eng, "same as active")
    r = client.post(f"/api/grids/plans/{COMMUNITY}/{newer}/activate", json={"force": True})
    assert r.status_code == 200, r.text
    r = client.post(f"/api/grids/plans/{COMMUNITY}/{vr}/activate", json={"force": True})
    assert r.status_code == 409 and r.json()["conflict"]["active_version"] == newer
    # a repair of that stale draft continues its lineage: still made from the old version
    r = client.post("/api/grids/repair", json={"community": COMMUNITY, "plan": vr, "save": True, "time_limit_s": 1.0})
    assert r.json()["parent_version"] == cur != newer


def _activate(conn, version):
    try:
        return plans.activate(conn, COMMUNITY, version, force=True)
    except plans.ParentConflict as exc:
        return exc


def test_concurrent_activations_on_two_connections(db):
    """A holds the community's lock (activated, not committed); B waits for it; A commits; B sees the
    new active version under the lock and refuses."""
    _, eng = db
    va, vb = copy_of_active(eng, "a"), copy_of_active(eng, "b")
    eb = create_engine(eng.url, poolclass=pool.NullPool)
    out: dict = {}
    try:
        with eng.connect() as a, eng.connect() as watch:
            a.begin()
            res_a = _activate(a, va)
            assert isinstance(res_a, dict)

            def run_b():
                with eb.begin() as b:
                    out["b"] = _activate(b, vb)

            tb = threading.Thread(target=run_b)
            tb.start()
            deadline = time.monotonic() + 30
            while not watch.execute(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            ).scalar():
                assert time.monotonic() < deadline, "B never waited for the lock"
                time.sleep(0.02)
            a.commit()
            tb.join(30)
    finally:
        eb.dispose()
    assert isinstance(out["b"], plans.ParentConflict), out
    assert out["b"].info["active_version"] == va and active(eng) == va


def test_concurrent_activations_through_http(db, app_eng):
    url, eng = db
    va, vb = copy_of_active(eng, "http a"), copy_of_active(eng, "http b")
    token_user = ensure_user(url, "street_leader", STREET)
    app = create_app(SETTINGS, engine=app_eng)
    results: dict[int, object] = {}
    start = threading.Barrier(2)
    with TestClient(app) as c1, TestClient(app) as c2:
        for c in (c1, c2):
            c.headers["Authorization"] = f"Bearer {bearer_token(c, token_user)}"

        def go(c, v):
            start.wait()
            r = c.post(f"/api/grids/plans/{COMMUNITY}/{v}/activate", json={"force": True})
            results[v] = (r.status_code, r.json())

        ts = [threading.Thread(target=go, args=(c1, va)), threading.Thread(target=go, args=(c2, vb))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
    codes = sorted(s for s, _ in results.values())
    assert codes == [200, 409], results
    winner = next(v for v, (s, _) in results.items() if s == 200)
    loser = next(v for v, (s, _) in results.items() if s == 409)
    assert active(eng) == winner
    assert results[loser][1]["conflict"]["active_version"] == winner


def test_cli_activate_refuses_a_stale_draft_until_rebase(db, monkeypatch):
    """`gisgov grids activate` on a draft whose parent is no longer active: exit 3, what changed and the
    --rebase hint printed, nothing changed; with --rebase it activates."""
    from typer.testing import CliRunner

    from gisgov.cli.main import app as cli

    url, eng = db
    stale = copy_of_active(eng, "cli stale")
    fresh = copy_of_active(eng, "cli fresh")
    with eng.begin() as conn:
        plans.activate(conn, COMMUNITY, fresh, force=True)  # earlier tests may leave rule breaks
    monkeypatch.setenv("GISGOV_DATABASE_URL", url)
    from gisgov.config import get_settings

    get_settings.cache_clear()
    r = CliRunner().invoke(cli, ["grids", "activate", "-c", COMMUNITY, "--plan", str(stale), "--force"])
    assert r.exit_code == 1, r.output
    assert "PlanConflict" in r.output and "--rebase" in r.output and f"version {fresh}" in r.output
    assert active(eng) == fresh
    r = CliRunner().invoke(cli, ["grids", "plans", "-c", COMMUNITY])
    assert r.exit_code == 0 and "parent" in r.output
    r = CliRunner().invoke(cli, ["grids", "activate", "-c", COMMUNITY, "--plan", str(stale), "--force", "--rebase"])
    assert r.exit_code == 0, r.output
    assert active(eng) == stale
