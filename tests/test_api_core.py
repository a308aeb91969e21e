"""Core API against a real PostGIS holding the mini city, signed in (the app connects as the app
role, never the owner): GeoJSON validity, axis order, counts, paging, bbox validation, 404/422/403,
health (and 503 with the database down), /docs offline; sign-in (401 / redirect to /login), the
caller's scope in every list and detail (404 outside it), the resident layer only for roles that
read personal data, and one audit row per personal read."""

from __future__ import annotations

import json
import re

import pytest
import shapely
from auth_helpers import app_engine, ensure_user, signed_in_client
from fastapi.testclient import TestClient
from mini_city import (  # noqa: F401  (fixtures)
    BLD_A1,
    BLD_A2,
    BLD_B1,
    COMM_A,
    COMM_B,
    COMPOUND_A,
    COMPOUND_B,
    EXPECTED,
    GRID_A1,
    GRID_A2,
    GRID_B1,
    STREET,
    mini_city_engine,
    mini_city_url,
)
from shapely.geometry import shape
from sqlalchemy import create_engine, pool, text

from gisgov.api import queries
from gisgov.api.app import create_app
from gisgov.api.params import parse_bbox
from gisgov.config import Settings
from gisgov.errors import InvalidInput
from gisgov.layers import load_catalog


@pytest.fixture(scope="module")
def client(mini_city_url):
    """Signed in as an administrator (the whole city)."""
    with signed_in_client(Settings(page_limit=2, max_page_limit=5), mini_city_url, role="admin") as c:
        yield c


@pytest.fixture(scope="module")
def staff_a(mini_city_url):
    """社区工作者 of community A (东园社区)."""
    with signed_in_client(Settings(), mini_city_url, role="community_staff", scope=COMM_A) as c:
        yield c


@pytest.fixture(scope="module")
def staff_b(mini_city_url):
    """社区工作者 of community B (西湖社区)."""
    with signed_in_client(Settings(), mini_city_url, role="community_staff", scope=COMM_B) as c:
        yield c


@pytest.fixture(scope="module")
def worker_a1(mini_city_url):
    """网格员 of grid A1 (all 10 residents of the mini city live there)."""
    with signed_in_client(Settings(), mini_city_url, role="grid_worker", scope=GRID_A1) as c:
        yield c


@pytest.fixture(scope="module")
def planner(mini_city_url):
    with signed_in_client(Settings(), mini_city_url, role="planner", scope=STREET) as c:
        yield c


@pytest.fixture(scope="module")
def anonymous(mini_city_url):
    eng = app_engine(mini_city_url)
    try:
        with TestClient(create_app(Settings(), engine=eng)) as c:
            yield c
    finally:
        eng.dispose()


def _codes(resp) -> list[str]:
    return [f["id"] for f in _fc(resp)["features"]]


def _read_personal_rows(owner, username: str) -> list:
    with owner.connect() as c:
        return c.execute(
            text(
                "SELECT object, result, detail FROM audit_log WHERE action = 'read_personal' AND actor = :u ORDER BY id"
            ),
            {"u": username},
        ).all()


def _fc(resp) -> dict:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/geo+json")
    return resp.json()


@pytest.mark.parametrize("level", ["street", "community", "grid", "compound", "building", "facility", "road"])
def test_layer_is_valid_geojson_in_lon_lat(client, level):
    fc = _fc(client.get(f"/api/layers/{level}", params={"limit": 5}))
    assert fc["type"] == "FeatureCollection" and "crs" not in fc  # RFC 7946: WGS84 implied
    assert fc["numberReturned"] == len(fc["features"]) > 0
    for f in fc["features"]:
        assert f["type"] == "Feature" and f["properties"]["layer"] == level
        geom = shape(f["geometry"])
        assert geom.is_valid and not geom.is_empty
        minx, miny, maxx, maxy = geom.bounds
        assert 73 <= minx <= maxx <= 135, f"longitude out of China: {geom.bounds} (swapped axes?)"
        assert 18 <= miny <= maxy <= 54, f"latitude out of China: {geom.bounds} (swapped axes?)"
        assert abs(minx - 117.2) < 0.1 and abs(miny - 31.8) < 0.1


def test_geometry_survives_4490_to_wgs84(client):
    f = next(f for f in _fc(client.get("/api/layers/compound"))["features"] if f["id"] == COMPOUND_A)
    expected = shapely.box(117.202, 31.805, 117.206, 31.809)
    assert shape(f["geometry"]).symmetric_difference(expected).area < 1e-12  # CGCS2000 ≈ WGS84


@pytest.mark.parametrize("code", sorted(EXPECTED))
def test_household_and_resident_counts(client, code):
    level = {9: "street", 12: "community", 15: "grid", 16: "compound"}[len(code)]
    props = client.get(f"/api/{level}/{code}").json()["properties"]
    assert (props["households"], props["residents"]) == EXPECTED[code]
    assert props["code"] == code and props["parent_code"] == (
        None if level == "street" else code[: 9 if level == "community" else 12]
    )


def test_building_without_roster_uses_its_estimate_and_links_parents(client):
    props = client.get(f"/api/building/{BLD_A1}").json()["properties"]
    assert props["households"] == 3 and props["residents"] == 6
    assert props["compound_code"] == COMPOUND_A and props["grid_code"] == GRID_A1 and props["parent_code"] == COMM_A


def test_paging_and_next_link(client):
    first = _fc(client.get("/api/layers/grid"))  # default limit = settings.page_limit = 2
    assert first["numberMatched"] == 3 and first["numberReturned"] == 2
    nxt = next(link["href"] for link in first["links"] if link["rel"] == "next")
    second = _fc(client.get(nxt))
    assert second["numberReturned"] == 1 and not any(link["rel"] == "next" for link in second["links"])
    codes = [f["id"] for f in first["features"] + second["features"]]
    assert codes == sorted(codes) and len(set(codes)) == 3


def test_page_limit_bounds(client):
    assert client.get("/api/layers/grid", params={"limit": 6}).status_code == 422  # > max_page_limit
    assert client.get("/api/layers/grid", params={"limit": 0}).status_code == 422
    assert client.get("/api/layers/grid", params={"offset": -1}).status_code == 422


def test_bbox_filters(client):
    east = _fc(client.get("/api/layers/compound", params={"bbox": "117.22,31.80,117.24,31.83"}))
    assert [f["id"] for f in east["features"]] == ["3401040010020001"] and east["numberMatched"] == 1
    nowhere = _fc(client.get("/api/layers/compound", params={"bbox": "100,20,101,21"}))
    assert nowhere["numberMatched"] == 0 and nowhere["features"] == []


@pytest.mark.parametrize(
    "bbox,why",
    [
        ("117.2,31.8,117.3", "4个数"),
        ("a,b,c,d", "非数字"),
        ("117.3,31.8,117.2,31.9", "最小值大于最大值"),
        ("117.2,31.9,117.3,31.8", "最小值大于最大值"),
        ("31.8,117.2,31.9,117.3", "纬度超出范围"),  # lat,lon order
        ("190,31,191,32", "经度超出范围"),
        ("nan,31,117,32", "有限数"),
    ],
)
def test_bad_bbox_is_422_with_a_clear_message(client, bbox, why):
    r = client.get("/api/layers/grid", params={"bbox": bbox})
    assert r.status_code == 422
    assert why in r.json()["detail"] and "bbox" in r.json()["detail"]


def test_parse_bbox_accepts_a_point_box():
    assert parse_bbox("117.2, 31.8, 117.2, 31.8") == (117.2, 31.8, 117.2, 31.8)
    assert parse_bbox(None) is None
    with pytest.raises(InvalidInput, match="bbox"):
        parse_bbox("1,2,3")


def test_unknown_code_is_404_naming_level_and_code(client):
    r = client.get("/api/community/340104001099")
    assert r.status_code == 404
    assert r.json()["detail"] == "未找到社区 community not found: community 340104001099"
    assert client.get("/api/road/999999").status_code == 404


@pytest.mark.parametrize("url", ["/api/community/34010400109", "/api/grid/abc", "/api/street/3401040019999"])
def test_malformed_code_is_422(client, url):
    r = client.get(url)
    assert r.status_code == 422 and "code" in r.json()["detail"]


def test_unknown_layer_is_404(client):
    r = client.get("/api/layers/household")
    assert r.status_code == 404 and "unknown layer" in r.json()["detail"]


@pytest.mark.parametrize("role", ["planner", "viewer"])
def test_residents_layer_is_forbidden_to_aggregate_only_roles(mini_city_url, role):
    with signed_in_client(Settings(), mini_city_url, role=role, scope=STREET) as c:
        r = c.get("/api/layers/resident")
        assert r.status_code == 403 and "grid_worker" in r.json()["detail"]
        assert "resident" not in [x["name"] for x in c.get("/api/layers").json()]
        assert c.get("/api/resident/1").status_code == 403
        assert _fc(c.get("/api/layers/community"))["numberMatched"] == 2  # aggregates are fine
        assert c.get(f"/api/street/{STREET}").json()["properties"]["residents"] == 10


def test_resident_layer_for_grid_worker_has_no_personal_identifiers(worker_a1, mini_city_engine):
    fc = _fc(worker_a1.get("/api/layers/resident"))
    assert fc["numberMatched"] == 10
    keys = set().union(*(f["properties"] for f in fc["features"]))
    assert keys == {"layer", "code", "name", "parent_code", "gender", "birth_year", "role"}
    assert all(f["properties"]["name"] is None for f in fc["features"])
    assert not any(re.search(r"居民\d", json.dumps(f, ensure_ascii=False)) for f in fc["features"])  # no names
    with mini_city_engine.connect() as c:  # resident points are exactly their building's point
        points = {
            (round(r.x, 6), round(r.y, 6))
            for r in c.execute(
                text(
                    "SELECT ST_X(ST_Transform(pos, 4326)) AS x, ST_Y(ST_Transform(pos, 4326)) AS y FROM building "
                    "WHERE code IN (:a, :b)"
                ),
                {"a": BLD_A1, "b": BLD_A2},
            )
        }
    assert len(points) == 2
    assert {tuple(round(v, 6) for v in f["geometry"]["coordinates"]) for f in fc["features"]} == points


def test_detail_has_children_summary(client):
    feat = client.get(f"/api/street/{STREET}").json()
    kids = {c["layer"]: c for c in feat["children"]}
    assert kids["community"]["count"] == 2
    assert {i["code"]: (i["households"], i["residents"]) for i in kids["community"]["items"]} == {
        "340104001001": (5, 10),
        "340104001002": (40, 0),
    }
    comm = {c["layer"]: c for c in client.get(f"/api/community/{COMM_A}").json()["children"]}
    assert comm["grid"]["count"] == 2 and comm["compound"]["count"] == 1 and comm["facility"]["count"] == 1
    grid = {c["layer"]: c for c in client.get(f"/api/grid/{GRID_A1}").json()["children"]}
    assert grid["building"]["count"] == 2 and "items" not in grid["building"]  # linked, not the parent


def test_hierarchy_tree_counts(client):
    h = client.get("/api/hierarchy").json()
    assert (h["households"], h["residents"], h["buildings"]) == (45, 10, 3)
    assert h["counts"] == {"streets": 1, "communities": 2, "grids": 3}
    street = h["streets"][0]
    assert street["code"] == STREET and (street["households"], street["residents"]) == EXPECTED[STREET]
    for comm in street["children"]:
        assert (comm["households"], comm["residents"]) == EXPECTED[comm["code"]]
        for g in comm["children"]:
            assert (g["households"], g["residents"]) == EXPECTED[g["code"]]
        assert sum(g["residents"] for g in comm["children"]) <= comm["residents"]


def test_health_reports_postgis_schema_and_dataset(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and re.match(r"^3\.\d+", h["postgis"])
    assert h["schema"] and h["dataset"] == {"name": "mini test city", "synthetic": True}


def test_health_is_503_when_the_database_is_down(mini_city_url):
    """The app starts on a reachable database (it checks its role at start-up), then loses it."""
    live = app_engine(mini_city_url)
    dead = create_engine(
        "postgresql+psycopg://nobody:x@127.0.0.1:9/none", poolclass=pool.NullPool, connect_args={"connect_timeout": 2}
    )
    app = create_app(Settings(), engine=live)
    try:
        with TestClient(app) as c:
            app.state.engine = dead
            r = c.get("/health")
    finally:
        live.dispose()
    assert r.status_code == 503 and "database unavailable" in r.json()["detail"]
    assert "x@" not in r.json()["detail"]  # no credentials leak
    assert "127.0.0.1" not in r.text and "port" not in r.text  # nor where the database is


def test_root_redirects_to_map(client, anonymous):
    r = client.get("/", follow_redirects=False)
    assert r.status_code in (302, 307) and r.headers["location"] == "/map"
    r = anonymous.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_docs_use_only_local_assets(client):
    html = client.get("/docs").text
    assert "SwaggerUIBundle" in html and not re.search(r"https?://", html)
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert url.startswith("/static/vendor/"), url
        assert client.get(url).status_code == 200, url
    spec = client.get("/openapi.json").json()
    assert {"/health", "/api/hierarchy", "/api/layers/{level}", "/api/community/{code}", "/map"} <= set(spec["paths"])


def test_features_json_is_strict_json(client):
    text = client.get("/api/layers/building").text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


# --- sign-in and scope -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/api/layers",
        "/api/layers/community",
        "/api/layers/resident",
        "/api/hierarchy",
        f"/api/community/{COMM_A}",
        "/api/resident/1",
        "/openapi.json",
    ],
)
def test_unauthenticated_api_is_401(anonymous, url):
    r = anonymous.get(url)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "登录" in r.json()["detail"]


def test_unauthenticated_map_redirects_to_login(anonymous):
    r = anonymous.get("/map", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/map"
    h = anonymous.get("/health")
    assert h.status_code == 200 and h.json()["status"] == "ok"  # the probe stays public
    assert "dataset" not in h.json()  # but says nothing about the data without sign-in


def test_community_staff_sees_its_community_and_its_street_outline_only(staff_a):
    assert _codes(staff_a.get("/api/layers/community")) == [COMM_A]
    street = _fc(staff_a.get("/api/layers/street"))["features"]
    assert [f["id"] for f in street] == [STREET]
    # the street's figures are those of the caller's part of it (community A), not the whole street
    assert (street[0]["properties"]["households"], street[0]["properties"]["residents"]) == EXPECTED[COMM_A]
    assert _codes(staff_a.get("/api/layers/grid")) == [GRID_A1, GRID_A2]
    assert _codes(staff_a.get("/api/layers/compound")) == [COMPOUND_A]
    assert _codes(staff_a.get("/api/layers/building")) == [BLD_A1, BLD_A2]
    assert _codes(staff_a.get("/api/layers/facility")) == ["F0001"]
    east = _fc(staff_a.get("/api/layers/compound", params={"bbox": "117.22,31.80,117.24,31.83"}))
    assert east["numberMatched"] == 0 and east["features"] == []  # a bbox over the sibling finds nothing


def test_sibling_community_sees_none_of_community_a(staff_b):
    assert _codes(staff_b.get("/api/layers/community")) == [COMM_B]
    assert _codes(staff_b.get("/api/layers/compound")) == [COMPOUND_B]
    assert _codes(staff_b.get("/api/layers/facility")) == []  # F0001 belongs to community A
    assert staff_b.get("/api/facility/F0001").status_code == 404
    # the walking network is public infrastructure: whole for every signed-in account
    roads = _codes(staff_b.get("/api/layers/road"))
    assert roads and staff_b.get(f"/api/road/{roads[0]}").status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        f"/api/community/{COMM_B}",
        f"/api/grid/{GRID_B1}",
        f"/api/compound/{COMPOUND_B}",
        f"/api/building/{BLD_B1}",
        "/api/community/340104001099",
        "/api/street/340104002",
    ],
)
def test_objects_outside_the_scope_are_404_not_403(staff_a, url):
    r = staff_a.get(url)
    assert r.status_code == 404 and "not found" in r.json()["detail"]


def test_details_and_children_hold_in_scope_data_only(staff_a):
    street = staff_a.get(f"/api/street/{STREET}").json()
    assert (street["properties"]["households"], street["properties"]["residents"]) == EXPECTED[COMM_A]
    kids = {c["layer"]: c for c in street["children"]}
    assert kids["community"]["count"] == 1 and [i["code"] for i in kids["community"]["items"]] == [COMM_A]
    comm = {c["layer"]: c for c in staff_a.get(f"/api/community/{COMM_A}").json()["children"]}
    assert comm["grid"]["count"] == 2 and comm["compound"]["count"] == 1 and comm["facility"]["count"] == 1
    assert "resident" not in comm


def test_hierarchy_is_the_callers_part_of_the_tree(staff_a, staff_b):
    a = staff_a.get("/api/hierarchy").json()
    assert a["counts"] == {"streets": 1, "communities": 1, "grids": 2}
    assert (a["households"], a["residents"], a["buildings"]) == (*EXPECTED[COMM_A], 2)
    street = a["streets"][0]
    assert street["code"] == STREET and [c["code"] for c in street["children"]] == [COMM_A]
    assert (street["households"], street["residents"]) == EXPECTED[COMM_A]
    b = staff_b.get("/api/hierarchy").json()
    assert b["counts"] == {"streets": 1, "communities": 1, "grids": 1}
    assert [c["code"] for c in b["streets"][0]["children"]] == [COMM_B]
    assert (b["households"], b["residents"], b["buildings"]) == (*EXPECTED[COMM_B], 1)


def test_grid_worker_sees_only_the_residents_of_its_grid(worker_a1, staff_b, mini_city_url):
    ids = _codes(worker_a1.get("/api/layers/resident"))
    assert len(ids) == 10
    assert worker_a1.get(f"/api/resident/{ids[0]}").status_code == 200
    # a grid worker's outlines are its community's; its residents are its grid's
    assert _codes(worker_a1.get("/api/layers/community")) == [COMM_A]
    with signed_in_client(Settings(), mini_city_url, role="grid_worker", scope=GRID_A2) as other_grid:
        assert _fc(other_grid.get("/api/layers/resident"))["numberMatched"] == 0
        assert other_grid.get(f"/api/resident/{ids[0]}").status_code == 404
        tree = other_grid.get("/api/hierarchy").json()
        assert tree["residents"] == 0 and tree["counts"]["communities"] == 1
    assert _fc(staff_b.get("/api/layers/resident"))["numberMatched"] == 0
    assert staff_b.get(f"/api/resident/{ids[0]}").status_code == 404


def test_the_app_filters_residents_itself_not_only_row_level_security(mini_city_engine):
    """The owner connection bypasses row-level security: what is left out here is the app's own filter."""
    layer = load_catalog(Settings().layers_dir).get("resident")
    cat = load_catalog(Settings().layers_dir)
    with mini_city_engine.connect() as c:

        def n(scope):
            return queries.layer_page(c, cat, layer, scope=scope).number_matched

        assert n(queries.ALL) == 10
        assert n(queries.Scope(area=COMM_A, personal=GRID_A1)) == 10
        assert n(queries.Scope(area=COMM_A, personal=GRID_A2)) == 0
        assert n(queries.Scope(area=COMM_B, personal=COMM_B)) == 0
        assert n(queries.Scope(area=STREET, personal=STREET)) == 10


def test_rows_without_a_code_are_scoped_by_community_or_position(mini_city_engine):
    """Facilities without a community count where they stand; the ``area`` rule keeps what crosses the area."""
    cat = load_catalog(Settings().layers_dir)
    facility = cat.get("facility")
    roads_by_area = cat.get("road").model_copy(update={"scope_by": "area"})
    with mini_city_engine.connect() as c, c.begin() as tx:
        c.execute(
            text(
                "INSERT INTO facility (code, name, category_code, community_code, geom) VALUES "
                "('F-east', '无社区设施', 'weisheng', NULL, ST_SetSRID(ST_MakePoint(117.23, 31.82), 4490))"
            )
        )

        def codes(layer, area):
            page = queries.layer_page(c, cat, layer, scope=queries.Scope(area=area, personal=area))
            return sorted(f["id"] for f in json.loads(page.features_json))

        assert codes(facility, COMM_A) == ["F0001"]
        assert codes(facility, COMM_B) == ["F-east"]
        assert codes(facility, STREET) == ["F-east", "F0001"]
        assert len(codes(roads_by_area, COMM_A)) == 1  # the road crosses community A
        assert codes(roads_by_area, "340104002") == []  # a street that does not exist has no polygon
        tx.rollback()


def test_a_personal_read_writes_exactly_one_audit_row(worker_a1, mini_city_engine):
    user = ensure_user(mini_city_engine, "grid_worker", GRID_A1)
    before = len(_read_personal_rows(mini_city_engine, user))
    fc = _fc(worker_a1.get("/api/layers/resident", params={"limit": 4}))
    rows = _read_personal_rows(mini_city_engine, user)[before:]
    assert len(rows) == 1
    assert rows[0].object == "layer:resident" and rows[0].result == "ok" and rows[0].detail == {"count": 4}
    one = fc["features"][0]["id"]
    assert worker_a1.get(f"/api/resident/{one}").status_code == 200
    rows = _read_personal_rows(mini_city_engine, user)[before:]
    assert len(rows) == 2 and rows[1].object == f"resident:{one}" and rows[1].detail == {"count": 1}
    for url in ("/api/layers/community", "/api/hierarchy", f"/api/community/{COMM_A}", "/api/layers"):
        assert worker_a1.get(url).status_code == 200
    assert len(_read_personal_rows(mini_city_engine, user)[before:]) == 2  # aggregates are not personal reads


def test_a_personal_read_needs_no_second_pooled_connection(mini_city_url):
    """The audit row goes through the request's own connection: with a pool of ONE connection a
    resident page still answers (a second checkout would wait for the pool and fail)."""
    eng = app_engine(mini_city_url, pool_size=1, max_overflow=0, pool_timeout=3)
    try:
        with signed_in_client(Settings(), mini_city_url, role="grid_worker", scope=GRID_A1, engine=eng) as c:
            for _ in range(3):
                assert _fc(c.get("/api/layers/resident"))["numberMatched"] == 10
    finally:
        eng.dispose()


# --- the full synthetic sample city (fixture from tests/sample_fixtures.py) ------------------------


@pytest.fixture(scope="module")
def sample_engine(sample_city_url):
    eng = create_engine(sample_city_url, poolclass=pool.NullPool)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def sample_client(sample_city_url):
    with signed_in_client(Settings(), sample_city_url, role="admin") as c:
        yield c


def test_sample_city_compound_counts_match_the_roster(sample_client, sample_engine):
    fc = _fc(sample_client.get("/api/layers/compound", params={"limit": 1000}))
    assert fc["numberMatched"] == fc["numberReturned"] == len(fc["features"]) >= 100
    with sample_engine.connect() as c:  # ground truth by a different, naive query
        truth = {
            r.code: (r.hh, r.res)
            for r in c.execute(
                text(
                    "SELECT p.code, count(DISTINCT h.id) AS hh, count(r.id) AS res FROM compound p "
                    "LEFT JOIN building b ON b.compound_id = p.id LEFT JOIN household h ON h.building_code = b.code "
                    "LEFT JOIN resident r ON r.household_id = h.id GROUP BY p.code"
                )
            )
        }
    got = {f["id"]: (f["properties"]["households"], f["properties"]["residents"]) for f in fc["features"]}
    assert got == truth
    for f in fc["features"]:
        minx, miny, maxx, maxy = shape(f["geometry"]).bounds
        assert 73 <= minx <= maxx <= 135 and 18 <= miny <= maxy <= 54


def test_sample_city_hierarchy_totals_match_the_tables(sample_client, sample_engine):
    h = sample_client.get("/api/hierarchy").json()
    with sample_engine.connect() as c:
        residents = c.execute(text("SELECT count(*) FROM resident")).scalar()
        households = c.execute(
            text(
                "SELECT (SELECT count(*) FROM household) + coalesce((SELECT sum(households) FROM building b "
                "WHERE NOT EXISTS (SELECT 1 FROM household h WHERE h.building_code = b.code)), 0)"
            )
        ).scalar()
        communities = c.execute(text("SELECT count(*) FROM community")).scalar()
    assert h["residents"] == residents > 100_000
    assert h["households"] == households
    assert h["counts"]["communities"] == communities == sum(len(s["children"]) for s in h["streets"])
    assert sum(s["residents"] for s in h["streets"]) == residents


def test_sample_city_community_staff_see_their_community_only(sample_city_url, sample_engine):
    with sample_engine.connect() as c:
        comm, street, residents, buildings = c.execute(
            text(
                "SELECT b.community_code, left(b.community_code, 9), count(r.id), count(DISTINCT b.id) FROM building b "
                "LEFT JOIN household h ON h.building_code = b.code LEFT JOIN resident r ON r.household_id = h.id "
                "GROUP BY b.community_code ORDER BY count(r.id) DESC LIMIT 1"
            )
        ).one()
    assert residents > 100
    with signed_in_client(Settings(), sample_city_url, role="community_staff", scope=comm) as staff:
        h = staff.get("/api/hierarchy").json()
        assert h["counts"]["streets"] == 1 and h["counts"]["communities"] == 1
        assert h["streets"][0]["code"] == street and h["streets"][0]["children"][0]["code"] == comm
        assert (h["residents"], h["buildings"]) == (residents, buildings)
        codes = _codes(staff.get("/api/layers/compound", params={"limit": 10000}))
        assert codes and all(code.startswith(comm) for code in codes)
        assert _codes(staff.get("/api/layers/community", params={"limit": 10000})) == [comm]
        res = _fc(staff.get("/api/layers/resident", params={"limit": 10000}))
        assert res["numberMatched"] == residents
