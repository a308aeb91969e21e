"""The coverage page's API and its cache (issue 12 item 5, issue 14 item 2): service areas and gaps cached per
computation run give the same GeoJSON as a fresh computation, a new run invalidates them, concurrent first
requests compute once, a restarted app reads them from its home folder without loading the walking model,
and every answer stays in the caller's area."""

from __future__ import annotations

import json
import threading

import pytest
import shapely
from auth_helpers import app_engine, bearer_token, ensure_user, signed_in_client
from fastapi.testclient import TestClient
from sample_fixtures import small_city_db
from sqlalchemy import create_engine, pool, text

from gisgov.api.app import create_app
from gisgov.api.deps import system_scope
from gisgov.config import Settings
from gisgov.coverage.cache import CoverageCache
from gisgov.coverage.service import CoverageService, ScopedCoverage
from gisgov.crs import WGS84

Q = {"category": "weisheng", "circle": "c10", "profile": "standard"}


@pytest.fixture(scope="module")
def city_url(db_factory):
    """A fresh database with a small sample city (scale 0.4) and coverage computed and stored."""
    return small_city_db(db_factory, "gisgov_test_covpage")


@pytest.fixture(scope="module")
def ceng(city_url):
    eng = create_engine(city_url, poolclass=pool.NullPool)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def codes(ceng):
    with ceng.connect() as c:
        streets = [r[0] for r in c.execute(text("SELECT code FROM street ORDER BY code"))]
        comms = [r[0] for r in c.execute(text("SELECT code FROM community ORDER BY code"))]
    assert len(streets) >= 2
    return {"streets": streets, "communities": comms}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("covhome")


@pytest.fixture(scope="module")
def client(city_url, home):
    with signed_in_client(Settings(home=home), city_url, role="admin") as c:
        yield c


def headers(client, url: str, role: str, scope: str) -> dict:
    return {"Authorization": f"Bearer {bearer_token(client, ensure_user(url, role, scope))}"}


def fresh(ceng, what: str, scope: str = "", **kw) -> dict:
    """What the service computes without any cache, as the route serialises it."""
    svc = CoverageService()
    with ceng.begin() as conn:
        system_scope(conn)
        view = ScopedCoverage(svc, scope) if scope else svc
        if what == "areas":
            gdf = view.service_area(conn, Q["category"], Q["circle"], Q["profile"])
        else:
            gdf = view.gaps(conn, Q["category"], Q["circle"], Q["profile"])
    return json.loads(gdf.to_crs(WGS84).to_json(drop_id=True, na="null"))


def test_cache_hit_is_the_fresh_computation(client, ceng):
    cache = client.app.state.coverage_cache
    before = cache.computations
    first = client.get("/api/coverage/areas", params=Q)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"].startswith("application/geo+json")
    again = client.get("/api/coverage/areas", params=Q)
    assert again.text == first.text
    assert cache.computations == before + 1  # the second answer came from the cache
    assert first.json() == fresh(ceng, "areas")
    g = client.get("/api/coverage/gaps", params=Q)
    assert g.status_code == 200
    assert g.json() == fresh(ceng, "gaps")
    assert len(g.json()["features"]) > 0  # the sample city has gaps at 10 minutes
    assert cache.computations == before + 1  # areas and gaps share one entry


def test_scoped_answers_equal_a_fresh_scoped_computation(client, city_url, ceng, codes):
    street = codes["streets"][0]
    h = headers(client, city_url, "street_leader", street)
    a = client.get("/api/coverage/areas", params=Q, headers=h)
    assert a.status_code == 200
    assert a.json() == fresh(ceng, "areas", street)
    g = client.get("/api/coverage/gaps", params=Q, headers=h)
    assert g.json() == fresh(ceng, "gaps", street)


def test_display_tolerance_simplifies(client):
    exact = client.get("/api/coverage/areas", params=Q).json()["features"][0]["geometry"]
    simple = client.get("/api/coverage/areas", params={**Q, "tolerance_m": 3}).json()["features"][0]["geometry"]
    n = lambda g: len(shapely.get_coordinates(shapely.geometry.shape(g)))  # noqa: E731
    assert n(simple) < n(exact)
    a, b = shapely.geometry.shape(exact), shapely.geometry.shape(simple)
    assert abs(a.area - b.area) / a.area < 0.02
    assert client.get("/api/coverage/areas", params={**Q, "tolerance_m": 1e9}).status_code == 422


def test_scope_is_respected(client, city_url, ceng, codes):
    mine, other = codes["streets"][0], codes["streets"][1]
    h = headers(client, city_url, "street_leader", mine)
    with ceng.connect() as c:
        outline = {
            s: shapely.from_wkb(
                bytes(c.execute(text("SELECT ST_AsBinary(geom) FROM street WHERE code = :s"), {"s": s}).scalar())
            )
            for s in (mine, other)
        }
        ids_mine = {
            r[0] for r in c.execute(text("SELECT id FROM building WHERE community_code LIKE :s || '%'"), {"s": mine})
        }
    area = shapely.geometry.shape(
        client.get("/api/coverage/areas", params=Q, headers=h).json()["features"][0]["geometry"]
    )
    assert area.intersection(outline[other]).area < 1e-6 * max(area.area, 1e-12) + 1e-12
    for f in client.get("/api/coverage/gaps", params=Q, headers=h).json()["features"]:
        assert shapely.geometry.shape(f["geometry"]).difference(outline[mine].buffer(1e-7)).area < 1e-12
    b = client.get("/api/coverage/buildings", params=Q, headers=h).json()["features"]
    assert {f["properties"]["id"] for f in b} == ids_mine
    assert {f["properties"]["cls"] for f in b} <= {"within", "near", "beyond"}
    rows = client.get("/api/coverage/communities", params=Q, headers=h).json()["rows"]
    assert rows and all(r["code"].startswith(mine) for r in rows)
    everyone = client.get("/api/coverage/communities", params=Q).json()["rows"]
    assert any(r["code"].startswith(other) for r in everyone)
    # the per-community figures add up to the stored figures of the street
    with ceng.connect() as c:
        hh, hin = c.execute(
            text(
                "SELECT households, households_in FROM coverage_figure WHERE level = 'street' AND code = :s "
                "AND item = :i AND circle = :c AND profile = :p"
            ),
            {"s": mine, "i": Q["category"], "c": Q["circle"], "p": Q["profile"]},
        ).one()
    assert sum(r["households"] for r in rows) == pytest.approx(hh)
    assert sum(r["households_in"] for r in rows) == pytest.approx(hin)
    # a community account: its community only; another street's unit is 404
    comm = next(c for c in codes["communities"] if c.startswith(mine))
    hc = headers(client, city_url, "planner", comm)
    rows = client.get("/api/coverage/communities", params=Q, headers=hc).json()["rows"]
    assert [r["code"] for r in rows] == [comm]
    r = client.get("/api/coverage/gaps", params={**Q, "level": "street", "code": other}, headers=h)
    assert r.status_code == 404


def test_facilities_and_buildings_classes(client, ceng):
    fc = client.get("/api/coverage/facilities", params=Q).json()["features"]
    with ceng.connect() as c:
        n = c.execute(text("SELECT count(*) FROM facility")).scalar()
    assert 0 < len(fc) <= n
    assert set(fc[0]["properties"]) == {"id", "name", "kind", "category"}
    b = client.get("/api/coverage/buildings", params=Q).json()["features"]
    within = sum(1 for f in b if f["properties"]["cls"] == "within")
    area = client.get("/api/coverage/areas", params=Q).json()["features"][0]["properties"]
    assert within == area["buildings_in"]
    assert all(
        (f["properties"]["distance_m"] is None or f["properties"]["distance_m"] > 500)
        == (f["properties"]["cls"] != "within")
        for f in b
    )


def test_bad_inputs_are_4xx(client):
    for params in ({**Q, "category": "nope"}, {**Q, "circle": "c99"}, {**Q, "profile": "x"}):
        for path in ("/api/coverage/areas", "/api/coverage/communities", "/api/coverage/buildings"):
            r = client.get(path, params=params)
            assert 400 <= r.status_code < 500, (path, params, r.status_code)


def test_sites_name_their_community(client, ceng):
    r = client.post("/api/coverage/site", json={**Q, "k": 3})
    assert r.status_code == 200, r.text
    sites = r.json()["sites"]
    assert sites
    with ceng.connect() as c:
        names = dict(c.execute(text("SELECT code, name FROM community")).all())
    for s in sites:
        assert s["community"] in names and s["community_name"] == names[s["community"]]
        assert s["households_gained"] >= 0
    again = client.post("/api/coverage/site", json={**Q, "k": 3})
    assert again.json() == r.json()  # cached per computation run


def test_new_run_invalidates(client, ceng):
    cache = client.app.state.coverage_cache
    client.get("/api/coverage/areas", params=Q)
    n, key = cache.computations, cache.last_key
    r = client.post("/api/coverage/compute", json={"categories": ["wenhua"]})
    assert r.status_code == 200
    client.get("/api/coverage/areas", params=Q)
    assert cache.last_key != key and cache.computations == n + 1
    # only the newest run's files stay in the folder
    assert all(p.name.startswith(cache.last_key) for p in cache.folder.iterdir() if not p.name.startswith("."))


def test_concurrent_first_requests_compute_once(city_url):
    eng = app_engine(city_url, pool_size=12, max_overflow=2)
    app = create_app(Settings(), engine=eng)
    app.state.coverage_cache = CoverageCache(None)  # empty, in memory only
    user = ensure_user(city_url, "admin")
    try:
        with TestClient(app) as c:
            c.headers["Authorization"] = f"Bearer {bearer_token(c, user)}"
            barrier = threading.Barrier(10)
            out: list = []

            def go() -> None:
                barrier.wait(30)
                out.append(c.get("/api/coverage/gaps", params=Q))

            threads = [threading.Thread(target=go) for _ in range(10)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(180)
            assert [r.status_code for r in out] == [200] * 10
            assert len({r.text for r in out}) == 1
            assert app.state.coverage_cache.computations == 1
    finally:
        eng.dispose()


def test_restarted_app_reads_the_folder_without_the_model(city_url, home, client):
    client.get("/api/coverage/areas", params=Q)  # written to the folder by the module's app
    assert client.post("/api/coverage/site", json={**Q, "k": 3}).status_code == 200
    with signed_in_client(Settings(home=home), city_url, role="admin") as c:
        r = c.get("/api/coverage/areas", params=Q)
        assert r.status_code == 200
        assert r.text == client.get("/api/coverage/areas", params=Q).text
        cache, svc = c.app.state.coverage_cache, c.app.state.coverage
        assert cache.computations == 0
        assert svc.model is None  # no walking model was loaded: the answers were read from the folder
        g = c.get("/api/coverage/gaps", params={**Q, "tolerance_m": 1})  # not asked before: cut from the entry
        assert g.status_code == 200 and g.json()["features"]
        assert (cache.file_reads, cache.computations) == (1, 0) and svc.model is None
        s = c.post("/api/coverage/site", json={**Q, "k": 3})
        assert s.status_code == 200 and svc.model is None  # suggested sites persisted too


def test_page_needs_sign_in_and_serves_its_files(client, city_url, codes):
    anon = TestClient(client.app, follow_redirects=False)
    r = anon.get("/coverage")
    assert r.status_code in (302, 303, 307) and "/login" in r.headers["location"]
    with signed_in_client(Settings(), city_url, role="viewer", scope=codes["streets"][0], cookie=True) as c:
        r = c.get("/coverage")
        assert r.status_code == 200 and "/static/coverage/coverage.js?v=" in r.text
        js = r.text.split("/static/coverage/coverage.js?v=")[0]
        assert "{{" not in r.text and js
        assert c.get("/static/coverage/coverage.js").status_code == 200
