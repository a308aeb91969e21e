"""Background analyses: a grid proposal / repair asked for with ``"background": true`` answers 202 at
once, runs under the caller's scope and the solver cap, saves a draft (audited) and is read back from
``GET /api/jobs/{id}`` by its owner (or an admin) only."""

from __future__ import annotations

import time

import numpy as np
import pytest
from auth_helpers import app_engine, bearer_token, ensure_user
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, pool, text

from gisgov.api.app import create_app
from gisgov.config import Settings
from gisgov.gridding import plans, service
from tests.grid_city import COMMUNITY, STREET, block_layout

HH = np.array([120, 90, 150, 110, 80, 130, 100, 140, 95, 105, 125, 85])


@pytest.fixture(scope="module")
def world(db_factory):
    url = db_factory.create(prefix="gisgov_test_jobs")
    owner = create_engine(url, poolclass=pool.NullPool)
    with owner.begin() as conn:
        block_layout(4, 3, HH, people_per_hh=2.3).load(conn)
    with owner.begin() as conn:
        plans.activate(conn, COMMUNITY, service.propose_plan(conn, COMMUNITY, save=True, time_limit_s=2.0)["version"])
    eng = app_engine(url)
    app = create_app(Settings(login_rate_per_minute=1000, solver_max_s=1.5), engine=eng)
    users = {
        "leader": ensure_user(url, "street_leader", STREET),
        "planner": ensure_user(url, "planner", STREET),
        "admin": ensure_user(url, "admin", ""),
    }
    with TestClient(app) as base:
        clients = {}
        for k, u in users.items():
            c = TestClient(app)
            c.headers["Authorization"] = f"Bearer {bearer_token(base, u)}"
            clients[k] = c
        yield clients, owner, users
    eng.dispose()
    owner.dispose()


def _wait(c, url: str, seconds: float = 60) -> dict:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        job = c.get(url).json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job not finished: {job}")


def test_propose_in_the_background(world):
    c, owner, users = world
    t0 = time.monotonic()
    r = c["planner"].post(
        "/api/grids/propose",
        json={"community": COMMUNITY, "background": True, "time_limit_s": 30, "method": "heuristic"},
    )
    assert r.status_code == 202, r.text
    assert time.monotonic() - t0 < 5  # answered before the solver ran
    body = r.json()
    assert body["status"] == "queued" and r.headers["location"] == body["status_url"]
    job = _wait(c["planner"], body["status_url"])
    assert job["status"] == "done", job
    assert job["kind"] == "grid_propose" and job["owner"] == users["planner"]
    res = job["result"]
    assert res["time_limit_s"] == 1.5 and res["time_limit_requested_s"] == 30  # the solver cap applies
    v = res["version"]
    assert job["links"]["plan"] == f"/api/grids/plans/{COMMUNITY}/{v}"
    with owner.connect() as conn:
        row = conn.execute(
            text("SELECT status, author FROM grid_plan WHERE community_code = :c AND version = :v"),
            {"c": COMMUNITY, "v": v},
        ).one()
        assert tuple(row) == ("draft", users["planner"])
        audit = (
            conn.execute(
                text("SELECT actor FROM audit_log WHERE action = 'plan_save' AND object = :o"),
                {"o": f"{COMMUNITY}/v{v}"},
            )
            .scalars()
            .all()
        )
        assert audit == [users["planner"]]
    assert c["planner"].get(job["links"]["plan"]).status_code == 200
    # the owner and admins see it; another account gets 404, like an unknown id
    assert c["admin"].get(body["status_url"]).status_code == 200
    assert c["leader"].get(body["status_url"]).status_code == 404
    assert c["planner"].get("/api/jobs/not-a-job").status_code == 404


def test_repair_in_the_background_and_failures_are_recorded(world):
    c, _owner, _ = world
    r = c["leader"].post("/api/grids/repair", json={"community": COMMUNITY, "background": True})
    assert r.status_code == 202, r.text
    job = _wait(c["leader"], r.json()["status_url"])
    assert job["status"] == "done" and job["kind"] == "grid_repair" and job["result"]["version"]
    # a version that does not exist: the job fails with the message, it does not hang
    r = c["leader"].post("/api/grids/repair", json={"community": COMMUNITY, "plan": 999, "background": True})
    job = _wait(c["leader"], r.json()["status_url"])
    assert job["status"] == "failed" and "999" in job["error"]
    # a community outside the caller's area: 404 before any job is made
    assert (
        c["leader"].post("/api/grids/propose", json={"community": "340104002001", "background": True}).status_code
        == 404
    )
