"""Issue 11, item 20 (wording): feasibility says when people are estimated and which bound binds.

Reported: a 410-household community whose people were estimated (households × 2.62 = 1,086) was
called a "bottleneck … above 500 / 1000", read as if 410 were above 500. The people maximum binds
(1,086 > 1,000), and with estimated people it caps a grid at ⌊1000 / 2.62⌋ = 381 households."""

from __future__ import annotations

import numpy as np

from gisgov.gridding import feasibility
from gisgov.gridding.graph import Graph
from gisgov.gridding.rules import GridRules


def _path(hh: list[int]) -> tuple[Graph, np.ndarray, np.ndarray]:
    n = len(hh)
    g = Graph(n, np.arange(n - 1), np.arange(1, n), np.ones(n - 1), np.zeros(n - 1, bool), np.ones(n - 1))
    h = np.array(hh)
    return g, h, np.round(h * 2.62).astype(np.int64)


def test_bottleneck_names_the_people_bound_and_the_estimate():
    # a chain 120 – 170 – 120: the middle is the only link; the ends (below 300) must join it:
    # 410 households (≤ 500) but 1,074 people (> 1,000)
    g, h, p = _path([120, 170, 120])
    f = feasibility.check(g, h, p, GridRules(), people_estimated=np.ones(3, bool))
    bn = [x for x in f.findings if x.rule == "bottleneck"]
    assert len(bn) == 1
    msg = bn[0].message
    assert "410 households (≤ the household maximum 500)" in msg
    assert f"{int(p.sum())} people (> the people maximum 1000" in msg and "the people bound binds" in msg
    assert "estimated at 2.62 per household" in msg and "按每户 2.62 人估算" in msg and "人数上限" in msg
    assert bn[0].data["binding"] == ["people"] and bn[0].data["people_estimated"] is True
    # the notes say the counts are estimates and what that does to a grid's capacity
    note = " ".join(f.notes)
    assert "people are estimated for 3 of 3 unit(s)" in note and "about 381 households" in note
    assert "约 381 户" in note and f.people_estimated == 3 and "about 381 households" in f.summary()


def test_household_bound_named_when_it_binds_and_no_estimate_claimed():
    g, h, _ = _path([150, 260, 150])
    p = np.array([300, 500, 300])  # 560 households, 1,100 people from a roster: both maxima broken
    f = feasibility.check(g, h, p, GridRules())
    bn = next(x for x in f.findings if x.rule == "bottleneck")
    assert "560 households (> the household maximum 500)" in bn.message
    assert bn.data["binding"] == ["households", "people"] and "the households and people bounds bind" in bn.message
    assert "estimated" not in bn.message and "估算" not in bn.message and f.notes == []


def test_count_range_says_which_bound_needs_the_grids():
    # 350 households alone, 1,200 people: people need 2 grids, households allow 1 (≥ 300 each)
    g = Graph.empty(1)
    f = feasibility.check(g, np.array([350]), np.array([1200]), GridRules())
    cr = next(x for x in f.findings if x.rule == "count_range")
    assert cr.data["binding"] == "people" and cr.data["k_min_people"] == 2 and cr.data["k_min_households"] == 1
    assert "the people bound needs at least 2 grids" in cr.message and "人数" in cr.message
    over = next(x for x in f.findings if x.rule == "unit_over_max")
    assert "350 households (≤ the household maximum 500)" in over.message and over.data["binding"] == ["people"]


def test_messages_are_bilingual_with_a_chinese_half_free_of_latin_letters():
    g, h, p = _path([120, 170, 120])
    f = feasibility.check(g, h, p, GridRules(), people_estimated=np.ones(3, bool))
    for text in [x.message for x in f.findings] + f.notes:
        first_latin = next(i for i, c in enumerate(text) if c.isascii() and c.isalpha())
        zh, en = text[:first_latin], text[first_latin:]
        assert sum("\u4e00" <= c <= "\u9fff" for c in zh) >= 10, text  # a whole Chinese sentence first
        assert not any("\u4e00" <= c <= "\u9fff" for c in en.replace("(rule", "")), text


def test_feasibility_answer_says_when_people_are_estimated(db_factory):
    """End to end: a community whose buildings have households but no resident records gets the note
    (load_context marks them, build_context carries the flag, service.feasibility reports it)."""
    from mini_city import COMM_A, load_mini_city
    from sqlalchemy import create_engine, pool, text

    from gisgov.gridding import service

    url = db_factory.create(prefix="gisgov_test_feas_est")
    load_mini_city(url)
    eng = create_engine(url, poolclass=pool.NullPool)
    try:
        with eng.begin() as conn:
            conn.execute(text("DELETE FROM resident"))
            conn.execute(text("UPDATE building SET households = 40 WHERE households IS NULL OR households = 0"))
            out = service.feasibility(conn, COMM_A)
    finally:
        eng.dispose()
    assert any("estimated" in n for n in out["notes"]), out["notes"]
    assert out["unchecked"] == []
