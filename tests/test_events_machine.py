"""The event state machine (pure), the catalog and the statistics on a hand-built set.

The role × state × target table is checked against a HAND-WRITTEN list of allowed moves, so a wrong
entry in gisgov.events.machine.TRANSITIONS fails here, and every refusal is checked for its status
(403 role / 409 state) and for a message naming the role and the state in Chinese and English."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from gisgov.errors import InvalidInput
from gisgov.events import machine
from gisgov.events.catalog import CatalogError, load_catalog, parse_catalog
from gisgov.events.machine import State
from gisgov.events.stats import Row, summarize
from gisgov.security.roles import ROLE_LABELS, Role

# Hand-written: every (role, from, to) that is allowed. Nothing else is.
ALLOWED_HAND = {
    ("community_staff", "reported", "accepted"),
    ("admin", "reported", "accepted"),
    ("community_staff", "reported", "rejected"),
    ("admin", "reported", "rejected"),
    ("community_staff", "reported", "escalated_street"),
    ("admin", "reported", "escalated_street"),
    ("community_staff", "accepted", "dispatched"),
    ("admin", "accepted", "dispatched"),
    ("community_staff", "accepted", "escalated_street"),
    ("admin", "accepted", "escalated_street"),
    ("grid_worker", "dispatched", "handled"),
    ("admin", "dispatched", "handled"),
    ("grid_worker", "dispatched", "escalated_community"),
    ("admin", "dispatched", "escalated_community"),
    ("community_staff", "escalated_community", "dispatched"),
    ("admin", "escalated_community", "dispatched"),
    ("community_staff", "escalated_community", "escalated_street"),
    ("admin", "escalated_community", "escalated_street"),
    ("community_staff", "escalated_community", "rejected"),
    ("admin", "escalated_community", "rejected"),
    ("street_leader", "escalated_street", "dispatched"),
    ("admin", "escalated_street", "dispatched"),
    ("street_leader", "escalated_street", "rejected"),
    ("admin", "escalated_street", "rejected"),
    ("grid_worker", "handled", "feedback"),
    ("admin", "handled", "feedback"),
    ("community_staff", "feedback", "closed"),
    ("admin", "feedback", "closed"),
    ("community_staff", "feedback", "dispatched"),
    ("admin", "feedback", "dispatched"),
}
# Hand-written: the targets each role can reach from SOME state (a refused move to one of these from
# a state it cannot leave that way is a wrong-state 409, unless the move exists for other roles).
REACHABLE_HAND = {
    "admin": {
        "accepted",
        "rejected",
        "escalated_street",
        "dispatched",
        "handled",
        "escalated_community",
        "feedback",
        "closed",
    },
    "community_staff": {"accepted", "rejected", "escalated_street", "dispatched", "closed"},
    "grid_worker": {"handled", "escalated_community", "feedback"},
    "street_leader": {"dispatched", "rejected"},
    "planner": set(),
    "viewer": set(),
}
EDGES_HAND = {(f, t) for _, f, t in ALLOWED_HAND}


def expected_status(role: str, frm: str, to: str) -> int:
    if (role, frm, to) in ALLOWED_HAND:
        return 200
    if (frm, to) in EDGES_HAND or to not in REACHABLE_HAND[role]:
        return 403
    return 409


def test_the_table_equals_the_hand_written_list():
    from_table = {(r.value, f.value, t.value) for (f, t), roles in machine.TRANSITIONS.items() for r in roles}
    assert from_table == ALLOWED_HAND
    assert {r.value for r in machine.REPORTERS} == {"grid_worker", "community_staff", "street_leader", "admin"}
    assert {State.closed, State.rejected} == machine.TERMINAL
    assert not any(f in machine.TERMINAL for f, _ in machine.TRANSITIONS)


@pytest.mark.parametrize("role", [r.value for r in Role])
def test_every_role_state_target(role):
    n_allowed = 0
    for frm, to in itertools.product([s.value for s in State], repeat=2):
        want = expected_status(role, frm, to)
        err = machine.refusal(role, frm, to)
        got = 200 if err is None else err.status_code
        assert got == want, (role, frm, to, str(err))
        assert machine.can(role, frm, to) == (want == 200)
        if err is not None:
            msg = str(err)
            assert ROLE_LABELS[Role(role)] in msg and role in msg, msg  # the role, 中文 and English
            assert machine.STATE_LABELS[State(frm)] in msg and frm in msg, msg  # the state
            assert machine.STATE_LABELS[State(to)] in msg and to in msg, msg
        else:
            n_allowed += 1
    assert n_allowed == sum(1 for r, _, _ in ALLOWED_HAND if r == role)


def test_check_needs_department_and_reason():
    with pytest.raises(InvalidInput, match="department"):
        machine.check("community_staff", "accepted", "dispatched")
    machine.check("community_staff", "accepted", "dispatched", department="chengguan")
    for to in ("rejected", "escalated_street"):
        with pytest.raises(InvalidInput, match="note"):
            machine.check("community_staff", "reported", to, note="  ")
        machine.check("community_staff", "reported", to, note="理由 reason")
    with pytest.raises(machine.TransitionForbidden):
        machine.check("viewer", "reported", "accepted")
    with pytest.raises(InvalidInput, match="unknown event state"):
        machine.parse_state("done")


def test_catalog_default_and_errors(tmp_path):
    cat = load_catalog()
    codes = {c.code for c in cat.categories}
    assert {"shirong", "maodun", "anquan", "minsheng", "teshu"} <= codes
    assert cat.category("anquan").sla_hours == 24 and cat.category("anquan").zh == "安全隐患"
    assert cat.department("wangge").zh == "网格自办"
    with pytest.raises(InvalidInput, match="unknown event category"):
        cat.category("nope")
    bad = "categories:\n  - {code: a, zh: 甲, en: A, sla_hours: 5, department: x}\ndepartments: []\n"
    with pytest.raises(CatalogError, match="unknown department"):
        parse_catalog(bad)
    dup = (
        "categories:\n  - {code: a, zh: 甲, en: A, sla_hours: 5, department: d}\n"
        "  - {code: a, zh: 乙, en: B, sla_hours: 5, department: d}\ndepartments:\n  - {code: d, zh: 丁, en: D}\n"
    )
    with pytest.raises(CatalogError, match="duplicate category"):
        parse_catalog(dup)
    with pytest.raises(CatalogError):
        parse_catalog(
            "categories:\n  - {code: a, zh: 甲, en: A, sla_hours: -1, department: d}\n"
            "departments:\n  - {code: d, zh: 丁, en: D}\n"
        )


UTC = UTC
T0 = datetime(2026, 1, 10, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
NOW = datetime(2026, 3, 20, 4, 0, tzinfo=UTC)
G1, G2 = "340104001001001", "340104001001002"


def hand_set() -> list[Row]:
    h = timedelta(hours=1)
    return [
        # closed by the grid itself in 10 h, never escalated -> closed within the grid
        Row(1, "shirong", "closed", G1, G1[:12], T0, T0 + 10 * h, T0 + 72 * h, "wangge", None),
        # closed by a department in 30 h
        Row(2, "shirong", "closed", G1, G1[:12], T0 + 24 * h, T0 + 54 * h, T0 + 96 * h, "chengguan", None),
        # closed by the grid after an escalation to the community, 200 h (late: deadline 168 h)
        Row(
            3,
            "maodun",
            "closed",
            G2,
            G2[:12],
            T0 + 30 * 24 * h,
            T0 + 30 * 24 * h + 200 * h,
            T0 + 30 * 24 * h + 168 * h,
            "wangge",
            "community",
        ),
        # open, deadline passed -> overdue
        Row(
            4,
            "anquan",
            "dispatched",
            G2,
            G2[:12],
            datetime(2026, 3, 1, 0, 0, tzinfo=UTC),
            None,
            datetime(2026, 3, 2, 0, 0, tzinfo=UTC),
            "yingji",
            None,
        ),
        # open, deadline in the future
        Row(
            5,
            "anquan",
            "reported",
            G1,
            G1[:12],
            datetime(2026, 3, 20, 1, 0, tzinfo=UTC),
            None,
            datetime(2026, 3, 21, 1, 0, tzinfo=UTC),
        ),
        # rejected: not open, not closed; reported 31 Jan 20:00 UTC = 1 Feb 04:00 Shanghai -> February
        Row(
            6,
            "minsheng",
            "rejected",
            G1,
            G1[:12],
            datetime(2026, 1, 31, 20, 0, tzinfo=UTC),
            None,
            datetime(2026, 2, 5, 20, 0, tzinfo=UTC),
        ),
    ]


def test_statistics_equal_hand_computed_values():
    s = summarize(hand_set(), NOW, load_catalog())
    assert (s["total"], s["open"], s["overdue"], s["closed"]) == (6, 2, 1, 3)
    assert s["closed_in_grid"] == 1 and s["share_closed_in_grid"] == round(1 / 3, 4)
    assert s["median_hours_to_close"] == 30.0  # median of 10, 30, 200
    assert s["closed_late"] == 1 and s["escalated"] == 1
    assert {c["category"]: c["n"] for c in s["by_category"]} == {"shirong": 2, "anquan": 2, "maodun": 1, "minsheng": 1}
    assert {x["status"]: x["n"] for x in s["by_status"] if x["n"]} == {
        "closed": 3,
        "dispatched": 1,
        "reported": 1,
        "rejected": 1,
    }
    assert [(o["id"], o["hours_overdue"]) for o in s["overdue_list"]] == [(4, 18 * 24 + 4.0)]
    # months in Shanghai time: Jan: 1, 2 reported and closed; Feb: 3 reported, 6 reported (local 1 Feb);
    # Feb/Mar: 3 closed on 9 Feb + 200 h = 18 Feb -> Feb; Mar: 4, 5 reported
    assert s["trend"] == [
        {"month": "2026-01", "reported": 2, "closed": 2},
        {"month": "2026-02", "reported": 2, "closed": 1},
        {"month": "2026-03", "reported": 2, "closed": 0},
    ]
    grids = {g["grid"]: g for g in s["grids"]}
    assert (grids[G1]["total"], grids[G1]["closed"], grids[G1]["share_closed_in_grid"]) == (4, 2, 0.5)
    assert (grids[G2]["total"], grids[G2]["overdue"], grids[G2]["median_hours_to_close"]) == (2, 1, 200.0)


def test_statistics_of_nothing():
    s = summarize([], NOW, load_catalog())
    assert s["total"] == 0 and s["share_closed_in_grid"] is None and s["median_hours_to_close"] is None
    assert s["trend"] == [] and s["overdue_list"] == [] and s["grids"] == []
