"""Gridding on the synthetic sample city: every community gets a whole-compound plan whose grids all
meet the household and people bounds, except the one the dataset makes deliberately hard
(``gisgov_meta.dataset.grid_challenges``: a stranded compound), which gets the explanation and the
closest plan (the fewest rule breaks as the validator counts them); one plan is activated end to end."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sample_fixtures import sample_city, sample_city_url  # noqa: F401  (fixtures)
from sqlalchemy import create_engine, pool

from gisgov.gridding import plans, service
from gisgov.gridding.propose import propose
from gisgov.gridding.validate import validate

#: the rules a closest plan may break (issue 11 item 19); anything else is a defect of the draft
TRADED = {"households_under", "households_over", "people_over", "split_compound"}


@pytest.fixture(scope="module")
def sample_engine(sample_city_url):
    eng = create_engine(sample_city_url, poolclass=pool.NullPool)
    yield eng
    eng.dispose()


def test_every_community_gets_an_explanation_or_a_plan(sample_engine, sample_city):
    challenged = {c["community_code"]: c for c in sample_city.meta["grid_challenges"]}
    assert len(challenged) == 1 and all(c["reason"] == "stranded" for c in challenged.values())
    with sample_engine.connect() as conn:
        codes = service.communities(conn)
        assert len(codes) == 12
        for code in codes:
            f = service.feasibility(conn, code)
            if not f["feasible"]:
                assert f["findings"] and all(x["message"] and x["units"] for x in f["findings"])
            p = service.propose_plan(conn, code, closest=True, time_limit_s=1.0)
            s = p["report"]["summary"]
            rules = {b["rule"] for b in p["report"]["breaks"]}
            if code in challenged:
                # the planned stranded compound is what the planner names
                c = challenged[code]
                assert not f["feasible"]
                stranded = [x for x in f["findings"] if x["rule"] == "stranded"]
                assert [x["units"][0] for x in stranded] == [c["compound_code"]]
                assert c["households"] < 300
                # the closest plan is the one with the fewest breaks as the validator counts them (issue 11
                # item 19: a grid below the minimum and a split compound count alike), not necessarily one
                # with every grid within bounds: no plan obeys every rule (feasibility above), so one break
                # is the minimum, and this plan has exactly one
                assert p["status"] == "closest" and rules <= TRADED, (code, rules)
                assert p["report"]["breaks_count"] == p["closeness"]["breaks"] == 1, p["report"]["breaks"]
                assert s["grids"] > 0 and s["within_bounds"] >= s["grids"] - 1
                # the alternative the previous search returned (every grid within bounds, compounds split
                # where needed) breaks at least as many rules by the same count
                ctx = service.load_context(conn, code)
                alt = propose(ctx, rules=replace(ctx.rules, keep_compounds_whole=False), time_limit_s=1.0)
                assert alt.plan is not None
                alt_report = validate(ctx, alt.plan)
                assert alt_report["summary"]["within_bounds"] == alt_report["summary"]["grids"]
                assert {b["rule"] for b in alt_report["breaks"]} == {"split_compound"}
                assert p["report"]["breaks_count"] <= alt_report["breaks_count"]
            else:
                # whole compounds (only compounds above a maximum split along buildings), every grid in bounds
                assert f["feasible"], (code, f["summary"])
                assert s["within_bounds"] == s["grids"] > 0, (code, p["status"], p["findings"][:2])
                assert p["status"] == "ok" and rules == set(), (code, p["status"], rules)


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
