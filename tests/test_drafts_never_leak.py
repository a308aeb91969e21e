"""A saved draft plan never shows where the platform's current grids are read: the map layer, a
grid's page, a community's children, the hierarchy, the statistics and the exports show the active
plan's grids only (a draft is read through the plan routes, on purpose)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from auth_helpers import app_engine, bearer_token, ensure_user
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, pool, text

from gisgov.api.app import create_app
from gisgov.config import Settings
from gisgov.gridding import plans, service
from gisgov.gridding.io import load_context, load_plan, save_plan
from tests.grid_city import COMMUNITY, block_layout

HH = np.array([120, 90, 150, 110, 80, 130, 100, 140, 95, 105, 125, 85])


@pytest.fixture(scope="module")
def world(db_factory, tmp_path_factory):
    url = db_factory.create(prefix="gisgov_test_drafts")
    owner = create_engine(url, poolclass=pool.NullPool)
    with owner.begin() as conn:
        block_layout(4, 3, HH, people_per_hh=2.3).load(conn)
    with owner.begin() as conn:
        plans.activate(conn, COMMUNITY, service.propose_plan(conn, COMMUNITY, save=True, time_limit_s=2.0)["version"])
    eng = app_engine(url)
    app = create_app(Settings(login_rate_per_minute=1000, home=tmp_path_factory.mktemp("drafts-home")), engine=eng)
    with TestClient(app) as c:
        c.headers["Authorization"] = f"Bearer {bearer_token(c, ensure_user(url, 'admin', ''))}"
        yield c, owner
    eng.dispose()
    owner.dispose()


def _views(c) -> dict:
    layer = c.get("/api/layers/grid", params={"limit": 1000}).json()
    codes = sorted(f["properties"]["code"] for f in layer["features"])
    tree = c.get("/api/hierarchy").json()

    def grids_in(node):
        return [n for ch in node.get("children", []) for n in ([ch] if ch["level"] == "grid" else grids_in(ch))]

    hier = sorted(g["code"] for street in tree["streets"] for g in grids_in(street))
    community = c.get(f"/api/community/{COMMUNITY}").json()
    child = next(x for x in community["children"] if x["layer"] == "grid")
    stats = c.get(f"/api/stats/community/{COMMUNITY}").json()
    exported = c.get("/api/export", params={"level": "grid", "format": "geojson"})
    assert exported.status_code == 200, exported.text
    ex = sorted(f["properties"]["code"] for f in json.load(io.BytesIO(exported.content))["features"])
    one = c.get(f"/api/grid/{codes[0]}")
    return {
        "layer": codes,
        "matched": layer["numberMatched"],
        "hierarchy": hier,
        "children": child["count"],
        "stats_grids": stats["grids"]["grids"] if isinstance(stats.get("grids"), dict) else stats.get("grids"),
        "export": ex,
        "grid_page": one.status_code,
    }


def test_a_saved_draft_changes_no_current_view(world):
    c, owner = world
    before = _views(c)
    assert before["layer"] and before["layer"] == before["hierarchy"] == before["export"]
    assert before["matched"] == before["children"] == len(before["layer"]) and before["grid_page"] == 200
    # a planner saves a draft: a copy of the active plan (same grid codes) and a re-proposal
    with owner.begin() as conn:
        ctx = load_context(conn, COMMUNITY)
        plan, _ = load_plan(conn, ctx, None)
        save_plan(conn, ctx, plan, author="t", note="copy")
        service.propose_plan(conn, COMMUNITY, save=True, time_limit_s=1.0, seed=5)
    with owner.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM grid")).scalar() > 2 * len(before["layer"])  # drafts stored
    assert _views(c) == before
