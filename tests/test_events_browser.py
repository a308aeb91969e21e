"""/events (事件上报) in headless Chromium at 375 px wide, signed in as a grid worker of the mini city:
the form files an event at a tapped point, the event then appears in the list and in the clustered
map layer; nothing leaves 127.0.0.1, the console stays clean and the page does not scroll sideways."""

from __future__ import annotations

import pytest
from auth_helpers import ensure_user
from live_server import Recorder, browser, serve, sign_in  # noqa: F401  (fixture)
from mini_city import GRID_A1, load_mini_city
from sqlalchemy import create_engine, pool, text

from gisgov.api import app as app_module

EVENTS = "gisgov.api.routes.events"


@pytest.fixture(scope="module")
def city(db_factory):
    url = db_factory.create(prefix="gisgov_test_events_web")
    load_mini_city(url)
    return url


@pytest.fixture(scope="module")
def base(city):
    added = EVENTS not in app_module.ROUTER_MODULES
    if added:  # until the router is wired into the app
        app_module.ROUTER_MODULES.append(EVENTS)
    try:
        with serve(city, login_rate_per_minute=1000) as url:
            yield url
    finally:
        if added:
            app_module.ROUTER_MODULES.remove(EVENTS)


def test_phone_form_files_an_event_that_shows_in_list_and_map(city, base, browser, tmp_path):
    worker = ensure_user(city, "grid_worker", GRID_A1)
    page = browser.new_page(viewport={"width": 375, "height": 740}, device_scale_factor=2, has_touch=True)
    rec = Recorder(page)
    sign_in(page, base, "/events", worker)
    page.wait_for_function("() => document.body.dataset.ready === '1'", timeout=20000)
    # the grid outlines fit the view when they arrive: wait for them, or they move the map under the tap
    page.wait_for_function("() => document.body.dataset.grids === '1'", timeout=20000)
    page.select_option("#category", "anquan")
    page.fill("#description", "楼道堆放杂物 stairwell blocked by clutter")
    assert page.locator("#submit").is_disabled()  # no place yet
    # tap inside GRID_A1 (117.20-117.21 E)
    page.evaluate("eventsPage.map.setView([31.815, 117.205], 16, {animate: false})")
    pt = page.evaluate(
        "() => { const p = eventsPage.map.latLngToContainerPoint([31.815, 117.205]); return [p.x, p.y]; }"
    )
    box = page.locator("#map").bounding_box()
    page.mouse.click(box["x"] + pt[0], box["y"] + pt[1])
    assert page.locator("#submit").is_enabled()
    # a photo from the phone's camera: 3000×2000 with the GPS position in its EXIF
    from test_event_photos import jpeg_with_gps

    shot = tmp_path / "IMG_20261130.jpg"
    shot.write_bytes(jpeg_with_gps(size=(3000, 2000)))
    page.set_input_files("#photos", str(shot))
    page.locator("#submit").click()
    # either the event is filed or the page says why not; on a slow machine this may take a while
    try:
        page.wait_for_function(
            "() => document.body.dataset.lastEvent || document.body.dataset.reportError", timeout=60000
        )
    except Exception as exc:  # name what the page was doing when it got stuck
        raise AssertionError(
            f"no answer to the report: {page.locator('#report-msg').inner_text()!r}, "
            f"console/HTTP: {rec.errors}, requests: {rec.requests[-8:]}"
        ) from exc
    assert not page.evaluate("document.body.dataset.reportError || ''"), (
        page.locator("#report-msg").inner_text(),
        rec.errors,
    )
    eid = int(page.evaluate("document.body.dataset.lastEvent"))
    msg = page.locator("#report-msg").inner_text()
    assert GRID_A1 in msg and "照片 photos 1/1" in msg, msg
    with create_engine(city, poolclass=pool.NullPool).connect() as conn:
        w, h = conn.execute(text("SELECT width, height FROM event_photo WHERE event_id = :e"), {"e": eid}).one()
    assert (w, h) == (1600, 1067)  # scaled on the phone before sending
    page.screenshot(path=str(tmp_path / "events-report-375.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375

    eng = create_engine(city, poolclass=pool.NullPool)
    try:
        with eng.connect() as c:
            row = c.execute(
                text("SELECT grid_code, category, status, ST_X(geom) AS x FROM event WHERE id = :i"), {"i": eid}
            ).one()
    finally:
        eng.dispose()
    assert (row.grid_code, row.category, row.status) == (GRID_A1, "anquan", "reported")
    assert abs(row.x - 117.205) < 0.0005

    page.locator("#tab-list").click()
    page.wait_for_selector(f"#event-list li[data-id='{eid}']", timeout=20000)
    assert "楼道堆放杂物" in page.locator(f"#event-list li[data-id='{eid}']").inner_text()
    page.locator("#tab-map").click()
    page.wait_for_selector(f"#cluster-list li[data-code='{GRID_A1}']", timeout=20000)
    assert int(page.locator(f"#cluster-list li[data-code='{GRID_A1}']").get_attribute("data-open")) >= 1
    assert page.locator(f".cluster[data-code='{GRID_A1}']").count() == 1
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.screenshot(path=str(tmp_path / "events-map-375.png"), full_page=True)
    assert rec.off_host() == []
    assert rec.errors == [], rec.errors
    page.close()
