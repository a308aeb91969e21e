"""/dashboard (领导驾驶舱) in headless Chromium on the full synthetic sample city: the KPI cards show the
API's numbers, clicking a street then a community polygon drills down (breadcrumb and KPIs follow),
a table row and the breadcrumb navigate, the indicator switch recolours the map; nothing leaves
127.0.0.1 and the console stays clean. Screenshots go to the test's tmp folder."""

from __future__ import annotations

import pytest
from playwright.sync_api import sync_playwright
from sample_fixtures import sample_city, sample_city_url  # noqa: F401  (fixtures)
from sqlalchemy import create_engine, pool
from test_browser import ARGS, CHROMIUM, Recorder, serve

STREET = "340104001"
KPIS = {"households": ("households",), "residents": ("residents",), "buildings": ("buildings",),
        "compounds": ("compounds",), "age_60": ("age", "60+"), "special": ("special", "people"), "grids": ("grids",)}


@pytest.fixture(scope="module")
def base(sample_city_url):  # noqa: F811
    engine = create_engine(sample_city_url, poolclass=pool.NullPool)
    try:
        with serve(engine) as url:
            yield url
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def wait_ready(page, key: str) -> None:
    page.wait_for_function("k => document.body.dataset.ready === k", arg=key, timeout=20000)


def dig(d: dict, path: tuple) -> int:
    for k in path:
        d = d[k]
    return d


def assert_kpis(page, stats: dict) -> None:
    for kpi, path in KPIS.items():
        card = page.locator(f'.kpi[data-kpi="{kpi}"]')
        expected = dig(stats, path)
        assert card.get_attribute("data-value") == str(expected), kpi
        assert f"{expected:,}" in card.locator(".value").inner_text(), kpi


def test_dashboard_drills_down_offline(base, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    rec = Recorder(page)
    page.goto(f"{base}/dashboard", wait_until="networkidle")
    wait_ready(page, "city")
    assert page.evaluate("L.version") == "1.9.4"
    city = page.request.get(f"{base}/api/stats").json()
    assert page.locator("path.child-shape").count() == len(city["children"]["items"]) == 2
    assert_kpis(page, city["stats"])
    assert page.locator("#synthetic").is_visible() and "合成示例数据" in page.locator("#synthetic").inner_text()
    assert page.locator("#crumbs").inner_text().strip() == "示例城"
    assert not page.locator("#editor-link").is_visible()  # only a community's plan is edited
    assert page.locator("#children tbody tr").count() == 2
    assert page.locator("#groups .bar").count() == 14
    page.screenshot(path=str(tmp_path / "dashboard_city.png"))

    # click the street polygon, then a community polygon
    page.locator(f"path.child-{STREET}").click()
    wait_ready(page, f"street/{STREET}")
    street = page.request.get(f"{base}/api/stats/street/{STREET}").json()
    assert_kpis(page, street["stats"])
    community = street["children"]["items"][0]
    assert page.locator("path.child-shape").count() == len(street["children"]["items"]) == 6
    page.locator(f"path.child-{community['code']}").click()
    wait_ready(page, f"community/{community['code']}")
    assert page.url.endswith(f"#/community/{community['code']}")
    comm = page.request.get(f"{base}/api/stats/community/{community['code']}").json()
    assert_kpis(page, comm["stats"])
    assert comm["stats"]["households"] == community["stats"]["households"]
    crumbs = page.locator("#crumbs").inner_text()
    assert crumbs.split("›")[0].strip() == "示例城"
    assert street["name"] in crumbs and crumbs.rstrip().endswith(comm["name"])
    assert page.locator("#unit-name").inner_text() == comm["name"]
    assert page.locator("#editor-link").is_visible()
    assert page.locator("#editor-link").get_attribute("href") == f"/grids/editor?community={community['code']}"
    # no grids yet: the children are the community's compounds, one row and one polygon each
    n = len(comm["children"]["items"])
    assert comm["children"]["level"] == "compound" and n > 3
    assert page.locator("#children tbody tr").count() == page.locator("path.child-shape").count() == n

    # the indicator switch recolours the map and the legend
    before = page.locator("path.child-shape").evaluate_all("ps => ps.map(p => p.getAttribute('fill'))")
    page.select_option("#indicator", "elderly")
    assert "老年人口占比" in page.locator("#legend").inner_text()
    after = page.locator("path.child-shape").evaluate_all("ps => ps.map(p => p.getAttribute('fill'))")
    assert before != after
    assert page.locator('#indicator option[value="complete"]').is_disabled()  # coverage not computed here
    page.screenshot(path=str(tmp_path / "dashboard_community.png"))

    # a table row drills to that compound; the breadcrumb goes back up
    row = page.locator("#children tbody tr").first
    target = row.get_attribute("data-code")
    row.click()
    wait_ready(page, f"compound/{target}")
    leaf = page.request.get(f"{base}/api/stats/compound/{target}").json()
    assert_kpis(page, leaf["stats"])
    assert "最底层" in page.locator("#legend").inner_text()
    page.locator("#crumbs a", has_text=street["name"]).click()
    wait_ready(page, f"street/{STREET}")
    assert_kpis(page, street["stats"])
    page.go_back()
    wait_ready(page, f"compound/{target}")

    assert rec.off_host() == [], f"requests left the server: {rec.off_host()}"
    assert rec.errors == [], f"console errors: {rec.errors}"
    assert any("/static/vendor/leaflet/dist/leaflet.js" in u for u in rec.requests)
    assert any("/static/dashboard/dashboard.js" in u for u in rec.requests)
    print(f"screenshots: {tmp_path}")
    page.close()


def test_dashboard_small_screen_and_bad_link(base, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    rec = Recorder(page)
    page.goto(f"{base}/dashboard#/street/{STREET}", wait_until="networkidle")
    wait_ready(page, f"street/{STREET}")
    for sel in ("#map", ".kpi[data-kpi='households']", "#children", "#legend", ".map-toolbar"):
        box = page.locator(sel).bounding_box()
        assert box and box["width"] > 0 and box["x"] + box["width"] <= 1366, sel
    map_box = page.locator("#map").bounding_box()
    assert map_box["width"] > 600 and map_box["height"] > 600
    page.screenshot(path=str(tmp_path / "dashboard_1366.png"))
    page.goto(f"{base}/dashboard#/street/340104099")
    page.reload()
    wait_ready(page, "error")
    assert "未找到街道" in page.locator("#notice").inner_text()
    assert rec.off_host() == []
    assert [e for e in rec.errors if "404" not in e] == []  # only the expected 404 of the unknown street
    page.close()


def test_map_links_to_the_dashboard(base, browser):
    page = browser.new_page()
    page.goto(f"{base}/map")
    page.locator('a[href="/dashboard"]').click()
    wait_ready(page, "city")
    page.close()
