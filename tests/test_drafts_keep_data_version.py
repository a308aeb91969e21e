"""Saving a draft plan leaves the committed data version alone (migration 0020): the leaders' cached answers
and tiles are not all recomputed after every planner's save. Activating it, deleting an active plan's grid,
or a grid outside plans still move it."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from test_grid_editor_browser import plan_one_community

from gisgov.db.data_version import data_version
from gisgov.gridding import plans, service


@pytest.fixture(scope="module")
def planned(db_factory):
    engine, code, version, _ = plan_one_community(db_factory, "gisgov_test_draft_version")
    yield engine, code, version
    engine.dispose()


def version_now(engine) -> int:
    with engine.connect() as c:
        return data_version(c)


def test_a_draft_save_keeps_the_version_and_its_activation_moves_it(planned):
    engine, code, _ = planned
    v0 = version_now(engine)
    with engine.begin() as c:  # a planner saves a proposal as a draft: grid_plan, grid, grid_assignment rows
        out = service.propose_plan(c, code, closest=True, time_limit_s=2.0, save=True, note="draft")
        assert out.version is not None
        n = c.execute(
            text(
                "SELECT count(*) FROM grid g JOIN grid_plan p ON p.id = g.plan_id "
                "WHERE p.community_code = :c AND p.version = :v AND p.status = 'draft'"
            ),
            {"c": code, "v": out.version},
        ).scalar()
        assert n > 0  # the draft's grids were written
    assert version_now(engine) == v0
    with engine.begin() as c:  # a draft changed in place (its parent version): still only a draft
        c.execute(
            text("UPDATE grid_plan SET note = 'edited' WHERE community_code = :c AND version = :v"),
            {"c": code, "v": out.version},
        )
    assert version_now(engine) == v0
    with engine.begin() as c:
        plans.activate(c, code, out.version, force=True)
    assert version_now(engine) == v0 + 1


def test_grids_outside_plans_and_active_plans_still_move_it(planned):
    engine, code, _ = planned
    v0 = version_now(engine)
    with engine.begin() as c:  # a grid of the active plan renamed: what everyone sees
        c.execute(
            text(
                "UPDATE grid SET name = name || '' WHERE id = (SELECT g.id FROM grid g JOIN grid_plan p "
                "ON p.id = g.plan_id WHERE p.community_code = :c AND p.status = 'active' LIMIT 1)"
            ),
            {"c": code},
        )
    assert version_now(engine) == v0 + 1
    with engine.begin() as c:  # deleting a draft moves it too (its rows' plan is gone when the triggers look)
        draft = service.propose_plan(c, code, closest=True, time_limit_s=2.0, save=True, note="to delete")
    assert version_now(engine) == v0 + 1
    with engine.begin() as c:
        c.execute(
            text("DELETE FROM grid_plan WHERE community_code = :c AND version = :v"), {"c": code, "v": draft.version}
        )
    assert version_now(engine) == v0 + 2
