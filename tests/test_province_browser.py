"""The province page /province in a real browser (issue 14, item 6b): a database with the roll-up of two
cities loaded (a small sample city exported under two codes, one of them two days ago: stale). An admin
(bound to the top) sees the per-city table with the province totals (exact sums), the stale marker, the
bar chart and the map of the cities (outlines: the union of each city's exported streets), clicks a city
on the map with the mouse and reads its popup; a community account gets the page with the refusal (the
API answers 403). Nothing is loaded from outside the app."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from auth_helpers import ensure_user
from live_server import Recorder, browser, serve, sign_in  # noqa: F401  (fixture)
from sqlalchemy import create_engine, pool, text

from gisgov.api import app as app_module
from gisgov.rollup import export, figures, load

CODE_A, CODE_C = "340104", "340198"
ROLLUP = "gisgov.api.routes.rollup"


def _resigned(doc, at, code=None):
    d = json.loads(json.dumps(doc))
    d["manifest"]["exported_at"] = at.isoformat()
    if code is not None:
        old = d["manifest"]["city_code"]
        d["manifest"]["city_code"] = code
        for u in d["units"]:
            u["code"] = code if u["code"] == old else u["code"]
            u["parent_code"] = code if u.get("parent_code") == old else u.get("parent_code")
    d["manifest"].pop("checksum", None)
    d["manifest"]["checksum"] = figures.checksum(d)
    return d


@pytest.fixture(scope="module")
def province_city(db_factory):
    from gisgov.sample import generate_city
    from gisgov.sample.load import load_city
    from gisgov.security.pii import Vault

    url = db_factory.create(prefix="gisgov_test_province_page")
    load_city(url, generate_city(seed=11, scale=0.2), vault=Vault(hashlib.sha256(b"province page").digest()))
    eng = create_engine(url, poolclass=pool.NullPool)
    now = datetime.now(UTC)
    try:
        with eng.connect() as conn:
            doc = export.build(conn, city_code=CODE_A, small_cell_k=5, exported_at=now - timedelta(hours=2))
            community = conn.execute(text("SELECT code FROM community ORDER BY code LIMIT 1")).scalar_one()
        docs = [doc, _resigned(doc, now - timedelta(hours=50), CODE_C)]
        for d in docs:
            with eng.begin() as conn:
                load.load(conn, load.verify(d))
    finally:
        eng.dispose()
    return url, docs, community


def test_province_page(province_city, browser, monkeypatch):
    url, docs, community = province_city
    if ROLLUP not in app_module.ROUTER_MODULES:  # until the app registers the router
        monkeypatch.setattr(app_module, "ROUTER_MODULES", [*app_module.ROUTER_MODULES, ROLLUP])
    admin = ensure_user(url, "admin", username="t_province_admin")
    staff = ensure_user(url, "community_staff", community, username="t_province_staff")
    city = [next(u for u in d["units"] if u["level"] == "city")["figures"] for d in docs]
    with serve(url, login_rate_per_minute=1000) as base:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        rec = Recorder(page)
        sign_in(page, base, "/province", admin)
        root = page.locator("#province")
        page.wait_for_function("() => document.getElementById('province').dataset.state !== 'loading'", timeout=30000)
        assert root.get_attribute("data-state") == "ready"
        assert root.get_attribute("data-cities") == "2" and root.get_attribute("data-features") == "2"
        # the province row: the exact sum of the two cities' residents
        total = page.locator('#cities tr[data-city="province"] td[data-ind="residents"]').inner_text()
        assert total.replace(",", "") == str(city[0]["residents"] + city[1]["residents"])
        # the stale marker on the city exported two days ago only
        assert page.locator(f'#cities tr[data-city="{CODE_C}"]').get_attribute("class") == "stale"
        assert "过期" in page.locator(f'#cities tr[data-city="{CODE_C}"]').inner_text()
        assert page.locator(f'#cities tr[data-city="{CODE_A}"]').get_attribute("class") in (None, "")
        # suppression labels shown as labels, never as numbers
        labelled = {k: v for k, v in city[0].items() if isinstance(v, str)}
        for k, v in labelled.items():
            cell = page.locator(f'#cities tr[data-city="{CODE_A}"] td[data-ind="{k}"] [data-suppressed]')
            assert cell.inner_text() == v
        assert len(page.locator("#bars .bar").all()) == 2
        # click a city on the map with the mouse: its popup names it
        box = page.locator("#map").bounding_box()
        path = page.locator("#map path.leaflet-interactive").first
        pb = path.bounding_box()
        assert pb is not None and box is not None
        page.mouse.click(pb["x"] + pb["width"] / 2, pb["y"] + pb["height"] / 2)
        page.wait_for_selector(".leaflet-popup-content", timeout=10000)
        popup = page.locator(".leaflet-popup-content").inner_text()
        assert "人数" in popup and ("340104" in popup or "340198" in popup)
        page.screenshot(path="/tmp/province_page.png")
        assert rec.off_host() == [] and not [e for e in rec.errors if "favicon" not in e], rec.errors
        page.close()

        page = browser.new_page(viewport={"width": 1200, "height": 800})
        sign_in(page, base, "/province", staff)
        page.wait_for_function("() => document.getElementById('province').dataset.state !== 'loading'", timeout=30000)
        assert page.locator("#province").get_attribute("data-state") == "refused"
        assert "仅限" in page.locator("#notice").inner_text()
        assert page.locator("#cities tr").count() == 0
        page.close()
