"""Maps in the browser (issue 12, items 7 and 9), headless Chromium on a small sample city with one community
planned: /dashboard, /grids/editor and /map draw the geographic context (roads and water from the database,
in a pane under the page's layers) with no basemap, the attribution has no flag, no request leaves
127.0.0.1 and no tile is asked for. With the AMap preset (GCJ-02 tiles) a known WGS84 point is drawn where
the GCJ-02-converted point sits in standard spherical mercator, and unprojecting the pixel gives the WGS84
point back; tile requests then go only to the preset's hosts (aborted here: the test stays on 127.0.0.1)."""

from __future__ import annotations

import hashlib
from urllib.parse import urlparse

import pytest
from auth_helpers import ensure_user
from live_server import Recorder, browser, serve, sign_in  # noqa: F401  (fixture)
from sqlalchemy import create_engine, pool, text

from gisgov.gridding import service
from gisgov.ingest.gcj02 import wgs84_to_gcj02
from gisgov.sample import generate_city
from gisgov.sample.load import load_city
from gisgov.security.pii import Vault

SEED = 20241123
VAULT = Vault(hashlib.sha256(b"polish browser test key").digest())
AMAP_HOSTS = {f"webrd0{i}.is.autonavi.com" for i in (1, 2, 3, 4)}


@pytest.fixture(scope="module")
def city(db_factory):
    data = generate_city(seed=SEED, scale=0.3)
    url = db_factory.create(prefix="gisgov_test_polish")
    load_city(url, data, vault=VAULT)
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.begin() as conn:
        code = conn.execute(text("SELECT code FROM community ORDER BY code LIMIT 1")).scalar_one()
        service.plan_and_activate(conn, code, time_limit_s=2.0)
    engine.dispose()
    return url, code


@pytest.fixture(scope="module")
def admin(city):
    return ensure_user(city[0], "admin")


def context_state(page, timeout=20000) -> dict:
    page.wait_for_function(
        "() => { const m = document.querySelector('.leaflet-container'); return m && m.dataset.context === 'ready'; }",
        timeout=timeout,
    )
    return page.evaluate(
        """() => {
            const m = document.querySelector('.leaflet-container');
            const pane = m.querySelector('.leaflet-gisgovContext-pane');
            return {
              roads: Number(m.dataset.contextRoads), water: Number(m.dataset.contextWater),
              paths: pane ? pane.querySelectorAll('path').length : 0,
              zIndex: pane ? Number(getComputedStyle(pane).zIndex) : null,
              overlayZ: Number(getComputedStyle(m.querySelector('.leaflet-overlay-pane')).zIndex),
              flag: document.querySelectorAll('.leaflet-control-attribution svg').length,
              attribution: (m.querySelector('.leaflet-control-attribution') || {}).textContent || '',
              tiles: document.querySelectorAll('img.leaflet-tile').length,
            };
        }"""
    )


@pytest.fixture(scope="module")
def offline(city):
    with serve(city[0], login_rate_per_minute=1000) as url:
        yield url


def test_context_on_every_map_offline(browser, offline, city, admin, tmp_path):
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    rec = Recorder(page)
    sign_in(page, offline, "/dashboard", admin)
    for path in ("/dashboard", f"/grids/editor?community={city[1]}"):
        if path != "/dashboard":
            page.goto(offline + path)
        page.wait_for_load_state("networkidle")
        st = context_state(page)
        page.screenshot(path=str(tmp_path / (path.strip("/").split("?")[0].replace("/", "_") + ".png")))
        assert st["roads"] > 0 and st["water"] > 0, (path, st)
        assert st["paths"] >= st["roads"] + st["water"], (path, st)  # casing + line per road, one per water
        assert st["zIndex"] < st["overlayZ"], st  # under the page's own layers
        assert st["flag"] == 0, st
        if path != "/dashboard":  # the dashboard sets no prefix at all
            assert "Leaflet" in st["attribution"], st
        assert st["tiles"] == 0, st
        title = page.title()
        assert title and any("\u4e00" <= ch <= "\u9fff" for ch in title), title  # Chinese first
    # the folium map: roads and water in its context pane, no flag either
    page.goto(offline + "/map")
    page.wait_for_selector(".leaflet-gisgovContext-pane path")
    page.screenshot(path=str(tmp_path / "map.png"))
    n = page.evaluate("() => document.querySelectorAll('.leaflet-gisgovContext-pane path').length")
    assert n > 2
    assert page.evaluate("() => document.querySelectorAll('.leaflet-control-attribution svg').length") == 0
    assert "网格" in page.title()
    # a browser's 404 is a page in the app's style
    r = page.goto(offline + "/no-such-page")
    assert r.status == 404 and "页面不存在" in page.content() and page.locator("a[href='/dashboard']").count() == 1
    assert rec.off_host() == [], rec.off_host()
    assert not [u for u in rec.requests if "/tiles/" in u and u.endswith(".png")]
    page.close()


def test_context_does_not_take_the_editors_clicks(browser, offline, city, admin):
    """A click on a road drawn over a compound still selects the compound (context is not interactive)."""
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    sign_in(page, offline, f"/grids/editor?community={city[1]}", admin)
    context_state(page)
    hit = page.evaluate(
        """() => {
            const pane = document.querySelector('.leaflet-gisgovContext-pane');
            const p = pane.querySelector('path');
            const r = p.getBoundingClientRect();
            const x = r.left + r.width / 2, y = r.top + r.height / 2;
            const el = document.elementFromPoint(x, y);
            return {inContext: pane.contains(el)};
        }"""
    )
    assert hit["inContext"] is False
    page.close()


@pytest.fixture(scope="module")
def amap(city):
    with serve(city[0], login_rate_per_minute=1000, basemap="amap") as url:
        yield url


def test_gcj02_places_the_point_where_it_belongs(browser, amap, admin):
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    asked: list[str] = []

    def off_host(route):
        asked.append(route.request.url)
        route.abort()

    page.route(lambda u: urlparse(u).hostname not in ("127.0.0.1", None), off_host)
    sign_in(page, amap, "/dashboard", admin)
    context_state(page)
    lon, lat = 116.397, 39.909
    glon, glat = (float(v[0]) for v in wgs84_to_gcj02([lon], [lat]))
    assert 0.004 < abs(glon - lon) + abs(glat - lat) < 0.02  # the GCJ-02 offset is hundreds of metres
    got = page.evaluate(
        """([lon, lat, glon, glat]) => {
            const map = gisgov.maps[0];
            const z = map.getZoom();
            // map.project is the CRS's exact pixel; latLngToLayerPoint (what paths and markers use) rounds it
            const drawn = map.project(L.latLng(lat, lon), z).subtract(map.getPixelOrigin());
            const want = L.CRS.EPSG3857.latLngToPoint(L.latLng(glat, glon), z).subtract(map.getPixelOrigin());
            const plain = L.CRS.EPSG3857.latLngToPoint(L.latLng(lat, lon), z).subtract(map.getPixelOrigin());
            const back = map.layerPointToLatLng(drawn);
            const marker = L.circleMarker([lat, lon], {radius: 3}).addTo(map);
            const mp = marker._point;
            return {crs: map.options.crs.code, dx: drawn.x - want.x, dy: drawn.y - want.y,
                    shift: drawn.distanceTo(plain), back: [back.lng, back.lat], marker: [mp.x - want.x, mp.y - want.y],
                    z: z};
        }""",
        [lon, lat, glon, glat],
    )
    assert got["crs"] == "GCJ02:3857"
    assert abs(got["dx"]) < 0.01 and abs(got["dy"]) < 0.01, got
    assert abs(got["marker"][0]) <= 0.5 and abs(got["marker"][1]) <= 0.5, got  # drawn at the rounded pixel
    assert got["shift"] > 5, got  # the shift is visible at this zoom
    assert abs(got["back"][0] - lon) < 1e-6 and abs(got["back"][1] - lat) < 1e-6, got
    # tiles were asked for, from the preset's hosts only, and only once per tile (the page's own layer dropped)
    hosts = {urlparse(u).hostname for u in asked}
    assert hosts and hosts <= AMAP_HOSTS, hosts
    assert len(asked) == len(set(asked)), "a tile asked for twice"
    layers = page.evaluate(
        "() => { let n = 0; gisgov.maps[0].eachLayer(l => { if (l instanceof L.TileLayer) n++; }); return n; }"
    )
    assert layers == 1
    page.close()
