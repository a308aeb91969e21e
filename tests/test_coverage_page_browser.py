"""The coverage page /coverage in Debian's Chromium on the full sample city (issue 12,
item 5): sign in, pick a category by its Chinese name and a circle with the mouse, wait for the layers, read
the suggested sites (community names, households added), sort the per-community table, add a facility in
what-if mode and see newly covered households; the choice is in the URL hash; nothing leaves 127.0.0.1 and
the console stays clean. A viewer (no analyses) gets the layers and the table without sites and what-if."""

from __future__ import annotations

import pytest
from auth_helpers import ensure_user
from live_server import Recorder, browser, serve, sign_in  # noqa: F401  (fixture)
from sample_fixtures import sample_city, sample_city_url  # noqa: F401  (fixtures)
from sqlalchemy import create_engine, pool, text

CATEGORY = "gb_health_centre"  # 社区卫生服务中心
CATEGORY_ZH = "社区卫生服务中心"


@pytest.fixture(scope="module")
def city(sample_city_url):
    """The full sample city (read only: the server computes the distances in memory when no run is stored)."""
    eng = create_engine(sample_city_url, poolclass=pool.NullPool)
    with eng.connect() as conn:
        names = dict(conn.execute(text("SELECT code, name FROM community")).all())
        street = conn.execute(text("SELECT min(street_code) FROM community")).scalar()
    eng.dispose()
    return {"url": sample_city_url, "names": names, "street": street}


@pytest.fixture(scope="module")
def base(city, tmp_path_factory):
    home = tmp_path_factory.mktemp("coverage_home")
    with serve(city["url"], login_rate_per_minute=1000, home=home) as url:
        yield url


def open_page(browser, base: str, username: str, path: str = "/coverage"):
    page = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
    rec = Recorder(page)
    sign_in(page, base, path, username)
    rec.errors[:] = [e for e in rec.errors if "401" not in e]  # the redirect before signing in
    return page, rec


def wait_data(page, name: str, value: str, timeout: int = 60000) -> None:
    page.wait_for_function("([n, v]) => document.body.dataset[n] === v", arg=[name, value], timeout=timeout)


def mouse_click(page, selector: str) -> None:
    page.locator(selector).scroll_into_view_if_needed()
    box = page.locator(selector).bounding_box()
    assert box, selector
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def click_lonlat(page, lon: float, lat: float) -> None:
    pt = page.evaluate(
        "ll => { const p = coveragePage.map.latLngToContainerPoint(ll); return [p.x, p.y]; }", [lat, lon]
    )
    box = page.locator("#map").bounding_box()
    page.mouse.click(box["x"] + pt[0], box["y"] + pt[1])


def test_planner_answers_where_a_clinic_is_missing(base, browser, city, tmp_path):
    admin = ensure_user(city["url"], "admin")
    page, rec = open_page(browser, base, admin)
    wait_data(page, "catalog", "ready")
    wait_data(page, "outlines", "ready")
    assert int(page.evaluate("document.body.dataset.communities")) == len(city["names"])
    # a category by its Chinese name, a circle with the mouse
    label = page.locator("#category option", has_text=CATEGORY_ZH).first.inner_text()
    assert label.startswith(CATEGORY_ZH)
    page.select_option("#category", label=label)
    mouse_click(page, '#circles button[data-value="c10"]')
    assert page.locator('#circles button[data-value="c10"]').inner_text().startswith("10分钟")
    key = f"{CATEGORY}|c10|standard"
    wait_data(page, "layers", key)
    assert f"category={CATEGORY}" in page.url and "circle=c10" in page.url
    assert int(page.evaluate("document.body.dataset.buildings")) > 0
    assert int(page.evaluate("document.body.dataset.gaps")) > 0
    # suggested sites name their community and the households they add
    wait_data(page, "sites", key)
    items = page.locator("#sites li")
    assert items.count() >= 1
    for i in range(items.count()):
        li = items.nth(i)
        assert city["names"][li.get_attribute("data-community")] in li.inner_text()
        assert "户" in li.inner_text()
    site_labels = page.locator(".site-icon span").all_inner_texts()
    assert site_labels and all(any(n in t for n in city["names"].values()) for t in site_labels)
    # the table sorts (mouse on the header), a row zooms to its community
    mouse_click(page, '#communities th[data-key="gaps"]')
    assert page.locator("#communities").get_attribute("data-sort") == "gaps:desc"
    gaps = [int(x.replace(",", "")) for x in page.locator("#communities tbody tr td:nth-child(5)").all_inner_texts()]
    assert gaps == sorted(gaps, reverse=True) and len(gaps) == len(city["names"])
    mouse_click(page, '#communities th[data-key="name"]')
    assert page.locator("#communities").get_attribute("data-sort") == "name:asc"
    first = page.locator("#communities tbody tr").first
    code = first.get_attribute("data-code")
    first.click()
    wait_data(page, "zoomed", code)
    # what-if: add a facility where the best site is (facilities and sites hidden so the click reaches the map)
    site = page.evaluate(
        "() => { const l = coveragePage.layers.sites.getLayers()[0].getLatLng(); return [l.lng, l.lat]; }"
    )
    mouse_click(page, "#whatif-toggle")
    wait_data(page, "whatif", "on")
    mouse_click(page, '#layer-toggles input[data-layer="facilities"]')
    page.evaluate("ll => { coveragePage.map.setView(ll, 16, {animate: false}); }", [site[1], site[0]])
    click_lonlat(page, site[0], site[1])
    wait_data(page, "whatif", "ready", timeout=90000)
    gained = int(page.evaluate("document.body.dataset.whatifHouseholds"))
    assert gained > 0
    assert f"+{gained:,}" in page.locator("#whatif-households").inner_text()
    page.screenshot(path=str(tmp_path / "coverage.png"))
    assert rec.off_host() == []
    assert rec.errors == []
    # the hash is shareable: a new page opens on the same choice
    other, rec2 = open_page(browser, base, admin)
    other.goto("about:blank")
    other.goto(f"{base}/coverage#category={CATEGORY}&circle=c5&profile=elderly")
    wait_data(other, "layers", f"{CATEGORY}|c5|elderly")
    assert other.locator("#profiles button.on").inner_text().startswith("老年人")
    assert rec2.off_host() == [] and rec2.errors == []


def test_viewer_sees_layers_without_analyses(base, browser, city):
    viewer = ensure_user(city["url"], "viewer", city["street"])
    page, rec = open_page(browser, base, viewer)
    wait_data(page, "outlines", "ready")
    page.wait_for_function(
        "() => !!document.body.dataset.layers && document.body.dataset.layers.includes('|c15|')", timeout=60000
    )
    wait_data(page, "sites", "forbidden")
    assert page.locator("#sites-card").is_hidden() and page.locator("#whatif-card").is_hidden()
    codes = page.locator("#communities tbody tr").evaluate_all("trs => trs.map(t => t.dataset.code)")
    assert codes and all(c.startswith(city["street"]) for c in codes)
    assert rec.off_host() == []
    assert [e for e in rec.errors if "403" not in e] == []
