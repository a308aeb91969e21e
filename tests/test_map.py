"""The offline folium map: pure builder from GeoDataFrames, /map from PostGIS (signed in, the
caller's area only; without a session a redirect to /login), asset vendoring."""

from __future__ import annotations

import json
import os
import re
import stat
import textwrap

import folium
import geopandas as gpd
import pytest
import shapely
from auth_helpers import app_engine, signed_in_client
from fastapi.testclient import TestClient
from folium.plugins import Draw, Fullscreen, MarkerCluster
from mini_city import COMM_A, GRID_A1, mini_city_engine, mini_city_url  # noqa: F401  (fixtures)

from gisgov.api.app import create_app
from gisgov.config import Settings, get_settings
from gisgov.layers import load_catalog
from gisgov.maps import assets, offline
from gisgov.maps.hierarchy_map import build_hierarchy_map

ANY_URL = re.compile(r"https?://", re.IGNORECASE)
ASSET_REF = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)


@pytest.fixture(scope="session")
def web_assets():
    """The vendored assets, installed (npm ci from the lock) if they are not current."""
    web = get_settings().web_dir
    assets.ensure_assets(web)
    return web


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(get_settings().layers_dir)


def _has(html: str, text: str) -> bool:
    """``text`` appears in the page, as HTML or inside a JS string literal (JSON-escaped)."""
    return text in html or json.dumps(text)[1:-1] in html


def _frame(rows, crs=4490):
    return gpd.GeoDataFrame(
        [{"code": c, "name": n, "households": h, "residents": r} for c, n, h, r, _ in rows],
        geometry=[shapely.box(*b) for *_, b in rows],
        crs=crs,
    )


@pytest.fixture
def frames(catalog):
    return [
        (catalog.get("street"), _frame([("340104001", "示范街道", 45, 10, (117.20, 31.80, 117.24, 31.83))])),
        (
            catalog.get("community"),
            _frame(
                [
                    ("340104001001", "东园社区", 5, 10, (117.20, 31.80, 117.22, 31.83)),
                    ("340104001002", "西湖社区", 40, 0, (117.22, 31.80, 117.24, 31.83)),
                ]
            ),
        ),
        (catalog.get("grid"), _frame([("340104001001001", None, 5, 10, (117.20, 31.80, 117.21, 31.83))])),
        (catalog.get("compound"), _frame([("3401040010010001", "梧桐苑", 5, 10, (117.202, 31.805, 117.206, 31.809))])),
    ]


def test_builder_output_has_no_external_url_at_all(frames):
    html = offline.render_html(build_hierarchy_map(frames, dataset={"name": "t", "synthetic": True}))
    assert not ANY_URL.search(html), ANY_URL.search(html)
    for ref in ASSET_REF.findall(html):
        assert ref.startswith(assets.VENDOR_URL + "/"), ref
    for text in (
        "街道 Street (1)",
        "社区 Community (2)",
        "网格 Grid (1)",
        "小区 Compound (1)",
        "户数 Households",
        "人数 People",
        "合成示例数据",
        "东园社区",
        "图例 Legend",
        "L.control.scale",
        "L.control.layers",
    ):
        assert _has(html, text), text
    assert "L.tileLayer" not in html  # no basemap configured
    assert _has(html, "网格 340104001001001")  # unnamed grid falls back to its code


def test_builder_shows_the_signed_in_user_escaped(frames):
    html = offline.render_html(build_hierarchy_map(frames, user="王<b>五</b>（社区工作者）"))
    assert _has(html, "用户 User: 王&lt;b&gt;五&lt;/b&gt;（社区工作者）") and "王<b>五" not in html


def test_builder_fits_bounds_in_lat_lon_order(frames):
    html = build_hierarchy_map(frames).get_root().render()
    m = re.search(r"fitBounds\(\s*\[\[([\d.]+),\s*([\d.]+)\],\s*\[([\d.]+),\s*([\d.]+)\]\]", html)
    assert m, "fitBounds missing"
    lat1, lon1, lat2, lon2 = map(float, m.groups())
    assert (lat1, lon1, lat2, lon2) == pytest.approx((31.80, 117.20, 31.83, 117.24))


def test_builder_without_synthetic_flag_has_no_banner(frames):
    html = build_hierarchy_map(frames, dataset={"name": "real", "synthetic": False}).get_root().render()
    assert not _has(html, "合成示例数据") and "real" in html


def test_builder_works_with_an_empty_grid_layer(frames, catalog):
    frames[2] = (catalog.get("grid"), frames[2][1].iloc[0:0])
    html = offline.render_html(build_hierarchy_map(frames))
    assert _has(html, "网格 Grid (0)") and _has(html, "小区 Compound (1)")


def test_builder_with_no_data_at_all_says_so(catalog):
    empty = gpd.GeoDataFrame({"code": [], "name": []}, geometry=gpd.GeoSeries([], crs=4326), crs=4326)
    html = offline.render_html(build_hierarchy_map([(catalog.get("street"), empty)]))
    assert _has(html, "暂无数据 No data yet")


def test_builder_refuses_a_frame_without_crs(frames):
    lyr, f = frames[0]
    with pytest.raises(ValueError, match="no CRS"):
        build_hierarchy_map([(lyr, f.set_crs(None, allow_override=True))])


def test_basemap_from_settings_is_a_tile_layer_not_an_asset(frames):
    osm = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    html = offline.render_html(build_hierarchy_map(frames, basemap_url=osm, basemap_attribution="© OpenStreetMap"))
    assert "L.tileLayer" in html and osm in html
    assert offline.external_asset_urls(html) == []


def test_offline_helpers_never_touch_folium_class_lists():
    before = (list(folium.Map.default_js), list(folium.Map.default_css))
    m = offline.offline_map()
    folium.Marker((39.9, 116.4), icon=folium.Icon(prefix="fa", icon="house")).add_to(m)
    html = offline.render_html(m)
    assert (list(folium.Map.default_js), list(folium.Map.default_css)) == before
    for name in ("leaflet_js", "leaflet_css", "awesome_markers_js", "fontawesome_css"):
        assert assets.asset_url(name) in html
    assert not ANY_URL.search(html)
    assert "https://" in folium.Map.default_js[0][1]  # the class still has folium's own CDN list


@pytest.mark.parametrize("plugin", [Fullscreen, Draw, MarkerCluster], ids=lambda p: p.__name__)
def test_a_plugin_without_a_local_copy_is_refused(plugin):
    """No folium plugin is vendored: using one must fail loudly, not fetch it from a CDN."""
    with pytest.raises(offline.NoLocalAsset, match=f"{plugin.__name__} needs"):
        offline.localize(plugin())


def test_render_html_refuses_cdn_links():
    with pytest.raises(offline.NoLocalAsset, match="cdn"):
        offline.render_html(folium.Map(tiles=None))


def test_map_endpoint_from_postgis(mini_city_url, web_assets):
    with signed_in_client(Settings(), mini_city_url, role="admin") as c:
        r = c.get("/map")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        html = r.text
        assert not ANY_URL.search(html), ANY_URL.search(html)
        refs = ASSET_REF.findall(html)
        assert refs and all(
            ref.startswith(assets.VENDOR_URL + "/") or ref in ("/dashboard", "/coverage") for ref in refs
        )  # assets, or the links to the dashboard and the coverage page
        for ref in refs:
            assert c.get(ref).status_code == 200, ref
    for text in (
        "示范街道",
        "东园社区",
        "西湖社区",
        "梧桐苑",
        "网格 Grid (3)",
        "小区 Compound (2)",
        "合成示例数据",
        "户数 households 45 · 人数 people 10",
        "管理员 admin",
    ):
        assert _has(html, text), text


def test_map_without_a_session_redirects_to_login(mini_city_url):
    eng = app_engine(mini_city_url)
    try:
        with TestClient(create_app(Settings(), engine=eng)) as c:
            r = c.get("/map", follow_redirects=False)
    finally:
        eng.dispose()
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/map"


@pytest.mark.parametrize("role,scope", [("community_staff", COMM_A), ("grid_worker", GRID_A1), ("viewer", COMM_A)])
def test_map_shows_only_the_callers_area(mini_city_url, web_assets, role, scope):
    with signed_in_client(Settings(), mini_city_url, role=role, scope=scope) as c:
        r = c.get("/map")
    assert r.status_code == 200
    html = r.text
    # its own community, its grids and compound, and the outline of its street
    for text in (
        "示范街道",
        "东园社区",
        "梧桐苑",
        "街道 Street (1)",
        "社区 Community (1)",
        "网格 Grid (2)",
        "小区 Compound (1)",
        f"范围 scope {scope}",
        "户数 households 5 · 人数 people",
    ):
        assert _has(html, text), text
    for text in ("西湖社区", "碧水湾", "西湖一网格", "340104001002"):  # nothing of the sibling community
        assert not _has(html, text), text
    assert not _has(html, "居民 Resident")  # residents are never drawn on this map


def test_map_endpoint_says_how_to_install_missing_assets(mini_city_url, tmp_path):
    (tmp_path / "package-lock.json").write_text("{}")
    with signed_in_client(Settings(web_dir=tmp_path), mini_city_url, role="admin") as c:
        r = c.get("/map")
    assert r.status_code == 503 and "npm ci" in r.json()["detail"]


def test_ensure_assets_runs_npm_once_then_skips(tmp_path):
    web = tmp_path / "web"
    web.mkdir()
    (web / "package-lock.json").write_text('{"lockfileVersion": 3}')
    log = tmp_path / "npm.log"
    files = " ".join(f'"$prefix/node_modules/{rel}"' for rel in assets.ASSETS.values())
    fake = tmp_path / "npm"
    fake.write_text(
        textwrap.dedent(f"""\
        #!/bin/sh
        echo "$@" >> "{log}"
        prefix="$3"
        for f in {files}; do mkdir -p "$(dirname "$f")"; : > "$f"; done
        """)
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    assert not assets.assets_current(web)
    assert assets.ensure_assets(web, npm=str(fake)) is True
    assert assets.assets_current(web) and assets.missing_assets(web) == []
    assert assets.ensure_assets(web, npm=str(fake)) is False  # idempotent
    calls = log.read_text().splitlines()
    assert len(calls) == 1 and calls[0].startswith("ci --prefix") and "--ignore-scripts" in calls[0]
    (web / "package-lock.json").write_text('{"lockfileVersion": 3, "changed": true}')
    assert not assets.assets_current(web)  # a new lock means a new install
    assert assets.ensure_assets(web, npm=str(fake)) is True
    os.remove(web / "node_modules" / assets.ASSETS["leaflet_js"])
    assert assets.missing_assets(web) == ["leaflet_js"] and not assets.assets_current(web)
