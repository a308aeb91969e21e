"""Gridding on the synthetic sample city: every community gets an explanation or a plan whose grids
all meet the household and people bounds; one plan is activated end to end."""

from __future__ import annotations

import pytest
from sample_fixtures import sample_city, sample_city_url  # noqa: F401  (fixtures)
from sqlalchemy import create_engine, pool

from gisgov.gridding import plans, service


@pytest.fixture(scope="module")
def sample_engine(sample_city_url):  # noqa: F811
    eng = create_engine(sample_city_url, poolclass=pool.NullPool)
    yield eng
    eng.dispose()


def test_every_community_gets_an_explanation_or_a_plan(sample_engine):
    with sample_engine.connect() as conn:
        codes = service.communities(conn)
        assert len(codes) == 12
        for code in codes:
            f = service.feasibility(conn, code)
            if not f["feasible"]:
                assert f["findings"] and all(x["message"] and x["units"] for x in f["findings"])
            p = service.propose_plan(conn, code, closest=True, time_limit_s=1.0)
            s = p["report"]["summary"]
            assert s["within_bounds"] == s["grids"] > 0, (code, p["status"], p["findings"][:2])
            assert p["status"] in ("ok", "closest")
            rules = {b["rule"] for b in p["report"]["breaks"]}
            assert rules <= {"split_compound"}, (code, rules)  # only compounds split where no other way


def test_activate_a_sample_community(sample_engine):
    with sample_engine.connect() as conn:
        tx = conn.begin()
        try:
            code = next(c for c in service.communities(conn) if service.feasibility(conn, c)["feasible"])
            p = service.propose_plan(conn, code, save=True, time_limit_s=1.0, closest=True)
            out = plans.activate(conn, code, p["version"], force=p["status"] != "ok")
            assert out["buildings"] > 0
            rep = service.check(conn, code)
            assert rep["plan"]["status"] == "active"
            assert rep["summary"]["within_bounds"] == rep["summary"]["grids"]
        finally:
            tx.rollback()
