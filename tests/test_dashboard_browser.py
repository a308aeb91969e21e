"""/dashboard (领导驾驶舱) in headless Chromium on the full synthetic sample city, signed in through
/login with keyboard and mouse: the KPI cards show the API's numbers, clicking a street then a
community polygon drills down (breadcrumb and KPIs follow), a table row and the breadcrumb navigate,
the indicator switch recolours the map; the top bar shows who is signed in and signs out; a viewer
sees only its street and small special-group counts as "<5"; nothing leaves 127.0.0.1 and the
console stays clean. The app connects as the app role (row-level security). Screenshots go to the
test's tmp folder."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from auth_helpers import USER_PASSWORD, ensure_user, owner_url_of
from live_server import Recorder, browser, serve, sign_in  # noqa: F401  (fixture)
from sample_fixtures import sample_city, sample_city_url  # noqa: F401  (fixtures)
from sqlalchemy import create_engine, pool, text

from gisgov.security import accounts

STREET = "340104001"
LEADER = ("dash_leader", "王主任")  # a street leader with a display name
KPIS = {
    "households": ("households",),
    "residents": ("residents",),
    "buildings": ("buildings",),
    "compounds": ("compounds",),
    "age_60": ("age", "60+"),
    "special": ("special", "people"),
    "grids": ("grids",),
}


@pytest.fixture(scope="module")
def users(sample_city_url):
    owner = create_engine(owner_url_of(sample_city_url), poolclass=pool.NullPool)
    try:
        with owner.begin() as conn:
            if conn.execute(text("SELECT 1 FROM app_user WHERE username = :u"), {"u": LEADER[0]}).first() is None:
                accounts.add_user(conn, LEADER[0], USER_PASSWORD, "street_leader", STREET, display_name=LEADER[1])
    finally:
        owner.dispose()
    return {
        "admin": ensure_user(sample_city_url, "admin"),
        "leader": LEADER[0],
        "viewer": ensure_user(sample_city_url, "viewer", STREET),
    }


@pytest.fixture(scope="module")
def base(sample_city_url, users):
    with serve(sample_city_url) as url:
        yield url


def wait_ready(page, key: str) -> None:
    page.wait_for_function("k => document.body.dataset.ready === k", arg=key, timeout=30000)


def signed_in_page(browser, base: str, username: str, path: str = "/dashboard", **kw):
    """A new browser context: open ``path``, get sent to /login, type the credentials, submit."""
    page = browser.new_context(**kw).new_page()
    rec = Recorder(page)
    sign_in(page, base, path, username)
    rec.errors[:] = [e for e in rec.errors if "401" not in e]  # the redirect before signing in
    return page, rec


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


def test_dashboard_drills_down_offline(base, browser, users, tmp_path):
    page, rec = signed_in_page(browser, base, users["admin"], viewport={"width": 1920, "height": 1080})
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
    page.context.close()


def test_dashboard_small_screen_and_bad_link(base, browser, users, tmp_path):
    page, rec = signed_in_page(browser, base, users["admin"], viewport={"width": 1366, "height": 768})
    wait_ready(page, "city")
    page.goto(f"{base}/dashboard#/street/{STREET}")
    wait_ready(page, f"street/{STREET}")
    for sel in ("#map", ".kpi[data-kpi='households']", "#children-wrap", "#legend", ".map-toolbar"):
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
    page.context.close()


def test_map_links_to_the_dashboard(base, browser, users):
    page, _ = signed_in_page(browser, base, users["admin"], path="/map")
    page.locator('a[href="/dashboard"]').click()
    wait_ready(page, "city")
    page.close()


def test_top_bar_shows_the_user_and_signs_out(base, browser, users, tmp_path):
    page, rec = signed_in_page(browser, base, users["leader"], viewport={"width": 1600, "height": 900})
    wait_ready(page, "city")
    user = page.locator("#user")
    user.wait_for(state="visible")
    assert page.locator("#user-name").inner_text() == LEADER[1]
    assert "街道领导" in page.locator("#user-role").inner_text()
    # a street leader's city: its own street only, exact special-group numbers, no suppression note
    assert page.locator("path.child-shape").count() == 1
    assert page.locator(f"path.child-{STREET}").count() == 1
    assert page.locator("#groups .bar.masked").count() == 0 and page.locator("#groups-note").is_hidden()
    assert page.locator("#area-note").is_visible()  # the city counts only the leader's street
    page.screenshot(path=str(tmp_path / "dashboard_signed_in.png"))
    page.locator("#sign-out").click()
    page.wait_for_url(lambda u: urlsplit(u).path == "/login")
    assert page.context.cookies() == [] or all(
        c["name"] not in ("gisgov_session", "gisgov_csrf") or not c["value"] for c in page.context.cookies()
    )
    assert page.request.get(f"{base}/api/auth/me").status == 401  # the session is gone
    page.goto(f"{base}/dashboard")
    page.wait_for_url(lambda u: urlsplit(u).path == "/login" and "next=" in u)
    assert rec.off_host() == []
    assert [e for e in rec.errors if "401" not in e] == [], rec.errors
    page.context.close()


def test_viewer_sees_its_street_and_small_cells_masked(base, browser, users, tmp_path):
    page, rec = signed_in_page(browser, base, users["viewer"], viewport={"width": 1600, "height": 900})
    wait_ready(page, "city")
    assert page.locator("path.child-shape").count() == 1
    community = page.request.get(f"{base}/api/stats/street/{STREET}").json()["children"]["items"][0]["code"]
    page.goto(f"{base}/dashboard#/community/{community}")
    wait_ready(page, f"community/{community}")
    doc = page.request.get(f"{base}/api/stats/community/{community}").json()
    small = [g for g, v in doc["stats"]["special"]["groups"].items() if v == "<5"]
    assert small, "the sample community has small special-group counts"
    for g in small:
        bar = page.locator(f'#groups .bar[data-code="{g}"]')
        assert bar.get_attribute("class").split() == ["bar", "masked"]
        assert bar.locator(".num").inner_text() == "<5"
    assert "<5" in page.locator("#groups-note").inner_text()
    assert page.locator("#staff-list").is_hidden()
    # hovering a compound row shows the masked figures, not a number
    page.locator("#children tbody tr").first.hover()
    assert page.locator("#hoverbox").is_visible()
    page.screenshot(path=str(tmp_path / "dashboard_viewer.png"))
    assert rec.off_host() == [] and rec.errors == [], rec.errors
    page.context.close()
