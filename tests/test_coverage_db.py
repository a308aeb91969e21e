"""Service circles on a real PostGIS: migration, stored results, CLI, API (signed in; scope, roles,
audit), committed what-if, graph reuse."""

from __future__ import annotations

import numpy as np
import pytest
from auth_helpers import bearer_token, ensure_user, signed_in_client
from sample_fixtures import small_city_db
from sqlalchemy import create_engine, pool, text
from typer.testing import CliRunner

from gisgov.config import Settings, get_settings
from gisgov.coverage.service import CoverageService
from gisgov.db import migrate

runner = CliRunner()


@pytest.fixture(scope="module")
def city_url(db_factory):
    """A fresh database with a small sample city (scale 0.4) and coverage computed and stored."""
    return small_city_db(db_factory, "gisgov_test_cov")


@pytest.fixture(scope="module")
def ceng(city_url):
    eng = create_engine(city_url, poolclass=pool.NullPool)
    yield eng
    eng.dispose()


def test_migration_up_and_down(db_factory):
    url = db_factory.create(migrated=False)
    migrate.upgrade(url)
    eng = create_engine(url, poolclass=pool.NullPool)
    mine = {
        "building_access",
        "building_snap",
        "facility_snap",
        "coverage_run",
        "coverage_budget",
        "coverage_figure",
        "coverage_group_figure",
    }
    # building_access and coverage_figure are views over compact tables since migration 0015
    q = text(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
        "UNION SELECT viewname FROM pg_views WHERE schemaname = 'public'"
    )
    with eng.connect() as c:
        assert mine <= {r[0] for r in c.execute(q)}
        assert c.execute(text("SELECT count(*) FROM pg_views WHERE viewname = 'building_access_profile'")).scalar() == 1
    migrate.downgrade(url, "0002")
    with eng.connect() as c:
        assert not mine & {r[0] for r in c.execute(q)}
        assert c.execute(text("SELECT count(*) FROM pg_views WHERE viewname = 'building_access_profile'")).scalar() == 0
    migrate.upgrade(url)
    with eng.connect() as c:
        assert mine <= {r[0] for r in c.execute(q)}
    eng.dispose()


def test_stored_results_are_complete_and_consistent(ceng):
    svc = CoverageService()
    with ceng.connect() as c:
        nb = c.execute(text("SELECT count(*) FROM building")).scalar()
        ncat = len(svc.catalog().categories)
        assert c.execute(text("SELECT count(*) FROM building_access")).scalar() == nb * ncat
        assert c.execute(text("SELECT count(*) FROM building_snap")).scalar() == nb
        assert c.execute(text("SELECT count(DISTINCT method) FROM building_access")).scalar() == 1
        # the view: within ⇔ distance ≤ budget
        bad = c.execute(
            text("""SELECT count(*) FROM building_access_profile v JOIN coverage_budget b USING (profile, circle)
                                WHERE v.within <> (v.distance_m IS NOT NULL AND v.distance_m <= b.distance_m)""")
        ).scalar()
        assert bad == 0
        # the recorded facility is of the right category and not farther than straight-line allows
        wrong = c.execute(
            text("""SELECT count(*) FROM building_access a JOIN facility f ON f.id = a.facility_id
                                  JOIN building b ON b.id = a.building_id
                                  WHERE a.category_code = 'weisheng' AND (f.category_code <> 'weisheng'
                                     OR ST_Distance(ST_Transform(f.geom, 4548), ST_Transform(b.pos, 4548)) > a.distance_m + 0.5)""")
        ).scalar()
        assert wrong == 0
        # figures: the street total equals the buildings; shares computed from stored distances
        row = c.execute(
            text("""SELECT sum(buildings) AS buildings, sum(buildings_in) AS buildings_in FROM coverage_figure
                                WHERE level = 'street' AND item = 'weisheng' AND profile = 'standard'
                                AND circle = 'c10'""")
        ).one()
        inside = c.execute(
            text("""SELECT count(*) FROM building_access WHERE category_code = 'weisheng'
                                   AND distance_m <= 500""")
        ).scalar()
        assert row.buildings == nb and row.buildings_in == inside
        run = c.execute(text("SELECT method, finished_at IS NOT NULL FROM coverage_run ORDER BY id DESC LIMIT 1")).one()
        assert run == ("network", True)
        # the river crossing: the sample has no health facility across the river in its under-served
        # communities, so some buildings are beyond the 15-minute circle
        assert (
            c.execute(
                text(
                    "SELECT count(*) FROM building_access WHERE category_code = 'weisheng' "
                    "AND (distance_m IS NULL OR distance_m > 1000)"
                )
            ).scalar()
            > 0
        )


def test_stored_distances_match_the_model(ceng):
    svc = CoverageService()
    with ceng.connect() as c:
        svc.ensure_model(c)
        t = svc.table(c)
        assert svc.table_stored
        fresh = svc.model.compute(svc.catalog(), ["weisheng", "xuexiao"])
    for k in ("weisheng", "xuexiao"):
        a, b = t.dist[:, t.col(k)], fresh.dist[:, fresh.col(k)]
        assert np.array_equal(np.isinf(a), np.isinf(b))
        assert np.allclose(a[np.isfinite(a)], b[np.isfinite(b)], atol=0.01)


@pytest.fixture
def cli_env(monkeypatch, city_url, tmp_path):
    monkeypatch.setenv("GISGOV_DATABASE_URL", city_url)
    monkeypatch.setenv("GISGOV_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield city_url
    get_settings.cache_clear()


def test_cli_report_site_whatif_help(cli_env, ceng):
    from gisgov.cli.main import app

    with ceng.connect() as c:
        comm = c.execute(text("SELECT code FROM community ORDER BY code LIMIT 1")).scalar()
        fid = c.execute(text("SELECT id FROM facility WHERE category_code = 'weisheng' ORDER BY id LIMIT 1")).scalar()
    r = runner.invoke(app, ["coverage", "report", "--level", "community", "--code", comm], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "卫生 Health" in r.output and "c15 (≤1000 m)" in r.output and "Complete circles" in r.output
    r = runner.invoke(app, ["coverage", "report", "--level", "community", "--code", "999999999999"])
    assert r.exit_code == 4 and "has no buildings" in r.output
    r = runner.invoke(app, ["coverage", "site", "--category", "weisheng", "--k", "2", "--circle", "c10", "--json"])
    assert r.exit_code == 0, r.output
    import json

    out = json.loads(r.output)
    assert out["problem"] == "mclp" and len(out["sites"]) <= 2 and out["solver"] in ("highs", "greedy", "none")
    r = runner.invoke(
        app, ["coverage", "whatif", "--category", "weisheng", "--remove", str(fid)], env={"COLUMNS": "200"}
    )
    assert r.exit_code == 0, r.output
    assert "not saved" in r.output
    r = runner.invoke(app, ["coverage", "catalog"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "GB 50180-2018" in r.output
    for cmd in ("compute", "report", "site", "whatif", "map", "catalog"):
        r = runner.invoke(app, ["coverage", cmd, "--help"])
        assert r.exit_code == 0 and "Usage" in r.output


def test_cli_compute_one_category(cli_env, ceng):
    from gisgov.cli.main import app

    with ceng.connect() as c:
        before = c.execute(text("SELECT max(id) FROM coverage_run")).scalar()
    r = runner.invoke(app, ["coverage", "compute", "--category", "wenhua"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "1 categories" in r.output and "method=network" in r.output
    with ceng.connect() as c:
        run = c.execute(text("SELECT id, categories FROM coverage_run ORDER BY id DESC LIMIT 1")).one()
        assert run.id > before and run.categories == ["wenhua"]
        assert (
            c.execute(
                text("SELECT count(DISTINCT run_id) FROM building_access WHERE category_code = 'wenhua'")
            ).scalar()
            == 1
        )


# --- API ------------------------------------------------------------------------------------------------

SETTINGS = Settings(login_rate_per_minute=1000)


@pytest.fixture(scope="module")
def client(city_url):
    """Signed in as an admin (whole city); ``as_(client, url, role, scope)`` gives other accounts' headers."""
    with signed_in_client(SETTINGS, city_url, role="admin") as c:
        yield c


def as_(client, url: str, role: str, scope: str) -> dict:
    return {"Authorization": f"Bearer {bearer_token(client, ensure_user(url, role, scope))}"}


def audit_rows(ceng, action: str) -> list:
    with ceng.connect() as c:
        return c.execute(
            text("SELECT actor, actor_role, object, result, detail FROM audit_log WHERE action = :a ORDER BY id"),
            {"a": action},
        ).all()


def test_api_summary_areas_gaps(client, ceng):
    with ceng.connect() as c:
        comm = c.execute(text("SELECT code FROM community ORDER BY code LIMIT 1")).scalar()
    r = client.get("/api/coverage/summary", params={"level": "community", "code": comm, "profile": "elderly"})
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["stored"] and s["method"] == "network"
    w = [x for x in s["rows"] if x["item"] == "weisheng" and x["circle"] == "c10"]
    assert len(w) == 1 and w[0]["profile"] == "elderly" and w[0]["budget_m"] == pytest.approx(480)
    assert 0 <= w[0]["share_households"] <= 1
    assert any(x["item_kind"] == "complete" and x["item"] == "party10" for x in s["rows"])
    r = client.get("/api/coverage/summary", params={"level": "district", "code": comm})
    assert r.status_code == 422
    r = client.get("/api/coverage/areas", params={"category": "weisheng", "circle": "c10"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    fc = r.json()
    assert fc["features"][0]["geometry"]["type"] in ("Polygon", "MultiPolygon")
    assert fc["features"][0]["properties"]["budget_m"] == 500
    r = client.get("/api/coverage/areas", params={"category": "nope"})
    assert r.status_code == 422 and "unknown service category" in r.json()["detail"]
    r = client.get("/api/coverage/gaps", params={"category": "weisheng", "circle": "c10"})
    assert r.status_code == 200
    gaps = r.json()["features"]
    with ceng.connect() as c:
        beyond = c.execute(
            text(
                "SELECT count(*) FROM building_access WHERE category_code = 'weisheng' "
                "AND (distance_m IS NULL OR distance_m > 500)"
            )
        ).scalar()
    assert sum(f["properties"]["buildings"] for f in gaps) == beyond


def test_api_areas_acceptance_on_the_sample_city(client, ceng):
    """No building beyond the budget inside the dissolved area; ≥ 99 % of those within it inside."""
    import shapely

    for cat, circle, budget in (("weisheng", "c10", 500), ("xuexiao", "c5", 300)):
        fc = client.get("/api/coverage/areas", params={"category": cat, "circle": circle}).json()
        area = shapely.geometry.shape(fc["features"][0]["geometry"])
        with ceng.connect() as c:
            rows = c.execute(
                text("""SELECT ST_X(b.pos), ST_Y(b.pos), a.distance_m FROM building b
                                     JOIN building_access a ON a.building_id = b.id AND a.category_code = :c"""),
                {"c": cat},
            ).all()
        x = np.array([r[0] for r in rows])
        y = np.array([r[1] for r in rows])
        d = np.array([np.inf if r[2] is None else r[2] for r in rows])
        inside = shapely.contains_xy(area, x, y)
        reach = d <= budget
        assert not (inside & ~reach).any()
        assert inside[reach].mean() >= 0.99


def test_api_site_and_map(client):
    r = client.post("/api/coverage/site", json={"category": "weisheng", "k": 2, "circle": "c10"})
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["problem"] == "mclp" and s["covered_households"] == pytest.approx(
        sum(x["households_gained"] for x in s["sites"])
    )
    r = client.post("/api/coverage/site", json={"category": "weisheng", "fewest": True, "circle": "c10"})
    assert r.status_code == 200 and r.json()["problem"] == "lscp"
    assert r.json()["covered_buildings"] + r.json()["uncoverable_buildings"] == r.json()["demand_buildings"]
    r = client.get("/coverage/map", params={"category": "weisheng", "circle": "c10", "sites": 2})
    assert r.status_code == 200
    html = r.text
    assert "/static/vendor/" in html and "leaflet" in html
    assert "cdn" not in html.lower() and "unpkg" not in html
    from gisgov.maps.offline import external_asset_urls

    assert external_asset_urls(html) == []
    import json

    for label in ("服务圈 Service area", "建议选址 Suggested sites", "服务盲区 Gaps", "楼栋 Buildings by distance"):
        assert label in html or json.dumps(label)[1:-1] in html, label


def test_api_graph_is_built_once_and_rebuilt_when_roads_change(client, ceng):
    svc = client.app.state.coverage
    with ceng.connect() as c:
        comm = c.execute(text("SELECT code FROM community ORDER BY code LIMIT 1")).scalar()
    client.get("/api/coverage/summary", params={"level": "community", "code": comm})
    n = svc.builds
    for _ in range(3):
        assert client.get("/api/coverage/summary", params={"level": "community", "code": comm}).status_code == 200
    assert svc.builds == n
    # an isolated path next to a building: the graph is rebuilt, the piece reported, the building flagged
    with ceng.begin() as c:
        bid, x, y = c.execute(text("SELECT id, ST_X(pos), ST_Y(pos) FROM building ORDER BY id LIMIT 1")).one()
        c.execute(
            text("""INSERT INTO road_node (id, geom) VALUES
                          (900001, ST_SetSRID(ST_MakePoint(:x - 0.0001, :y + 0.00001), 4490)),
                          (900002, ST_SetSRID(ST_MakePoint(:x + 0.0001, :y + 0.00001), 4490))"""),
            {"x": x, "y": y},
        )
        c.execute(
            text("""INSERT INTO road_edge (source, target, class, length_m, geom)
                          SELECT 900001, 900002, 'path', gisgov_length_m(ST_MakeLine(a.geom, b.geom)), ST_MakeLine(a.geom, b.geom)
                          FROM road_node a, road_node b WHERE a.id = 900001 AND b.id = 900002""")
        )
    try:
        r = client.post("/api/coverage/compute", json={"categories": ["weisheng"]})
        assert r.status_code == 200, r.text
        assert svc.builds == n + 1
        comps = r.json()["components"]
        assert len(comps) >= 2 and comps[1]["edges"] >= 1
        with ceng.connect() as c:
            flags, dist = c.execute(
                text("""SELECT s.flags, a.distance_m FROM building_snap s JOIN building_access a
                                            ON a.building_id = s.building_id AND a.category_code = 'weisheng'
                                            WHERE s.building_id = :b"""),
                {"b": bid},
            ).one()
        # ~1 m from the isolated path but within network.fragment_extra_m of the main street: joins the main one
        assert "main_preferred" in flags and "minor_component" not in flags and dist is not None
    finally:
        with ceng.begin() as c:
            c.execute(text("DELETE FROM road_node WHERE id IN (900001, 900002)"))
        assert client.post("/api/coverage/compute", json={"categories": ["weisheng"]}).status_code == 200


def test_api_whatif_commit_updates_only_its_categories(client, ceng):
    site = client.post("/api/coverage/site", json={"category": "weisheng", "k": 1, "circle": "c10"}).json()["sites"][0]
    with ceng.connect() as c:
        before = dict(
            c.execute(
                text("""SELECT category_code, sum(coalesce(distance_m, 1e6))::float FROM building_access
                                        GROUP BY 1""")
            ).all()
        )
        runs = dict(c.execute(text("SELECT category_code, max(run_id) FROM building_access GROUP BY 1")).all())
        fig_b = c.execute(
            text("""SELECT sum(buildings_in) FROM coverage_figure WHERE level = 'street' AND item = 'weisheng'
                                  AND profile = 'standard' AND circle = 'c10'""")
        ).scalar()
        n_fac = c.execute(text("SELECT count(*) FROM facility")).scalar()
    preview = client.post(
        "/api/coverage/whatif", json={"category": "weisheng", "op": "add", "lon": site["lon"], "lat": site["lat"]}
    ).json()
    assert preview["committed"] is False and preview["changed_buildings"] >= site["buildings_gained"]
    r = client.post(
        "/api/coverage/whatif",
        json={
            "category": "weisheng",
            "op": "add",
            "lon": site["lon"],
            "lat": site["lat"],
            "commit": True,
            "kind": "社区卫生服务站",
        },
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["committed"] and "weisheng" in out["categories_updated"]
    assert set(out["categories_updated"]) == {"weisheng", "gb_health_station"}
    with ceng.connect() as c:
        after = dict(
            c.execute(
                text("""SELECT category_code, sum(coalesce(distance_m, 1e6))::float FROM building_access
                                       GROUP BY 1""")
            ).all()
        )
        runs2 = dict(c.execute(text("SELECT category_code, max(run_id) FROM building_access GROUP BY 1")).all())
        fig_a = c.execute(
            text("""SELECT sum(buildings_in) FROM coverage_figure WHERE level = 'street' AND item = 'weisheng'
                                  AND profile = 'standard' AND circle = 'c10'""")
        ).scalar()
        inside = c.execute(
            text("""SELECT count(*) FROM building_access WHERE category_code = 'weisheng'
                                   AND distance_m <= 500""")
        ).scalar()
        assert c.execute(text("SELECT count(*) FROM facility")).scalar() == n_fac + 1
    for k in before:
        if k in out["categories_updated"]:
            assert after[k] < before[k] and runs2[k] > runs[k]
        else:
            assert after[k] == pytest.approx(before[k]) and runs2[k] == runs[k]
    assert fig_a == inside and fig_a - fig_b == site["buildings_gained"]
    # and back: remove it again (committed), the figures return
    r = client.post(
        "/api/coverage/whatif",
        json={"category": "weisheng", "op": "remove", "facility_id": out["facility_id"], "commit": True},
    )
    assert r.status_code == 200, r.text
    with ceng.connect() as c:
        again = c.execute(
            text("""SELECT sum(buildings_in) FROM coverage_figure WHERE level = 'street' AND item = 'weisheng'
                                  AND profile = 'standard' AND circle = 'c10'""")
        ).scalar()
    assert again == fig_b


# --- who may see and change what -------------------------------------------------------------------------


def _two_communities(ceng):
    with ceng.connect() as c:
        a, b = (
            c.execute(
                text("""SELECT community_code FROM building GROUP BY 1 HAVING count(*) > 20
                                 ORDER BY 1 LIMIT 2""")
            )
            .scalars()
            .all()
        )
        street = c.execute(text("SELECT street_code FROM community WHERE code = :a"), {"a": a}).scalar()
    return a, b, street


def test_api_coverage_is_limited_to_the_callers_area(client, ceng, city_url):
    import shapely
    from shapely.geometry import shape

    a, b, street = _two_communities(ceng)
    planner = as_(client, city_url, "planner", a)
    # a unit outside the area (a sibling community, the street above it, a compound of the sibling): 404
    assert (
        client.get("/api/coverage/summary", headers=planner, params={"level": "community", "code": a}).status_code
        == 200
    )
    with ceng.connect() as c:
        comp_b = c.execute(text("SELECT code FROM compound WHERE community_code = :b LIMIT 1"), {"b": b}).scalar()
    for level, code in (("community", b), ("street", street), ("compound", comp_b)):
        r = client.get("/api/coverage/summary", headers=planner, params={"level": level, "code": code})
        assert r.status_code == 404, (level, code, r.text)
        r = client.get(
            "/api/coverage/gaps", headers=planner, params={"category": "weisheng", "level": level, "code": code}
        )
        assert r.status_code == 404
    # the same figures as the admin's for the planner's own community
    mine = client.get("/api/coverage/summary", headers=planner, params={"level": "community", "code": a}).json()
    admin = client.get("/api/coverage/summary", params={"level": "community", "code": a}).json()
    assert mine["rows"] == admin["rows"] and sum(r["residents"] for r in mine["rows"]) > 0
    # gaps: only buildings of the planner's community beyond the circle
    gaps = client.get("/api/coverage/gaps", headers=planner, params={"category": "weisheng", "circle": "c10"}).json()
    with ceng.connect() as c:
        beyond_a = c.execute(
            text("""SELECT count(*) FROM building_access x JOIN building y ON y.id = x.building_id
                                     WHERE x.category_code = 'weisheng' AND y.community_code = :a
                                     AND (x.distance_m IS NULL OR x.distance_m > 500)"""),
            {"a": a},
        ).scalar()
        outline = shapely.from_wkb(
            bytes(c.execute(text("SELECT ST_AsBinary(geom) FROM community WHERE code = :a"), {"a": a}).scalar())
        )
        in_a = c.execute(
            text("""SELECT count(*) FROM building_access x JOIN building y ON y.id = x.building_id
                                 WHERE x.category_code = 'weisheng' AND y.community_code = :a AND x.distance_m <= 1000"""),
            {"a": a},
        ).scalar()
    assert beyond_a > 0 and sum(f["properties"]["buildings"] for f in gaps["features"]) == beyond_a
    near = outline.buffer(1e-6)
    assert all(near.covers(shape(f["geometry"])) for f in gaps["features"] if f["geometry"])
    # service area: cut to the community's outline, counting its buildings only
    area = client.get("/api/coverage/areas", headers=planner, params={"category": "weisheng", "circle": "c15"}).json()
    f = area["features"][0]
    assert f["properties"]["buildings_in"] == in_a and f["properties"]["budget_m"] == 1000
    assert f["geometry"] is None or near.covers(shape(f["geometry"]))
    whole = client.get("/api/coverage/areas", params={"category": "weisheng", "circle": "c15"}).json()["features"][0]
    assert whole["properties"]["buildings_in"] > in_a
    assert not near.covers(shape(whole["geometry"]))
    # the map page: the community's buildings, none of the sibling's
    with ceng.connect() as c:
        ba = c.execute(text("SELECT code FROM building WHERE community_code = :a LIMIT 1"), {"a": a}).scalar()
        bb = c.execute(text("SELECT code FROM building WHERE community_code = :b LIMIT 1"), {"b": b}).scalar()
    viewer = as_(client, city_url, "viewer", a)
    html = client.get("/coverage/map", headers=viewer, params={"category": "weisheng", "circle": "c10"}).text
    assert ba in html and bb not in html
    assert bb in client.get("/coverage/map", params={"category": "weisheng", "circle": "c10", "sites": 0}).text


def test_api_special_groups_small_cells_for_aggregate_roles(client, ceng, city_url):
    with ceng.connect() as c:
        row = c.execute(
            text("""SELECT level, code FROM coverage_group_figure WHERE level = 'compound'
                                AND residents BETWEEN 1 AND 4 ORDER BY code LIMIT 1""")
        ).one()
        comm = c.execute(text("SELECT community_code FROM compound WHERE code = :c"), {"c": row.code}).scalar()
    params = {"level": row.level, "code": row.code}
    admin = client.get("/api/coverage/summary", params=params).json()["special_groups"]
    assert any(isinstance(g["residents"], int) and 1 <= g["residents"] <= 4 for g in admin)
    for role in ("planner", "viewer"):
        got = client.get("/api/coverage/summary", headers=as_(client, city_url, role, comm), params=params).json()
        groups = got["special_groups"]
        assert len(groups) == len(admin) and any(g["residents"] == "<5" for g in groups)
        for g in groups:
            for k in ("residents", "beyond"):
                assert not (isinstance(g[k], int) and 0 <= g[k] <= 4), g
            if isinstance(g["residents"], int) and isinstance(g["beyond"], int):
                assert not 0 <= g["residents"] - g["beyond"] <= 4, g
            assert set(g) == {
                "level",
                "code",
                "group_code",
                "category",
                "profile",
                "circle",
                "residents",
                "beyond",
                "suppressed",
            }
    # community staff handle special groups in their own community: exact counts
    staff = client.get("/api/coverage/summary", headers=as_(client, city_url, "community_staff", comm), params=params)
    assert staff.json()["special_groups"] == admin


def _bounds(value, residents: int, k: int = 5) -> tuple[int, int]:
    """What a reader knows about one figure (written independently of the suppression code)."""
    if residents == 0:
        return 0, 0
    if isinstance(value, int):
        return value, value
    if value is None:
        return 0, residents
    if value == f"<{k}":
        return 0, min(k - 1, residents)
    assert value == f"≥{k}", value
    return k, residents


def _tighten(lo: dict, hi: dict, relations: list[tuple]) -> None:
    """Interval propagation over ``total = sum(parts)`` until nothing changes (in place)."""
    changed = True
    while changed:
        changed = False
        for total, parts in relations:
            s_lo, s_hi = sum(lo[x] for x in parts), sum(hi[x] for x in parts)
            if s_lo > lo[total] or s_hi < hi[total]:
                lo[total], hi[total], changed = max(lo[total], s_lo), min(hi[total], s_hi), True
            for x in parts:
                n_lo = lo[total] - (s_hi - hi[x])
                n_hi = hi[total] - (s_lo - lo[x])
                if n_lo > lo[x] or n_hi < hi[x]:
                    s_lo, s_hi = s_lo + max(n_lo - lo[x], 0), s_hi - max(hi[x] - n_hi, 0)
                    lo[x], hi[x], changed = max(lo[x], n_lo), min(hi[x], n_hi), True


def test_api_special_groups_street_minus_communities_reveals_no_small_cell(client, ceng, city_url):
    """A street-bound viewer reads the street summary and every community summary: for each rule,
    street = sum of its communities (members, beyond, and members within = members − beyond), and
    members = beyond + within in each unit. No small figure (beyond, within or members, below 5 and not
    a structural zero) can be pinned to one value from what the pages show, and a group's members look
    exactly as on /api/stats for the same unit."""
    _, _, street = _two_communities(ceng)
    viewer = as_(client, city_url, "viewer", street)
    with ceng.connect() as c:
        comms = (
            c.execute(text("SELECT code FROM community WHERE street_code = :s ORDER BY code"), {"s": street})
            .scalars()
            .all()
        )
    units = [("street", street)] + [("community", c) for c in comms]
    shown, truth, residents = {}, {}, {}
    for level, code in units:
        params = {"level": level, "code": code}
        r = client.get("/api/coverage/summary", headers=viewer, params=params)
        assert r.status_code == 200, r.text
        shown[code] = {
            (g["group_code"], g["category"], g["profile"], g["circle"]): g for g in r.json()["special_groups"]
        }
        truth[code] = {
            (g["group_code"], g["category"], g["profile"], g["circle"]): g
            for g in client.get("/api/coverage/summary", params=params).json()["special_groups"]
        }
        stats = client.get(f"/api/stats/{level}/{code}", headers=viewer)
        assert stats.status_code == 200, stats.text
        doc = stats.json()
        assert doc["suppression"]["k"] == 5
        residents[code] = doc["stats"]["residents"]
        assert shown[code].keys() == truth[code].keys() and shown[code]
        for key, g in shown[code].items():
            # the group's members: the same figure, shown the same way, as in the statistics
            assert g["residents"] == doc["stats"]["special"]["groups"][key[0]], (code, key)
            exact = truth[code][key]
            for f in ("residents", "beyond"):
                v, t = g[f], exact[f]
                if isinstance(v, int):
                    assert v == t and (t >= 5 or residents[code] == 0), (code, key, f, v)
                elif v == "<5":
                    assert t < 5
                elif v == "≥5":
                    assert t >= 5
                else:
                    assert v is None
                assert (f in g["suppressed"]) == (not isinstance(v, int))
            if g["residents"] != exact["residents"]:  # a suppressed total: its beyond count is suppressed too
                assert not isinstance(g["beyond"], int), (code, key, g)
    small = suppressed_seen = 0
    for key in shown[street]:
        lo, hi, rel = {}, {}, []
        for code in shown:
            g = shown[code][key]
            for f in ("residents", "beyond"):
                lo[(f, code)], hi[(f, code)] = _bounds(g[f], residents[code])
            lo[("within", code)], hi[("within", code)] = 0, residents[code]
            rel.append((("residents", code), (("beyond", code), ("within", code))))
        for f in ("residents", "beyond", "within"):
            rel.append(((f, street), tuple((f, c) for c in comms)))
        assert sum(residents[c] for c in comms) == residents[street]  # no rest: every building is in a community
        _tighten(lo, hi, rel)
        for code in shown:
            exact = truth[code][key]
            real = {
                "residents": exact["residents"],
                "beyond": exact["beyond"],
                "within": exact["residents"] - exact["beyond"],
            }
            for f, v in real.items():
                assert lo[(f, code)] <= v <= hi[(f, code)], (code, key, f)  # the reasoning is sound
                if v < 5 and residents[code] > 0:
                    small += 1
                    assert lo[(f, code)] < hi[(f, code)], (code, key, f, v, shown[code][key])
                if f != "within" and not isinstance(shown[code][key][f], int):
                    suppressed_seen += 1
    assert small > 0 and suppressed_seen > 0  # the sample has small cells at these levels


def test_api_model_is_the_same_whoever_loads_it(city_url, ceng):
    """A fresh app whose first coverage request comes from a community-bound planner loads the whole city."""
    a, b, _ = _two_communities(ceng)
    with signed_in_client(SETTINGS, city_url, role="planner", scope=a) as c:
        r = c.get("/api/coverage/summary", params={"level": "community", "code": a})
        assert r.status_code == 200, r.text
        svc = c.app.state.coverage
        with ceng.connect() as o:
            nb = o.execute(text("SELECT count(*) FROM building")).scalar()
            nres = o.execute(text("SELECT count(*) FROM resident")).scalar()
            ngrp = o.execute(text("SELECT count(*) FROM resident_group")).scalar()
        assert len(svc.model.buildings) == nb
        assert int(svc.model.buildings["residents"].sum()) == nres
        assert int(svc.groups["residents"].sum()) == ngrp
        n = svc.builds
        other = {"Authorization": f"Bearer {bearer_token(c, ensure_user(city_url, 'planner', b))}"}
        assert (
            c.get("/api/coverage/summary", headers=other, params={"level": "community", "code": b}).status_code == 200
        )
        assert svc.builds == n  # no reload for another caller


def test_api_analyses_need_the_permission_and_are_audited(client, ceng, city_url):
    a, b, _ = _two_communities(ceng)
    viewer = as_(client, city_url, "viewer", a)
    with ceng.connect() as c:
        n_fac = c.execute(text("SELECT count(*) FROM facility")).scalar()
        x, y = c.execute(
            text("SELECT ST_X(pos), ST_Y(pos) FROM building WHERE community_code = :a ORDER BY id LIMIT 1"), {"a": a}
        ).one()
        bx, by = c.execute(
            text("SELECT ST_X(pos), ST_Y(pos) FROM building WHERE community_code = :b ORDER BY id LIMIT 1"), {"b": b}
        ).one()
    add = {"category": "weisheng", "op": "add", "lon": x, "lat": y, "commit": True, "kind": "社区卫生服务站"}
    n_edit = len(audit_rows(ceng, "facility_edit"))
    assert client.post("/api/coverage/whatif", headers=viewer, json=add).status_code == 403
    assert client.post("/api/coverage/whatif", headers=viewer, json={**add, "commit": False}).status_code == 403
    assert client.post("/api/coverage/site", headers=viewer, json={"category": "weisheng", "k": 1}).status_code == 403
    assert client.post("/api/coverage/compute", headers=viewer, json={"categories": ["wenhua"]}).status_code == 403
    assert client.get("/api/coverage/catalog", headers=viewer).status_code == 200
    # a planner may commit inside the own community only
    planner = as_(client, city_url, "planner", a)
    r = client.post("/api/coverage/whatif", headers=planner, json={**add, "lon": bx, "lat": by})
    assert r.status_code == 404, r.text
    with ceng.connect() as c:
        assert c.execute(text("SELECT count(*) FROM facility")).scalar() == n_fac
    assert len(audit_rows(ceng, "facility_edit")) == n_edit
    # bearer, form-encoded: refused before anything runs
    assert (
        client.post("/api/coverage/whatif", headers=planner, data={"category": "weisheng", "op": "add"}).status_code
        == 415
    )
    r = client.post("/api/coverage/whatif", headers=planner, json=add)
    assert r.status_code == 200, r.text
    fid = r.json()["facility_id"]
    rows = audit_rows(ceng, "facility_edit")
    assert len(rows) == n_edit + 1 and rows[-1].object == f"facility/{fid}" and rows[-1].actor_role == "planner"
    # a facility of the sibling community cannot be removed by this planner
    with ceng.connect() as c:
        fb = c.execute(
            text("""SELECT f.id FROM facility f JOIN community m ON ST_Intersects(m.geom, f.geom)
                               WHERE m.code = :b AND f.category_code = 'weisheng' LIMIT 1"""),
            {"b": b},
        ).scalar()
    if fb is not None:
        r = client.post(
            "/api/coverage/whatif",
            headers=planner,
            json={"category": "weisheng", "op": "remove", "facility_id": fb, "commit": True},
        )
        assert r.status_code == 404
    r = client.post(
        "/api/coverage/whatif",
        headers=planner,
        json={"category": "weisheng", "op": "remove", "facility_id": fid, "commit": True},
    )
    assert r.status_code == 200, r.text
    assert len(audit_rows(ceng, "facility_edit")) == n_edit + 2
    with ceng.connect() as c:
        assert c.execute(text("SELECT count(*) FROM facility")).scalar() == n_fac
    # compute: one "analysis" row per run
    n_an = len(audit_rows(ceng, "analysis"))
    r = client.post("/api/coverage/compute", headers=planner, json={"categories": ["wenhua"]})
    assert r.status_code == 200, r.text
    rows = audit_rows(ceng, "analysis")
    assert len(rows) == n_an + 1 and rows[-1].object == f"coverage_run/{r.json()['run_id']}"


def test_api_cookie_writes_need_csrf(city_url, ceng):
    a, _, _ = _two_communities(ceng)
    with ceng.connect() as c:
        n_fac = c.execute(text("SELECT count(*) FROM facility")).scalar()
        x, y = c.execute(
            text("SELECT ST_X(pos), ST_Y(pos) FROM building WHERE community_code = :a ORDER BY id LIMIT 1"), {"a": a}
        ).one()
    add = {"category": "weisheng", "op": "add", "lon": x, "lat": y, "commit": True}
    with signed_in_client(SETTINGS, city_url, role="planner", scope=a, cookie=True) as page:
        token = page.headers.pop("X-CSRF-Token")
        page.headers.pop("Origin")
        for headers in ({"Origin": SETTINGS.origin}, {"Origin": "http://evil.example", "X-CSRF-Token": token}):
            r = page.post("/api/coverage/whatif", headers=headers, json=add)
            assert r.status_code == 403, r.text
        r = page.post(
            "/api/coverage/compute",
            headers={"Origin": "http://evil.example"},
            content=b"",
        )
        assert r.status_code == 403
    with ceng.connect() as c:
        assert c.execute(text("SELECT count(*) FROM facility")).scalar() == n_fac
