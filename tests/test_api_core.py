"""Core API against a real PostGIS holding the mini city: GeoJSON validity, axis order, counts,
paging, bbox validation, 404/422/403, health (and 503 with the database down), /docs offline."""

from __future__ import annotations

import json
import re

import pytest
import shapely
from fastapi.testclient import TestClient
from mini_city import (  # noqa: F401  (fixtures)
    BLD_A1,
    COMM_A,
    COMPOUND_A,
    EXPECTED,
    GRID_A1,
    STREET,
    mini_city_engine,
    mini_city_url,
)
from shapely.geometry import shape
from sqlalchemy import create_engine, pool, text

from gisgov.api.app import create_app
from gisgov.api.params import parse_bbox
from gisgov.config import Settings
from gisgov.errors import InvalidInput


@pytest.fixture(scope="module")
def client(mini_city_engine):
    app = create_app(Settings(page_limit=2, max_page_limit=5), engine=mini_city_engine)
    with TestClient(app) as c:
        yield c


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
    assert props["code"] == code and props["parent_code"] == (None if level == "street" else code[:9 if level == "community" else 12])


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


@pytest.mark.parametrize("bbox,why", [
    ("117.2,31.8,117.3", "4个数"),
    ("a,b,c,d", "非数字"),
    ("117.3,31.8,117.2,31.9", "最小值大于最大值"),
    ("117.2,31.9,117.3,31.8", "最小值大于最大值"),
    ("31.8,117.2,31.9,117.3", "纬度超出范围"),  # lat,lon order
    ("190,31,191,32", "经度超出范围"),
    ("nan,31,117,32", "有限数"),
])
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


def test_residents_layer_needs_grid_worker_and_never_shows_ids(client):
    r = client.get("/api/layers/resident")
    assert r.status_code == 403 and "grid_worker" in r.json()["detail"]
    assert "resident" not in [x["name"] for x in client.get("/api/layers").json()]


def test_resident_layer_for_grid_worker_has_no_personal_identifiers(mini_city_engine):
    app = create_app(Settings(), engine=mini_city_engine)

    @app.middleware("http")
    async def as_grid_worker(request, call_next):
        request.state.role = "grid_worker"
        return await call_next(request)

    with TestClient(app) as c:
        fc = _fc(c.get("/api/layers/resident"))
    assert fc["numberMatched"] == 10
    keys = set().union(*(f["properties"] for f in fc["features"]))
    assert keys == {"layer", "code", "name", "parent_code", "gender", "birth_year", "role"}
    assert all(f["properties"]["name"] is None for f in fc["features"])


def test_detail_has_children_summary(client):
    feat = client.get(f"/api/street/{STREET}").json()
    kids = {c["layer"]: c for c in feat["children"]}
    assert kids["community"]["count"] == 2
    assert {i["code"]: (i["households"], i["residents"]) for i in kids["community"]["items"]} == {
        "340104001001": (5, 10), "340104001002": (40, 0)}
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


def test_health_is_503_when_the_database_is_down():
    dead = create_engine("postgresql+psycopg://nobody:x@127.0.0.1:9/none", poolclass=pool.NullPool,
                         connect_args={"connect_timeout": 2})
    with TestClient(create_app(Settings(), engine=dead)) as c:
        r = c.get("/health")
    assert r.status_code == 503 and "database unavailable" in r.json()["detail"]
    assert "x@" not in r.json()["detail"]  # no credentials leak


def test_root_redirects_to_map(client):
    r = client.get("/", follow_redirects=False)
    assert r.status_code in (302, 307) and r.headers["location"] == "/map"


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


# --- the full synthetic sample city (fixture from tests/sample_fixtures.py) ------------------------

@pytest.fixture(scope="module")
def sample_engine(sample_city_url):
    eng = create_engine(sample_city_url, poolclass=pool.NullPool)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def sample_client(sample_engine):
    with TestClient(create_app(Settings(), engine=sample_engine)) as c:
        yield c


def test_sample_city_compound_counts_match_the_roster(sample_client, sample_engine):
    fc = _fc(sample_client.get("/api/layers/compound", params={"limit": 1000}))
    assert fc["numberMatched"] == fc["numberReturned"] == len(fc["features"]) >= 100
    with sample_engine.connect() as c:  # ground truth by a different, naive query
        truth = {r.code: (r.hh, r.res) for r in c.execute(text(
            "SELECT p.code, count(DISTINCT h.id) AS hh, count(r.id) AS res FROM compound p "
            "LEFT JOIN building b ON b.compound_id = p.id LEFT JOIN household h ON h.building_code = b.code "
            "LEFT JOIN resident r ON r.household_id = h.id GROUP BY p.code"))}
    got = {f["id"]: (f["properties"]["households"], f["properties"]["residents"]) for f in fc["features"]}
    assert got == truth
    for f in fc["features"]:
        minx, miny, maxx, maxy = shape(f["geometry"]).bounds
        assert 73 <= minx <= maxx <= 135 and 18 <= miny <= maxy <= 54


def test_sample_city_hierarchy_totals_match_the_tables(sample_client, sample_engine):
    h = sample_client.get("/api/hierarchy").json()
    with sample_engine.connect() as c:
        residents = c.execute(text("SELECT count(*) FROM resident")).scalar()
        households = c.execute(text(
            "SELECT (SELECT count(*) FROM household) + coalesce((SELECT sum(households) FROM building b "
            "WHERE NOT EXISTS (SELECT 1 FROM household h WHERE h.building_code = b.code)), 0)")).scalar()
        communities = c.execute(text("SELECT count(*) FROM community")).scalar()
    assert h["residents"] == residents > 100_000
    assert h["households"] == households
    assert h["counts"]["communities"] == communities == sum(len(s["children"]) for s in h["streets"])
    assert sum(s["residents"] for s in h["streets"]) == residents
