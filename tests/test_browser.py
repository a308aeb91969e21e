"""/map and /docs in a real headless browser (Debian chromium through Playwright), served by
uvicorn on a free local port, the app connected as the app role: the user signs in on the /login
page with mouse and keyboard, Leaflet loads, the layers of the user's area are drawn, tooltips
work, no request leaves 127.0.0.1 and the console stays clean; after signing out /map asks for
sign-in again. A screenshot is written to the test's tmp folder."""

from __future__ import annotations

import pytest
from auth_helpers import ensure_user
from live_server import Recorder, browser, serve, sign_in  # noqa: F401  (fixture)
from mini_city import COMM_A, mini_city_engine, mini_city_url  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def live_server(mini_city_url):
    with serve(mini_city_url) as base:
        yield base


def test_map_draws_offline_in_a_browser(live_server, browser, mini_city_url, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 820})
    rec = Recorder(page)
    sign_in(page, live_server, "/map", ensure_user(mini_city_url, "admin"))
    page.wait_for_function("() => document.querySelectorAll('path.leaflet-interactive').length > 0", timeout=15000)

    assert page.evaluate("typeof window.L") == "object"
    assert page.evaluate("L.version") == "1.9.4"
    # 1 street + 2 communities + 3 grids + 2 compounds
    assert page.evaluate("document.querySelectorAll('path.leaflet-interactive').length") == 8
    assert page.locator("text=合成示例数据").is_visible()
    assert page.locator(".leaflet-control-scale").is_visible()
    assert page.locator(".leaflet-control-layers").is_visible()

    compound = page.locator('path.leaflet-interactive[stroke="#d35400"]').first
    box = compound.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    tip = page.locator(".leaflet-tooltip")
    tip.wait_for(timeout=5000)
    text = tip.inner_text()
    assert "户数 Households" in text and "人数 People" in text and ("梧桐苑" in text or "碧水湾" in text)

    shot = tmp_path / "map.png"
    page.mouse.move(5, 400)
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")

    assert rec.off_host() == [], f"requests left the server: {rec.off_host()}"
    assert rec.errors == [], f"console errors: {rec.errors}"
    assert any("/static/vendor/leaflet/dist/leaflet.js" in u for u in rec.requests)
    page.close()


def test_community_staff_see_their_area_then_sign_out(live_server, browser, mini_city_url, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 820})
    rec = Recorder(page)
    sign_in(page, live_server, "/map", ensure_user(mini_city_url, "community_staff", COMM_A))
    page.wait_for_function("() => document.querySelectorAll('path.leaflet-interactive').length > 0", timeout=15000)
    # its street's outline, its community, its 2 grids and its compound; nothing of 西湖社区
    assert page.evaluate("document.querySelectorAll('path.leaflet-interactive').length") == 5
    body = page.locator("body").inner_text()
    assert "东园社区" in body and "西湖社区" not in body
    assert f"范围 scope {COMM_A}" in body
    page.screenshot(path=str(tmp_path / "map_community.png"))
    status = page.evaluate("""async () => {
        const csrf = document.cookie.split('; ').find(c => c.startsWith('gisgov_csrf=')).split('=')[1];
        const r = await fetch('/api/auth/logout', {method: 'POST', headers: {'X-CSRF-Token': csrf}});
        return r.status;
    }""")
    assert status == 200
    page.goto(f"{live_server}/map", wait_until="networkidle")
    assert page.url.startswith(f"{live_server}/login?next=")  # the session is over
    assert page.locator("#login-submit").is_visible()
    assert rec.off_host() == [], f"requests left the server: {rec.off_host()}"
    assert rec.errors == [], f"console errors: {rec.errors}"
    page.close()


def test_docs_render_offline_in_a_browser(live_server, browser, mini_city_url, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    rec = Recorder(page)
    sign_in(page, live_server, "/docs", ensure_user(mini_city_url, "admin"))
    page.locator(".swagger-ui .info .title").wait_for(timeout=15000)
    assert "gisgov" in page.locator(".swagger-ui .info .title").inner_text()
    assert page.get_by_text("/api/layers/{level}", exact=True).first.is_visible()
    page.screenshot(path=str(tmp_path / "docs.png"))
    assert rec.off_host() == [], f"requests left the server: {rec.off_host()}"
    assert rec.errors == [], f"console errors: {rec.errors}"
    page.close()


def test_sample_city_map_in_a_browser(sample_city_url, browser, tmp_path):
    """The full synthetic city (no grids yet: an empty grid layer) draws every feature, offline."""
    with serve(sample_city_url) as base:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        rec = Recorder(page)
        sign_in(page, base, "/map", ensure_user(sample_city_url, "admin"))
        expected = 0
        for level in ("street", "community", "grid", "compound"):
            expected += page.request.get(f"{base}/api/layers/{level}?limit=10000").json()["numberReturned"]
        page.goto(f"{base}/map", wait_until="networkidle")
        page.wait_for_function("() => document.querySelectorAll('path.leaflet-interactive').length > 0")
        assert expected > 150
        assert page.evaluate("document.querySelectorAll('path.leaflet-interactive').length") == expected
        assert page.locator("text=合成示例数据").is_visible()
        page.screenshot(path=str(tmp_path / "sample_map.png"))
        print(f"screenshot: {tmp_path / 'sample_map.png'}")
        assert rec.off_host() == [], f"requests left the server: {rec.off_host()}"
        assert rec.errors == [], f"console errors: {rec.errors}"
        page.close()
