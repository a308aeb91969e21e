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


def test_community_context_signature_is_read_again_only_after_a_commit(planned, monkeypatch):
    """load_context (every edit of a grid edit session) fingerprints the community only when the data version
    moved; a committed change to its residents is seen by the next load."""
    from gisgov.gridding import io

    engine, code, _ = planned
    calls = []
    real = io._signature
    monkeypatch.setattr(io, "_signature", lambda conn, c: calls.append(c) or real(conn, c))
    with engine.connect() as c:
        first = io.load_context(c, code)
        for _ in range(3):
            assert io.load_context(c, code) is first
    assert len(calls) <= 1  # at most the first load (another test may have read it at this version)
    n = len(calls)
    with engine.begin() as c:  # one resident moves out: a committed write the context depends on
        c.execute(
            text(
                "DELETE FROM resident WHERE id = (SELECT min(r.id) FROM resident r JOIN household h "
                "ON h.id = r.household_id JOIN building b ON b.code = h.building_code WHERE b.community_code = :c "
                "GROUP BY b.id HAVING count(*) > 1 ORDER BY b.id LIMIT 1)"
            ),
            {"c": code},
        )
    with engine.connect() as c:
        again = io.load_context(c, code)
    assert len(calls) == n + 1 and again is not first
    assert int(again.atoms.people.sum()) == int(first.atoms.people.sum()) - 1
