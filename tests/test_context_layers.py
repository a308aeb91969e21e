"""Geographic context (issue 12, item 7): ``GET /api/context`` answers the roads, water and facilities of a
map view from the database (roads by zoom: arterials only below zoom 14, local roads from 14, footpaths from
16, never compound gate links), clipped to the box; facilities only in the caller's area; a bad or huge box
answers 400, never 500. ``GET /api/context/basemap`` answers the configured basemap. The folium maps carry
the same layers (``/map``: water, roads, facilities toggle) and a ``<title>``."""

from __future__ import annotations

import hashlib
import json

import pytest
import shapely
from auth_helpers import signed_in_client
from shapely.geometry import box as shapely_box
from shapely.geometry import shape
from sqlalchemy import create_engine, pool, text

from gisgov.config import Settings
from gisgov.sample import generate_city
from gisgov.sample.load import load_city
from gisgov.security.pii import Vault

SEED = 20241123
VAULT = Vault(hashlib.sha256(b"context test key").digest())


@pytest.fixture(scope="module")
def city_url(db_factory):
    city = generate_city(seed=SEED, scale=0.3)
    url = db_factory.create(prefix="gisgov_test_context")
    load_city(url, city, vault=VAULT)
    return url


@pytest.fixture(scope="module")
def facts(city_url):
    """The city's extent, a community, and its facilities (codes), read straight from the database."""
    eng = create_engine(city_url, poolclass=pool.NullPool)
    with eng.connect() as c:
        ext = c.execute(
            text("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) e FROM street) s")
        ).one()
        community = c.execute(text("SELECT code FROM community ORDER BY code LIMIT 1")).scalar_one()
        own = set(c.execute(text("SELECT code FROM facility WHERE community_code = :c"), {"c": community}).scalars())
        total = c.execute(text("SELECT count(*) FROM facility")).scalar_one()
        classes = dict(c.execute(text("SELECT class, count(*) FROM road_edge GROUP BY class")).all())
        river = c.execute(text("SELECT ST_AsText(geom) FROM barrier WHERE kind = 'river'")).scalar_one()
    eng.dispose()
    return {
        "extent": tuple(ext),
        "community": community,
        "own": own,
        "total": total,
        "classes": classes,
        "river": river,
    }


@pytest.fixture(scope="module")
def admin(city_url):
    with signed_in_client(Settings(), city_url, role="admin") as c:
        yield c


@pytest.fixture(scope="module")
def staff(city_url, facts):
    with signed_in_client(Settings(), city_url, role="community_staff", scope=facts["community"]) as c:
        yield c


def bbox(ext, pad=0.002) -> str:
    return ",".join(f"{v:.6f}" for v in (ext[0] - pad, ext[1] - pad, ext[2] + pad, ext[3] + pad))


def get(client, b, zoom):
    r = client.get("/api/context", params={"bbox": b, "zoom": zoom})
    assert r.status_code == 200, r.text
    return r.json()


def has(page: str, name: str) -> bool:
    """``name`` in a folium page (layer names are written as JSON strings, non-ASCII escaped)."""
    return name in page or json.dumps(name)[1:-1] in page


def classes(d) -> set[str]:
    return {f["properties"]["class"] for f in d["roads"]["features"]}


def test_sample_city_has_the_context(facts):
    assert facts["classes"].get("arterial", 0) > 0 and facts["classes"].get("local", 0) > 0, facts["classes"]
    assert facts["total"] > 0


def test_roads_by_zoom(admin, facts):
    b = bbox(facts["extent"])
    low = get(admin, b, 12)
    assert low["arterials_only"] is True
    assert classes(low) == {"arterial"}
    mid = get(admin, b, 15)
    assert mid["arterials_only"] is False
    assert {"arterial", "local"} <= classes(mid)
    assert "path" not in classes(mid) and "gate" not in classes(mid)
    high = get(admin, b, 17)
    assert "gate" not in classes(high)
    if facts["classes"].get("path"):
        assert "path" in classes(high)
    for f in mid["roads"]["features"]:
        assert f["geometry"]["type"] in ("LineString", "MultiLineString")


def test_water_is_the_river_and_clipped(admin, facts):
    d = get(admin, bbox(facts["extent"]), 14)
    assert d["water"]["features"], "the sample city's river"
    assert {f["properties"]["kind"] for f in d["water"]["features"]} == {"river"}
    # a small box over part of the river: the answer stays inside it
    river = shapely.from_wkt(facts["river"])
    c = river.representative_point()
    small = (c.x - 0.003, c.y - 0.003, c.x + 0.003, c.y + 0.003)
    d = get(admin, ",".join(f"{v:.6f}" for v in small), 16)
    assert d["water"]["features"]
    cell = shapely_box(*small).buffer(1e-6)
    for f in d["water"]["features"] + d["roads"]["features"]:
        assert cell.contains(shape(f["geometry"])), f["properties"]
    # and a box away from the city is empty
    x1, y1 = facts["extent"][2:]
    away = get(admin, f"{x1 + 0.5:.4f},{y1 + 0.5:.4f},{x1 + 0.6:.4f},{y1 + 0.6:.4f}", 15)
    assert away["roads"]["features"] == [] and away["water"]["features"] == []


def test_facilities_follow_the_callers_area(admin, staff, facts):
    b = bbox(facts["extent"])
    everything = get(admin, b, 15)["facilities"]["features"]
    assert len(everything) == facts["total"]
    props = everything[0]["properties"]
    assert {"code", "name", "category_code", "category"} <= set(props)
    mine = get(staff, b, 15)
    codes = {f["properties"]["code"] for f in mine["facilities"]["features"]}
    assert codes == facts["own"] and len(codes) < facts["total"]
    # roads and water are public geography: the community's account sees them whole
    assert len(mine["roads"]["features"]) == len(get(admin, b, 15)["roads"]["features"])
    assert mine["water"]["features"]


@pytest.mark.parametrize(
    "b",
    [
        "1,2,3",
        "a,b,c,d",
        "nan,1,2,3",
        "117.3,31.8,117.2,31.9",  # min > max
        "117.2,31.8,117.2,31.9",  # empty
        "100,20,110,30",  # far too large
        "-200,0,-199,1",
        "1e308,1,1e308,2",
        "117.2,31.8,117.3,95",
        ",,,",
        "",
    ],
)
def test_bad_bbox_is_400(admin, b):
    r = admin.get("/api/context", params={"bbox": b, "zoom": 15})
    assert r.status_code == 400, (b, r.status_code, r.text)
    body = r.json()
    assert body["error"] == "InvalidBbox" and body["message_zh"] and body["message_en"]


def test_bad_zoom_and_missing_bbox_are_422(admin):
    assert admin.get("/api/context", params={"bbox": "117.2,31.8,117.3,31.9", "zoom": 99}).status_code == 422
    assert admin.get("/api/context", params={"bbox": "117.2,31.8,117.3,31.9", "zoom": "x"}).status_code == 422
    assert admin.get("/api/context").status_code == 422


def test_not_signed_in_is_401(city_url):
    from auth_helpers import app_engine
    from fastapi.testclient import TestClient

    from gisgov.api.app import create_app

    eng = app_engine(city_url)
    try:
        with TestClient(create_app(Settings(), engine=eng)) as c:
            assert c.get("/api/context", params={"bbox": "117.2,31.8,117.3,31.9"}).status_code == 401
            assert c.get("/api/context/basemap").status_code == 401
    finally:
        eng.dispose()


def test_basemap_answer(admin):
    r = admin.get("/api/context/basemap")
    assert r.status_code == 200
    assert r.json() == {"kind": "none", "crs": "wgs84", "attribution": "", "layers": [], "hosts": []}


def test_folium_map_has_context_and_title(admin, facts):
    r = admin.get("/map")
    assert r.status_code == 200
    page = r.text
    assert "<title>网格化管理地图 Grid governance map</title>" in page
    assert has(page, "水系 Water") and has(page, "道路 Roads") and has(page, "设施 Facilities")
    assert '"gisgovContext"' in page  # the pane under the overlays
    assert 'setPrefix("Leaflet")' in page  # attribution without the flag
    assert "gcjCrs" not in page  # no GCJ-02 shift without GCJ-02 tiles


def test_plan_map_has_context_and_title(admin, facts, city_url):
    from gisgov.gridding import service

    eng = create_engine(city_url, poolclass=pool.NullPool)
    with eng.begin() as conn:
        service.plan_and_activate(conn, facts["community"], time_limit_s=2.0)
    eng.dispose()
    r = admin.get(f"/api/grids/map/{facts['community']}")
    assert r.status_code == 200, r.text
    assert f"<title>社区 {facts['community']} 网格方案 Grid plan — gisgov</title>" in r.text
    assert has(r.text, "道路 Roads") and '"gisgovContext"' in r.text
