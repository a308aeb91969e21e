"""Events through PostgreSQL and the HTTP API on the mini city (a database of its own):
placement (incl. shared boundaries), the whole loop by the right roles with history and audit rows,
every role × state × target through POST /api/events/{id}/transition, two concurrent transitions
(one wins, the other 409), row-level security for the app role, the append-only history,
list filters, statistics and the clustered map layer."""

from __future__ import annotations

import threading
import time

import pytest
from auth_helpers import app_engine, ensure_user, signed_in_client
from fastapi.testclient import TestClient
from mini_city import COMM_A, COMM_B, GRID_A1, GRID_A2, GRID_B1, STREET, load_mini_city
from sqlalchemy import create_engine, pool, text
from sqlalchemy.exc import DBAPIError
from test_events_machine import ALLOWED_HAND, expected_status

from gisgov.api.app import create_app
from gisgov.api.routes import events as events_routes
from gisgov.config import Settings
from gisgov.events import machine, store
from gisgov.events.machine import State
from gisgov.security.roles import Principal, Role

IN_A1 = (117.205, 31.815)
IN_A2 = (117.215, 31.815)
IN_B1 = (117.23, 31.815)


@pytest.fixture(scope="module")
def city(db_factory):
    url = db_factory.create(prefix="gisgov_test_events")
    load_mini_city(url)
    return url


@pytest.fixture(scope="module")
def owner(city):
    eng = create_engine(city, poolclass=pool.NullPool)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def app_eng(city):
    eng = app_engine(city)
    yield eng
    eng.dispose()


SCOPES = {
    "admin": "",
    "street_leader": STREET,
    "community_staff": COMM_A,
    "grid_worker": GRID_A1,
    "planner": STREET,
    "viewer": STREET,
}


def _wired(app) -> None:
    if not any(getattr(r, "path", None) == "/api/events" for r in app.routes):
        app.include_router(events_routes.router)


@pytest.fixture(scope="module")
def clients(city, app_eng):
    """One signed-in client per role (bearer tokens), all on one app."""
    from auth_helpers import bearer_token

    app = create_app(Settings(), engine=app_eng)
    _wired(app)
    out = {}
    with TestClient(app) as base:
        for role, scope in SCOPES.items():
            user = ensure_user(city, role, scope)
            c = TestClient(app)
            c.headers["Authorization"] = f"Bearer {bearer_token(base, user)}"
            out[role] = c
        out["grid_worker_a2"] = TestClient(app)
        out["grid_worker_a2"].headers["Authorization"] = (
            f"Bearer {bearer_token(base, ensure_user(city, 'grid_worker', GRID_A2))}"
        )
        yield out


def report(c, where=IN_A1, category="shirong", description="井盖缺失 manhole cover missing", **kw):
    return c.post(
        "/api/events", json={"lon": where[0], "lat": where[1], "category": category, "description": description, **kw}
    )


def put_in_state(owner, event_id: int, state: str) -> int:
    """Force an event into a state (owner SQL, test set-up only); returns its version."""
    with owner.begin() as c:
        c.execute(text("SELECT set_config('gisgov.scope', '*', true)"))
        return c.execute(
            text("UPDATE event SET status = :s, version = version + 1 WHERE id = :id RETURNING version"),
            {"s": state, "id": event_id},
        ).scalar_one()


def test_report_places_the_event_and_sets_the_deadline(clients, owner):
    r = report(clients["grid_worker"], description="占道经营 street vendor, 联系 13812345678")
    assert r.status_code == 201, r.text
    ev = r.json()
    assert (ev["grid_code"], ev["community_code"], ev["street_code"]) == (GRID_A1, COMM_A, STREET)
    assert ev["status"] == "reported" and ev["version"] == 1 and ev["category_label"] == "市容环境"
    assert "13812345678" not in ev["description"] and "138****5678" in ev["description"]
    assert [h["to_status"] for h in ev["history"]] == ["reported"]
    with owner.connect() as c:
        hours = c.execute(
            text("SELECT extract(epoch FROM deadline - reported_at) / 3600 FROM event WHERE id = :i"), {"i": ev["id"]}
        ).scalar_one()
        assert float(hours) == pytest.approx(72)
        a = c.execute(
            text("SELECT actor, result FROM audit_log WHERE action = 'event_report' AND object = :o"),
            {"o": f"event:{ev['id']}"},
        ).one()
        assert a.result == "ok" and a.actor.startswith("t_grid_worker")


def test_report_refusals(clients):
    r = report(clients["grid_worker"], where=IN_B1)  # another community's grid
    assert r.status_code == 403 and "网格员" in r.json()["detail"] and "grid_worker" in r.json()["detail"]
    r = report(clients["planner"])
    assert r.status_code == 403 and "规划人员" in r.json()["detail"]
    r = report(clients["admin"], where=(116.0, 30.0))
    assert r.status_code == 422 and "outside" in r.json()["detail"]
    r = report(clients["admin"], category="nope")
    assert r.status_code == 422 and "unknown event category" in r.json()["detail"]
    r = report(clients["admin"], description="")
    assert r.status_code == 422


def test_boundary_points_go_to_the_smallest_code(owner):
    with owner.connect() as c:
        # 117.21 is shared by A1 and A2, 117.22 by A2 (community A) and B1 (community B), the corner too
        for lon, lat, want in [
            (117.21, 31.815, GRID_A1),
            (117.22, 31.815, GRID_A2),
            (117.22, 31.80, GRID_A2),
            (117.21, 31.83, GRID_A1),
            (117.205, 31.815, GRID_A1),
        ]:
            got = {store.place(c, lon, lat)["grid_code"] for _ in range(3)}
            assert got == {want}, (lon, lat, got)
        # a grid added later with a smaller code covering the same boundary takes it: the rule is the code,
        # not the order rows were inserted in
        c.rollback()
        tx = c.begin()
        c.execute(
            text(
                "INSERT INTO grid (code, community_code, geom) VALUES ('340104001001000', :c, "
                "ST_Multi(ST_MakeEnvelope(117.209, 31.81, 117.21, 31.82, 4490)))"
            ),
            {"c": COMM_A},
        )
        assert store.place(c, 117.21, 31.815)["grid_code"] == "340104001001000"
        tx.rollback()
        assert store.place(c, 117.21, 31.815)["grid_code"] == GRID_A1
        assert store.place(c, 116.0, 30.0) is None


def test_the_whole_loop_by_the_right_roles(clients, owner):
    gw, cs = clients["grid_worker"], clients["community_staff"]
    ev = report(gw).json()
    steps = [
        (cs, "accepted", {}),
        (cs, "dispatched", {"department": "wangge"}),
        (gw, "handled", {"note": "已清理"}),
        (gw, "feedback", {"note": "居民满意"}),
        (cs, "closed", {}),
    ]
    for c, to, extra in steps:
        r = c.post(f"/api/events/{ev['id']}/transition", json={"to": to, "version": ev["version"], **extra})
        assert r.status_code == 200, (to, r.text)
        assert r.json()["version"] == ev["version"] + 1 and r.json()["status"] == to
        ev = r.json()
    assert ev["department"] == "wangge" and ev["next"] == []
    assert all(ev[k] for k in ("accepted_at", "dispatched_at", "handled_at", "feedback_at", "closed_at"))
    got = clients["admin"].get(f"/api/events/{ev['id']}").json()
    assert [(h["from_status"], h["to_status"]) for h in got["history"]] == [
        (None, "reported"),
        ("reported", "accepted"),
        ("accepted", "dispatched"),
        ("dispatched", "handled"),
        ("handled", "feedback"),
        ("feedback", "closed"),
    ]
    assert [h["actor_role"] for h in got["history"]] == [
        "grid_worker",
        "community_staff",
        "community_staff",
        "grid_worker",
        "grid_worker",
        "community_staff",
    ]
    with owner.connect() as c:
        n = c.execute(
            text("SELECT count(*) FROM audit_log WHERE action = 'event_transition' AND object = :o AND result = 'ok'"),
            {"o": f"event:{ev['id']}"},
        ).scalar_one()
        assert n == 5


def test_every_role_state_target_over_http(clients, owner):
    """Every (role, state, target): allowed ones answer 200 and move the event (a fresh event each),
    refused ones 403/409 with the role and the state named, and change nothing."""
    admin = clients["admin"]
    parked = {}
    for s in State:
        e = report(admin).json()
        parked[s.value] = (e["id"], put_in_state(owner, e["id"], s.value))
    checked = 0
    for role in SCOPES:
        c = clients[role]
        for frm in State:
            for to in State:
                want = expected_status(role, frm.value, to.value)
                extra = {"note": "理由 reason", "department": "chengguan"}
                if want == 200:
                    e = report(admin).json()
                    eid, version = e["id"], put_in_state(owner, e["id"], frm.value)
                else:
                    eid, version = parked[frm.value]
                r = c.post(f"/api/events/{eid}/transition", json={"to": to.value, "version": version, **extra})
                assert r.status_code == want, (role, frm.value, to.value, r.text)
                if want == 200:
                    assert r.json()["status"] == to.value and r.json()["version"] == version + 1
                else:
                    d = r.json()["detail"]
                    assert role in d and frm.value in d and machine.STATE_LABELS[frm] in d, d
                checked += 1
    assert checked == len(SCOPES) * len(State) ** 2
    with owner.connect() as c:  # the parked events never moved
        for s, (eid, version) in parked.items():
            assert c.execute(text("SELECT status, version FROM event WHERE id = :i"), {"i": eid}).one() == (s, version)
        denied = c.execute(
            text("SELECT count(*) FROM audit_log WHERE action = 'event_transition' AND result = 'denied'")
        ).scalar_one()
        assert denied >= len(SCOPES) * len(State) ** 2 - len(ALLOWED_HAND)


def test_stale_version_and_missing_department_and_scope(clients):
    cs, admin = clients["community_staff"], clients["admin"]
    ev = report(admin).json()
    assert cs.post(f"/api/events/{ev['id']}/transition", json={"to": "accepted", "version": 1}).status_code == 200
    r = admin.post(f"/api/events/{ev['id']}/transition", json={"to": "dispatched", "version": 1, "department": "sifa"})
    assert r.status_code == 409 and "version" in r.json()["detail"] and "版本" in r.json()["detail"]
    r = cs.post(f"/api/events/{ev['id']}/transition", json={"to": "dispatched", "version": 2})
    assert r.status_code == 422 and "department" in r.json()["detail"]
    r = cs.post(f"/api/events/{ev['id']}/transition", json={"to": "dispatched", "version": 2, "department": "nope"})
    assert r.status_code == 422
    # another grid's worker: the event does not exist for them
    other = clients["grid_worker_a2"]
    assert other.get(f"/api/events/{ev['id']}").status_code == 404
    assert other.post(f"/api/events/{ev['id']}/transition", json={"to": "handled", "version": 2}).status_code == 404


def _principal(owner, role: str, scope: str) -> Principal:
    user = ensure_user(owner, role, scope)
    with owner.connect() as c:
        uid, name = c.execute(text("SELECT id, display_name FROM app_user WHERE username = :u"), {"u": user}).one()
    return Principal(uid, user, name, Role(role), scope)


def test_two_concurrent_transitions_one_wins(owner, app_eng):
    """Two app-role connections accept the same event with version 1: the second waits for the first's
    row lock, then finds the version moved on -> 409. Exactly one history row for the move."""
    staff = _principal(owner, "community_staff", COMM_A)
    admin = _principal(owner, "admin", "")
    with app_eng.begin() as c:
        c.execute(text("SELECT set_config('gisgov.scope', '*', true)"))
        eid = store.report(c, admin, lon=IN_A1[0], lat=IN_A1[1], category="anquan", description="电线裸露")["id"]
    c1, c2 = app_eng.connect(), app_eng.connect()
    out: dict = {}
    try:
        c1.begin()
        c1.execute(text("SELECT set_config('gisgov.scope', :s, true)"), {"s": COMM_A})
        c2.begin()
        c2.execute(text("SELECT set_config('gisgov.scope', '*', true)"))
        pid2 = c2.execute(text("SELECT pg_backend_pid()")).scalar_one()
        store.transition(c1, staff, eid, "accepted", 1)  # holds the row lock, not committed

        def second():
            try:
                out["ok"] = store.transition(c2, admin, eid, "accepted", 1)
            except Exception as exc:
                out["err"] = exc

        t = threading.Thread(target=second)
        t.start()
        with owner.connect() as w:  # wait until the second really waits on the lock
            for _ in range(200):
                if (
                    w.execute(text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :p"), {"p": pid2}).scalar()
                    == "Lock"
                ):
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the second transition never waited for the row lock")
        c1.commit()
        t.join(30)
        assert not t.is_alive()
        c2.rollback()
    finally:
        c1.close()
        c2.close()
    assert "ok" not in out and isinstance(out["err"], machine.TransitionConflict), out
    assert out["err"].status_code == 409
    with owner.connect() as c:
        assert c.execute(text("SELECT status, version FROM event WHERE id = :i"), {"i": eid}).one() == ("accepted", 2)
        assert (
            c.execute(
                text("SELECT count(*) FROM event_history WHERE event_id = :i AND to_status = 'accepted'"), {"i": eid}
            ).scalar_one()
            == 1
        )


def test_two_threads_over_http_one_200_one_409(city, app_eng):
    """The same race through HTTP: two clients (own apps) accept one event at the same moment."""
    results: list[int] = []
    with signed_in_client(Settings(), city, role="admin", engine=app_eng) as admin:
        _wired(admin.app)
        eid = report(admin).json()["id"]
        with signed_in_client(Settings(), city, role="community_staff", scope=COMM_A, engine=app_eng) as cs:
            _wired(cs.app)
            barrier = threading.Barrier(2)

            def go(c, body):
                barrier.wait()
                results.append(c.post(f"/api/events/{eid}/transition", json=body).status_code)

            ts = [
                threading.Thread(target=go, args=(admin, {"to": "accepted", "version": 1})),
                threading.Thread(target=go, args=(cs, {"to": "accepted", "version": 1})),
            ]
            for t in ts:
                t.start()
            for t in ts:
                t.join(60)
    assert sorted(results) == [200, 409]


def test_rls_a_grid_worker_cannot_read_another_grids_events(owner, app_eng, clients):
    a1 = report(clients["grid_worker"]).json()["id"]
    b1 = report(clients["admin"], where=IN_B1).json()["id"]
    with app_eng.connect() as c:
        with c.begin():
            c.execute(text("SELECT set_config('gisgov.scope', :s, true)"), {"s": GRID_A2})
            assert c.execute(text("SELECT count(*) FROM event WHERE id IN (:a, :b)"), {"a": a1, "b": b1}).scalar() == 0
            assert (
                c.execute(
                    text("SELECT count(*) FROM event_history WHERE event_id IN (:a, :b)"), {"a": a1, "b": b1}
                ).scalar()
                == 0
            )
            assert c.execute(text("SELECT count(*) FROM event WHERE grid_code <> :g"), {"g": GRID_A2}).scalar() == 0
        with c.begin():
            c.execute(text("SELECT set_config('gisgov.scope', :s, true)"), {"s": GRID_A1})
            assert c.execute(text("SELECT count(*) FROM event WHERE id = :a"), {"a": a1}).scalar() == 1
            assert c.execute(text("SELECT count(*) FROM event WHERE id = :b"), {"b": b1}).scalar() == 0
        with c.begin():  # no scope: nothing
            assert c.execute(text("SELECT count(*) FROM event")).scalar() == 0
        with c.begin():  # an insert into another grid is refused by the policy
            c.execute(text("SELECT set_config('gisgov.scope', :s, true)"), {"s": GRID_A2})
            with pytest.raises(DBAPIError, match="row-level security"):
                c.execute(
                    text(
                        "INSERT INTO event (geom, category, description, deadline) VALUES "
                        "(ST_SetSRID(ST_MakePoint(117.205, 31.815), 4490), 'shirong', 'x', now())"
                    )
                )
    with app_eng.connect() as c, c.begin():  # the app role may not delete events nor change history
        c.execute(text("SELECT set_config('gisgov.scope', '*', true)"))
        with pytest.raises(DBAPIError, match="permission denied"):
            c.execute(text("DELETE FROM event WHERE id = :a"), {"a": a1})
    for sql in (
        "UPDATE event_history SET note = 'x' WHERE event_id = :a",
        "DELETE FROM event_history WHERE event_id = :a",
    ):
        with owner.connect() as c, c.begin():  # even the owner: the trigger refuses
            with pytest.raises(DBAPIError, match="append-only"):
                c.execute(text(sql), {"a": a1})
    ids = {e["id"] for e in clients["grid_worker_a2"].get("/api/events?limit=500").json()["items"]}
    assert a1 not in ids and b1 not in ids


def test_list_filters_and_aggregate_roles(clients, owner):
    admin = clients["admin"]
    e1 = report(admin, where=IN_B1, category="maodun", description="邻里噪音纠纷").json()
    with owner.begin() as c:
        c.execute(text("SELECT set_config('gisgov.scope', '*', true)"))
        c.execute(
            text(
                "UPDATE event SET reported_at = '2025-06-01T08:00+08', deadline = '2025-06-02T08:00+08' WHERE id = :i"
            ),
            {"i": e1["id"]},
        )
    got = admin.get("/api/events", params={"grid": GRID_B1, "category": "maodun", "overdue": "true"}).json()
    assert [e["id"] for e in got["items"]] == [e1["id"]] and got["total"] == 1
    assert got["items"][0]["overdue"] is True and got["items"][0]["reporter"]
    got = admin.get("/api/events", params={"from": "2025-06-01", "to": "2025-06-01", "community": COMM_B}).json()
    assert [e["id"] for e in got["items"]] == [e1["id"]]
    assert (
        admin.get("/api/events", params={"from": "2025-06-02", "community": COMM_B, "category": "maodun"}).json()[
            "total"
        ]
        == 0
    )
    assert admin.get("/api/events", params={"status": "nope"}).status_code == 422
    page = admin.get("/api/events", params={"limit": 2, "offset": 1}).json()
    assert len(page["items"]) == 2 and page["total"] >= 3
    for role in ("planner", "viewer"):
        c = clients[role]
        r = c.get("/api/events")
        assert r.status_code == 403 and role in r.json()["detail"]
        assert c.get(f"/api/events/{e1['id']}").status_code == 403
        s = c.get("/api/events/stats", params={"community": COMM_B})
        assert s.status_code == 200 and s.json()["total"] >= 1
        assert "reporter" not in s.text and "邻里噪音" not in s.text  # counts, no names, no texts
        g = c.get("/api/events/geojson")
        assert g.status_code == 200 and "reporter" not in g.text
    assert clients["community_staff"].get("/api/events/stats", params={"community": COMM_B}).status_code == 404


def test_clustered_layer_counts_open_events_per_grid(clients, owner):
    with owner.connect() as c:
        c.execute(text("SELECT set_config('gisgov.scope', '*', false)"))
        want = dict(
            c.execute(
                text(
                    "SELECT grid_code, count(*) FROM event WHERE status NOT IN ('closed', 'rejected') "
                    "GROUP BY grid_code"
                )
            ).all()
        )
    fc = clients["admin"].get("/api/events/geojson").json()
    got = {f["id"]: f["properties"]["open"] for f in fc["features"]}
    assert got == want and fc["total_open"] == sum(want.values())
    for f in fc["features"]:
        lon, lat = f["geometry"]["coordinates"]
        assert 117.2 <= lon <= 117.24 and 31.8 <= lat <= 31.83
        assert sum(v["n"] for v in f["properties"]["categories"].values()) == f["properties"]["open"]
    mine = clients["grid_worker"].get("/api/events/geojson").json()
    assert {f["id"] for f in mine["features"]} == {GRID_A1}


def test_statistics_through_the_database_equal_the_rows(clients, owner):
    s = clients["admin"].get("/api/events/stats", params={"grid": GRID_A1}).json()
    with owner.connect() as c:
        c.execute(text("SELECT set_config('gisgov.scope', '*', false)"))
        total, closed, overdue = c.execute(
            text(
                "SELECT count(*), count(*) FILTER (WHERE status = 'closed'), "
                "count(*) FILTER (WHERE status NOT IN ('closed','rejected') AND deadline < now()) "
                "FROM event WHERE grid_code = :g"
            ),
            {"g": GRID_A1},
        ).one()
    assert (s["total"], s["closed"], s["overdue"]) == (total, closed, overdue)
    assert s["grid"] == GRID_A1 and [g["grid"] for g in s["grids"]] == [GRID_A1]


def test_odd_input_is_refused_not_a_server_error(clients):
    admin = clients["admin"]
    assert admin.get("/api/events/99999999999999999999").status_code == 422
    assert (
        admin.post("/api/events/99999999999999999999/transition", json={"to": "accepted", "version": 1}).status_code
        == 422
    )
    assert admin.post("/api/events/1/transition", json={"to": "accepted", "version": 2**40}).status_code == 422
    assert admin.post("/api/events/1/transition", json={"to": "nope", "version": 1}).status_code == 422
    r = report(admin, description="\x00\x00")
    assert r.status_code == 422
    r = report(admin, description="a\x00b")
    assert r.status_code == 201 and r.json()["description"] == "ab"
    assert admin.get("/api/events", params={"from": "2026-02-01", "to": "2026-01-01"}).status_code == 422


def test_kept_statistics_see_a_new_event_at_once(clients):
    """Event statistics are kept per worker (gisgov.api.answers) but a reported event is counted by the
    next request: events do not move the data version, so the answer is keyed by the newest event too."""
    admin = clients["admin"]
    first = admin.get("/api/events/stats", params={"grid": GRID_A1})
    again = admin.get("/api/events/stats", params={"grid": GRID_A1})
    assert again.headers["X-Gisgov-Cache"] == "hit" and again.json() == first.json()
    street = admin.get("/api/dashboard/events", params={"street": GRID_A1[:9]})
    assert admin.get("/api/dashboard/events", params={"street": GRID_A1[:9]}).headers["X-Gisgov-Cache"] == "hit"
    assert report(clients["grid_worker"]).status_code == 201
    after = admin.get("/api/events/stats", params={"grid": GRID_A1})
    assert after.headers["X-Gisgov-Cache"] == "miss"
    assert after.json()["total"] == first.json()["total"] + 1
    assert (
        admin.get("/api/dashboard/events", params={"street": GRID_A1[:9]}).json()["total"] == street.json()["total"] + 1
    )
