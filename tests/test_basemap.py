"""Basemap configuration (issue 12, item 7): GISGOV_BASEMAP presets fill basemap_url / basemap_attribution
(what the pages and folium maps read), the CSP allows exactly the preset's tile hosts (Tianditu t0..t7,
AMap webrd01..04, Tencent rt0..3), a custom URL stays as configured, none (the default) allows no tile host,
and a preset missing its key is refused at start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gisgov.api.headers import page_csp
from gisgov.config import Settings, basemap_config, tile_hosts
from gisgov.maps.offline import finish_page, gcj02_js, offline_map, render_html


def img_src(settings: Settings) -> list[str]:
    csp = page_csp(b"<html></html>", settings.basemap_url)
    part = next(p.strip() for p in csp.split(";") if p.strip().startswith("img-src"))
    return part.split()[1:]


def test_none_is_the_default_and_allows_no_tile_host(monkeypatch):
    for var in ("GISGOV_BASEMAP", "GISGOV_BASEMAP_URL", "GISGOV_BASEMAP_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    s = Settings()
    assert s.basemap == "none" and s.basemap_url is None
    assert basemap_config(s) == {"kind": "none", "crs": "wgs84", "attribution": "", "layers": [], "hosts": []}
    assert img_src(s) == ["'self'", "data:", "blob:"]


def test_none_wins_over_a_stale_url():
    s = Settings(basemap="none", basemap_url="https://tiles.example.org/{z}/{x}/{y}.png")
    assert s.basemap_url is None and img_src(s) == ["'self'", "data:", "blob:"]


def test_tianditu(monkeypatch):
    monkeypatch.setenv("GISGOV_BASEMAP", "tianditu")
    monkeypatch.setenv("GISGOV_BASEMAP_TOKEN", "k123")
    s = Settings()
    cfg = basemap_config(s)
    assert cfg["kind"] == "tianditu" and cfg["crs"] == "wgs84"  # CGCS2000 ~ WGS84: no shift
    assert [lyr["overlay"] for lyr in cfg["layers"]] == [False, True]
    assert "LAYER=vec" in cfg["layers"][0]["url"] and "LAYER=cva" in cfg["layers"][1]["url"]
    assert all("tk=k123" in lyr["url"] for lyr in cfg["layers"])
    assert s.basemap_url.startswith("https://t0.tianditu.gov.cn/vec_w/") and "{s}" not in s.basemap_url
    assert s.basemap_attribution == "天地图 Tianditu"
    hosts = [f"https://t{i}.tianditu.gov.cn" for i in range(8)]
    assert cfg["hosts"] == hosts
    assert img_src(s) == ["'self'", "data:", "blob:", *hosts]


def test_tianditu_needs_a_key(monkeypatch):
    monkeypatch.delenv("GISGOV_BASEMAP_TOKEN", raising=False)
    with pytest.raises(ValidationError, match="GISGOV_BASEMAP_TOKEN"):
        Settings(basemap="tianditu")


@pytest.mark.parametrize(
    ("kind", "hosts"),
    [
        ("amap", [f"https://webrd0{i}.is.autonavi.com" for i in (1, 2, 3, 4)]),
        ("tencent", [f"https://rt{i}.map.gtimg.com" for i in range(4)]),
    ],
)
def test_gcj02_presets(kind, hosts):
    s = Settings(basemap=kind)
    cfg = basemap_config(s)
    assert cfg["crs"] == "gcj02" and cfg["hosts"] == hosts
    assert img_src(s) == ["'self'", "data:", "blob:", *hosts]


def test_custom_and_the_old_settings_keep_working():
    s = Settings(basemap_url="http://127.0.0.1:8090/tiles/{z}/{x}/{y}.png", basemap_attribution="本地 local")
    assert s.basemap == "custom"
    cfg = basemap_config(s)
    assert cfg["hosts"] == ["http://127.0.0.1:8090"] and cfg["attribution"] == "本地 local"
    assert img_src(s) == ["'self'", "data:", "blob:", "http://127.0.0.1:8090"]
    assert Settings(basemap_url="/tiles/base/{z}/{x}/{y}.png").basemap == "custom"
    assert basemap_config(Settings(basemap_url="/local/{z}/{x}/{y}.png"))["hosts"] == []
    gcj = Settings(basemap="custom", basemap_url="https://gcj.example.org/{z}/{x}/{y}.png", basemap_crs="gcj02")
    assert basemap_config(gcj)["crs"] == "gcj02"
    with pytest.raises(ValidationError, match="GISGOV_BASEMAP_URL"):
        Settings(basemap="custom")


def test_tile_hosts_expands_subdomains():
    assert tile_hosts("https://{s}.tile.example.org/{z}/{x}/{y}.png", "ab") == [
        "https://a.tile.example.org",
        "https://b.tile.example.org",
    ]
    assert tile_hosts(None) == [] and tile_hosts("/x/{z}") == []


def test_folium_gets_the_gcj02_crs_only_for_gcj02_tiles():
    m = finish_page(offline_map(), "标题 Title", basemap_config(Settings(basemap="amap")))
    page = render_html(m)
    assert "<title>标题 Title</title>" in page
    assert "L.CRS.EPSG3857 = gcjCrs(L);" in page and "function wgs2gcj" in page
    assert 'setPrefix("Leaflet")' in page
    plain = render_html(finish_page(offline_map(), "t", basemap_config(Settings(basemap="none"))))
    assert "gcjCrs" not in plain and 'setPrefix("Leaflet")' in plain
    assert "function gcj2wgs" in gcj02_js()
