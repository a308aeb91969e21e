"""Special-group services on PostGIS: the beyond-the-circle lists equal a brute-force recomputation from
the coverage engine's stored per-category distances (building_access), scope (a grid worker sees its
grid only), aggregate roles see suppressed counts and no names, the visit-overdue list on hand-built
visit events, recording a visit, the CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import typer
import yaml
from auth_helpers import app_url, bearer_token, ensure_user, signed_in_client
from sqlalchemy import create_engine, pool, text
from typer.testing import CliRunner

from gisgov.api import app as app_module
from gisgov.config import Settings
from gisgov.coverage.service import CoverageService
from gisgov.services import rules

SEED = 20241123
SETTINGS = Settings(login_rate_per_minute=1000)
TIE_M = 0.2  # distances this close to the budget are left out of the set comparison (float32 storage)


@pytest.fixture(scope="module")
def city(db_factory, tmp_path_factory):
    """A small sample city with a 儿童之家 added, one community gridded (active plan), and coverage computed
    with a catalog that also has the 儿童之家 category (so building_access holds every need's services)."""
    from gisgov.gridding import service as gridding
    from gisgov.sample import generate_city
    from gisgov.sample.load import load_city
    from gisgov.security.pii import Vault

    url = db_factory.create(prefix="gisgov_test_special")
    load_city(url, generate_city(seed=SEED, scale=0.4), vault=Vault(hashlib.sha256(b"special test").digest()))
    doc = yaml.safe_load(Path("layers/service_circles.yaml").read_text(encoding="utf-8"))
    cfg = rules.load_config()
    doc["categories"].append(
        {
            "code": "child_home",
            "name_zh": "儿童之家",
            "name_en": "Children's home",
            "select": [
                {"category": s.category, "kinds": list(s.kinds)} for s in cfg.need("kunjingertong").services[0].select
            ],
        }
    )
    cat_path = tmp_path_factory.mktemp("catalog") / "service_circles.yaml"
    cat_path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    eng = create_engine(url, poolclass=pool.NullPool)
    with eng.begin() as c:
        c.execute(text("SELECT set_config('gisgov.scope', '*', true)"))
        comm = c.execute(
            text("""
            SELECT b.community_code FROM resident_group rg JOIN resident r ON r.id = rg.resident_id
            JOIN household h ON h.id = r.household_id JOIN building b ON b.code = h.building_code
            WHERE rg.group_code = 'dujulaoren' GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1""")
        ).scalar_one()
        # a children's home at the building of one child in hardship (so some children are within the circle)
        c.execute(
            text("""
            INSERT INTO facility (code, name, category_code, kind, community_code, source, geom)
            SELECT 'TEST-CHILD-1', '测试儿童之家', 'minzheng', '儿童之家', b.community_code, 'test', b.pos
            FROM resident_group rg JOIN resident r ON r.id = rg.resident_id
            JOIN household h ON h.id = r.household_id JOIN building b ON b.code = h.building_code
            WHERE rg.group_code IN ('kunjingertong', 'liushouertong') ORDER BY r.id LIMIT 1""")
        )
    with eng.begin() as c:
        gridding.plan_and_activate(c, comm, time_limit_s=2.0)
    svc = CoverageService(catalog_path=cat_path)
    with eng.begin() as c:
        svc.compute(c)
    with eng.connect() as c:
        grid = c.execute(
            text("""
            SELECT g.code FROM grid_current() g JOIN building b ON b.grid_id = g.id
            JOIN household h ON h.building_code = b.code JOIN resident r ON r.household_id = h.id
            JOIN resident_group rg ON rg.resident_id = r.id
            WHERE g.community_code = :c AND rg.group_code = 'dujulaoren'
            GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"""),
            {"c": comm},
        ).scalar_one()
        other = c.execute(
            text("SELECT code FROM community WHERE code <> :c ORDER BY code LIMIT 1"), {"c": comm}
        ).scalar_one()
    eng.dispose()
    return {"url": url, "svc": svc, "community": comm, "grid": grid, "other": other, "street": comm[:9]}


@pytest.fixture(scope="module")
def owner(city):
    eng = create_engine(city["url"], poolclass=pool.NullPool)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def client(city):
    with signed_in_client(SETTINGS, city["url"], role="admin") as c:
        if "gisgov.api.routes.special" not in app_module.ROUTER_MODULES:
            from gisgov.api.routes import special

            c.app.include_router(special.router)
        c.app.state.coverage = city["svc"]
        yield c


def as_(client, url: str, role: str, scope: str) -> dict:
    return {"Authorization": f"Bearer {bearer_token(client, ensure_user(url, role, scope))}"}


def brute_force(owner, svc: CoverageService) -> dict:
    """(resident id, group) → (distance or None, grid, community) of every member beyond the circle,
    straight from building_access: the minimum over the need's services of the stored per-category
    distances (NULL = beyond the catalog's cap)."""
    cat = svc.catalog()
    cfg = rules.load_config(None, cat)
    budget = cfg.budget_m(cat)
    pairs = [(n.group, s.code) for n in cfg.needs for s in n.services]
    with owner.connect() as c:
        c.execute(text("SELECT set_config('gisgov.scope', '*', false)"))
        rows = c.execute(
            text("""
            WITH need AS (SELECT * FROM unnest(CAST(:g AS text[]), CAST(:s AS text[])) AS t(grp, cat)),
            d AS (SELECT n.grp, a.building_id, min(a.distance_m) AS dist
                  FROM need n JOIN building_access a ON a.category_code = n.cat GROUP BY 1, 2)
            SELECT r.id, rg.group_code, d.dist, g.code AS grid, b.community_code
            FROM resident_group rg JOIN resident r ON r.id = rg.resident_id
            JOIN household h ON h.id = r.household_id JOIN building b ON b.code = h.building_code
            LEFT JOIN grid g ON g.id = b.grid_id
            JOIN d ON d.grp = rg.group_code AND d.building_id = b.id"""),
            {"g": [g for g, _ in pairs], "s": [s for _, s in pairs]},
        ).all()
    out, ties, within = {}, set(), 0
    for r in rows:
        d = None if r.dist is None else float(r.dist)
        if d is not None and abs(d - budget) < TIE_M:
            ties.add((r.id, r.group_code))
        elif d is None or d > budget:
            out[(r.id, r.group_code)] = (d, r.grid, r.community_code)
        else:
            within += 1
    return {"beyond": out, "ties": ties, "within": within, "budget": budget}


def _api_beyond(client, headers=None, **params) -> dict:
    r = client.get("/api/special/beyond", headers=headers or {}, params={"limit": 5000, **params})
    assert r.status_code == 200, r.text
    return r.json()


def test_beyond_list_equals_brute_force(client, owner, city):
    bf = brute_force(owner, city["svc"])
    out = _api_beyond(client)
    assert out["budget_m"] == pytest.approx(480.0) and out["profile"] == "elderly" and out["method"] == "network"
    got = {(i["resident_id"], i["group"]): i for i in out["items"]}
    assert out["total"] == len(out["items"])
    keys = set(got) - bf["ties"]
    assert keys == set(bf["beyond"]), (len(keys), len(bf["beyond"]))
    for k, (d, grid, comm) in bf["beyond"].items():
        i = got[k]
        assert (i["distance_m"] is None) == (d is None)
        if d is not None:
            assert i["distance_m"] == pytest.approx(d, abs=0.1)
        assert i["grid"] == grid and i["community"] == comm
    groups = {g for _, g in bf["beyond"]}
    assert {"dujulaoren", "canji"} <= groups  # not trivial: people beyond …
    assert bf["within"] > 0  # … and people within
    # the union need: some elderly are served by one of the two services only (min over both counts)
    assert any(i["nearest"] for i in out["items"] if i["distance_m"] is not None)
    # names masked, no clear ID or phone fields
    for i in out["items"]:
        assert i["name"] and set(i["name"][1:]) == {"*"}
        assert i["id_masked"] is None or i["id_masked"].startswith("*" * 14)
        assert "id_last4" not in i and "birth_year" not in i


def test_grid_worker_sees_only_its_grid(client, owner, city):
    bf = brute_force(owner, city["svc"])
    url, grid = city["url"], city["grid"]
    gw = as_(client, url, "grid_worker", grid)
    out = _api_beyond(client, gw)
    want = {k for k, v in bf["beyond"].items() if v[1] == grid}
    assert want and {(i["resident_id"], i["group"]) for i in out["items"]} - bf["ties"] == want
    # another area: 404, whatever its code
    r = client.get("/api/special/beyond", headers=gw, params={"code": city["other"]})
    assert r.status_code == 404, r.text
    # community staff of another community: none of this community's residents
    cs = as_(client, url, "community_staff", city["other"])
    other = _api_beyond(client, cs)
    assert all(i["community"] == city["other"] for i in other["items"])
    # aggregate-only roles: no named list
    for role, scope in (("viewer", city["street"]), ("planner", city["street"])):
        r = client.get("/api/special/beyond", headers=as_(client, url, role, scope))
        assert r.status_code == 403 and "read_personal" in r.json()["detail"]
    # every named read audited
    with owner.connect() as c:
        rows = c.execute(
            text(
                "SELECT actor_role, object FROM audit_log WHERE action = 'read_personal' "
                "AND object LIKE 'special_beyond:%'"
            )
        ).all()
    assert ("grid_worker", f"special_beyond:{grid}") in {(r.actor_role, r.object) for r in rows}


def _walk_values(doc):
    for u in doc["units"]:
        for g in u["groups"]:
            for f in ("members", "beyond", "overdue"):
                yield u, g, f, g[f]


def test_summary_exact_for_leaders_suppressed_for_viewers(client, owner, city):
    bf = brute_force(owner, city["svc"])
    url = city["url"]
    exact = client.get("/api/special/summary").json()
    assert exact["suppression"] is None
    grids = {u["code"]: u for u in exact["units"] if u["level"] == "grid"}
    assert grids
    for code, u in grids.items():
        for g in u["groups"]:
            if g["beyond"] is not None:
                want = sum(1 for (rid, grp), v in bf["beyond"].items() if grp == g["group"] and v[1] == code)
                ties = sum(1 for (rid, grp) in bf["ties"] if grp == g["group"])
                assert want <= g["beyond"] <= want + ties, (code, g)
    comms = {u["code"]: u for u in exact["units"] if u["level"] == "community"}
    for code, u in comms.items():
        for g in u["groups"]:
            if g["beyond"] is not None:
                want = sum(1 for (rid, grp), v in bf["beyond"].items() if grp == g["group"] and v[2] == code)
                assert want <= g["beyond"] <= want + len(bf["ties"])
    viewer = client.get("/api/special/summary", headers=as_(client, url, "viewer", city["street"]))
    assert viewer.status_code == 200, viewer.text
    v = viewer.json()
    assert v["suppression"]["k"] == 5
    assert all(u["code"].startswith(city["street"]) for u in v["units"])
    seen_label = False
    for u, g, _f, val in _walk_values(v):
        assert not (isinstance(val, int) and 1 <= val <= 4), (u["code"], g)
        seen_label |= isinstance(val, str)
        assert set(g) == {"group", "group_name", "members", "beyond", "overdue", "suppressed"}
    assert seen_label
    # a grid worker (exact, its own grid) sees its grid only
    gw = client.get("/api/special/summary", headers=as_(client, url, "grid_worker", city["grid"])).json()
    assert {u["code"] for u in gw["units"] if u["level"] == "grid"} == {city["grid"]}
    assert gw["units"] and all(not isinstance(val, str) for *_, val in _walk_values(gw))


def _add_visit(c, resident_id: int, days_ago: int, status: str = "closed") -> int:
    eid = c.execute(
        text("""
        INSERT INTO event (geom, category, description, status, reported_at, deadline)
        SELECT b.pos, 'teshu', '特殊人群走访（测试）', :st, now() - make_interval(days => :d),
               now() - make_interval(days => :d) + interval '7 days'
        FROM resident r JOIN household h ON h.id = r.household_id JOIN building b ON b.code = h.building_code
        WHERE r.id = :r RETURNING id"""),
        {"st": status, "d": days_ago, "r": resident_id},
    ).scalar_one()
    c.execute(
        text(
            "INSERT INTO special_visit (event_id, resident_id, visited_at) "
            "VALUES (:e, :r, now() - make_interval(days => :d))"
        ),
        {"e": eid, "r": resident_id, "d": days_ago},
    )
    return eid


def test_overdue_list_on_hand_built_visits(client, owner, city):
    url, comm = city["url"], city["community"]
    with owner.begin() as c:
        c.execute(text("SELECT set_config('gisgov.scope', '*', true)"))
        members = (
            c.execute(
                text("""
            SELECT r.id FROM resident_group rg JOIN resident r ON r.id = rg.resident_id
            JOIN household h ON h.id = r.household_id JOIN building b ON b.code = h.building_code
            WHERE rg.group_code = 'dujulaoren' AND b.community_code = :c ORDER BY r.id"""),
                {"c": comm},
            )
            .scalars()
            .all()
        )
        assert len(members) >= 4
        a, b, cc = members[:3]
        _add_visit(c, a, 10)  # visited 10 days ago: fine (rule 30 days)
        _add_visit(c, b, 45)  # 45 days ago: 15 days overdue
        _add_visit(c, cc, 100)  # 100 days ago …
        _add_visit(c, cc, 10, status="rejected")  # … a rejected visit event does not count: 70 days overdue
    cs = as_(client, url, "community_staff", comm)
    r = client.get("/api/special/visits/overdue", headers=cs, params={"group": "dujulaoren", "limit": 5000})
    assert r.status_code == 200, r.text
    got = {i["resident_id"]: i for i in r.json()["items"]}
    assert set(got) == set(members) - {a}
    assert got[b]["days_overdue"] == 15 and got[b]["interval_days"] == 30
    assert got[cc]["days_overdue"] == 70
    assert all(got[m]["last_visit"] is None and got[m]["days_overdue"] is None for m in members[3:])
    order = [i["resident_id"] for i in r.json()["items"]]
    assert order.index(members[3]) < order.index(cc) < order.index(b)  # never visited, then most overdue
    # viewers: 403; another community's staff: 404 for this community
    assert client.get("/api/special/visits/overdue", headers=as_(client, url, "viewer", comm)).status_code == 403
    r = client.get(
        "/api/special/visits/overdue", headers=as_(client, url, "community_staff", city["other"]), params={"code": comm}
    )
    assert r.status_code == 404
    # the summary counts the same overdue members (exact for community staff)
    s = client.get("/api/special/summary", headers=cs).json()
    unit = next(u for u in s["units"] if u["level"] == "community" and u["code"] == comm)
    g = next(x for x in unit["groups"] if x["group"] == "dujulaoren")
    assert g["overdue"] == len(members) - 1 and g["members"] == len(members)


def test_record_visit_by_the_grid_worker(client, owner, city):
    url, grid = city["url"], city["grid"]
    gw = as_(client, url, "grid_worker", grid)
    before = client.get("/api/special/visits/overdue", headers=gw, params={"group": "dujulaoren"}).json()
    target = before["items"][0]["resident_id"]
    summary = client.get("/api/special/summary", headers=gw)
    again = client.get("/api/special/summary", headers=gw)  # kept (gisgov.api.answers): nothing changed
    assert again.headers["X-Gisgov-Cache"] == "hit" and again.content == summary.content
    r = client.post("/api/special/visits", headers=gw, json={"resident_id": target, "note": "上门看望，身体良好"})
    assert r.status_code == 201, r.text
    # the visit is seen at once although visits do not move the data version: one overdue member fewer
    fresh = client.get("/api/special/summary", headers=gw)
    assert fresh.headers["X-Gisgov-Cache"] == "miss"

    def overdue(doc):
        unit = next(u for u in doc["units"] if u["level"] == "grid" and u["code"] == grid)
        return next(x for x in unit["groups"] if x["group"] == "dujulaoren")["overdue"]

    assert overdue(fresh.json()) == overdue(summary.json()) - 1
    v = r.json()
    assert v["resident_id"] == target and "dujulaoren" in v["groups"]
    after = client.get("/api/special/visits/overdue", headers=gw, params={"group": "dujulaoren"}).json()
    assert target not in {i["resident_id"] for i in after["items"]} and after["total"] == before["total"] - 1
    with owner.connect() as c:
        c.execute(text("SELECT set_config('gisgov.scope', '*', false)"))
        ev = c.execute(
            text("SELECT category, reporter_role, description FROM event WHERE id = :e"), {"e": v["event_id"]}
        ).one()
        aud = (
            c.execute(
                text("SELECT result FROM audit_log WHERE action = 'event_report' AND object = :o"),
                {"o": f"event:{v['event_id']}"},
            )
            .scalars()
            .all()
        )
        outside = c.execute(
            text("""
            SELECT r.id FROM resident_group rg JOIN resident r ON r.id = rg.resident_id
            JOIN household h ON h.id = r.household_id JOIN building b ON b.code = h.building_code
            WHERE b.community_code <> :c ORDER BY r.id LIMIT 1"""),
            {"c": city["community"]},
        ).scalar_one()
    assert ev.category == "teshu" and ev.reporter_role == "grid_worker" and ev.description.startswith("特殊人群走访")
    assert aud == ["ok"]
    r = client.post("/api/special/visits", headers=gw, json={"resident_id": outside})
    assert r.status_code == 404, r.text
    r = client.post("/api/special/visits", headers=as_(client, url, "viewer", grid), json={"resident_id": target})
    assert r.status_code == 403
    r = client.post("/api/special/visits", headers=gw, json={"resident_id": target, "extra": 1})
    assert r.status_code == 422


def test_needs_document(client):
    r = client.get("/api/special/needs")
    assert r.status_code == 200
    d = r.json()
    assert d["budget_m"] == pytest.approx(480.0) and d["minutes"] == 10
    assert {n["group"] for n in d["needs"]} == {"dujulaoren", "canji", "kunjingertong", "liushouertong"}


def test_cli_beyond_summary_overdue(client, city, monkeypatch):
    from gisgov.cli import special as cli_special

    url, grid = city["url"], city["grid"]
    monkeypatch.setenv("GISGOV_APP_DATABASE_URL", app_url(url))
    monkeypatch.setenv("GISGOV_DATABASE_URL", url)
    from gisgov.config import get_settings

    get_settings.cache_clear()  # the CLI reads settings once per process
    main = typer.Typer()
    cli_special.register(main)
    run = lambda *a: CliRunner().invoke(main, ["special", *a])  # noqa: E731
    gw = ensure_user(url, "grid_worker", grid)
    viewer = ensure_user(url, "viewer", city["street"])
    api = _api_beyond(client, as_(client, url, "grid_worker", grid))
    r = run("beyond", "--as", gw, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert {(i["resident_id"], i["group"]) for i in out["items"]} == {
        (i["resident_id"], i["group"]) for i in api["items"]
    }
    assert run("beyond", "--as", gw).exit_code == 0
    r = run("beyond", "--as", viewer)
    assert r.exit_code == 1
    r = run("summary", "--as", viewer, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["suppression"]["k"] == 5
    r = run("overdue", "--as", gw, "--group", "dujulaoren", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["total"] >= 0
    r = run("beyond", "--as", gw, "--code", city["other"])
    assert r.exit_code == 4


def test_visit_rows_are_append_only_for_the_app(city, owner):
    """The app role may read and add visit rows, never change or delete them; rows follow the resident's scope."""
    from sqlalchemy.exc import ProgrammingError

    with owner.begin() as c:
        c.execute(text("SELECT set_config('gisgov.scope', '*', true)"))
        rid = c.execute(
            text("""
            SELECT r.id FROM resident_group rg JOIN resident r ON r.id = rg.resident_id
            JOIN household h ON h.id = r.household_id JOIN building b ON b.code = h.building_code
            WHERE b.community_code = :c AND NOT EXISTS (SELECT 1 FROM resident_group x WHERE x.resident_id = r.id
                                                        AND x.group_code = 'dujulaoren')
            ORDER BY r.id DESC LIMIT 1"""),
            {"c": city["community"]},
        ).scalar_one()
        _add_visit(c, rid, 3)  # not an elderly person living alone: the other tests' expectations stay
    eng = create_engine(app_url(city["url"]), poolclass=pool.NullPool)
    try:
        for sql in ("UPDATE special_visit SET visited_at = now()", "DELETE FROM special_visit"):
            with eng.connect() as c, pytest.raises(ProgrammingError, match="permission denied"):
                c.execute(text("SELECT set_config('gisgov.scope', '*', false)"))
                c.execute(text(sql))
        with eng.connect() as c:
            c.execute(text("SELECT set_config('gisgov.scope', '*', false)"))
            everywhere = c.execute(text("SELECT count(*) FROM special_visit")).scalar_one()
            c.execute(text("SELECT set_config('gisgov.scope', :s, false)"), {"s": city["other"]})
            elsewhere = c.execute(text("SELECT count(*) FROM special_visit")).scalar_one()
        assert everywhere > 0 and elsewhere == 0  # every visit of these tests lies in the gridded community
    finally:
        eng.dispose()
