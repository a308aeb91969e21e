"""Leaders' indicators on /dashboard (领导驾驶舱) in headless Chromium, on the gridded sample city with the
demo's synthetic events, staff gaps and compound breaches: signed in as a street leader, the events panel
(open, overdue, share closed within the grid, median time to close, monthly trend) and the rule breaches
(一格三员 gaps, compound rules, special-group service gaps) show the APIs' numbers at street, community
and grid level, and the map overlays draw the APIs' features. A viewer sees suppressed special-group
cells as given, and a source answering 403 leaves its panel and overlay out without an error banner."""

from __future__ import annotations

import pytest
from auth_helpers import USER_PASSWORD, ensure_user, owner_url_of
from live_server import Recorder, browser, serve, sign_in  # noqa: F401  (fixture)
from rich.console import Console
from sample_fixtures import sample_city  # noqa: F401  (fixture)
from security_city import build_gridded_city
from sqlalchemy import create_engine, pool, text

from gisgov.sample import events as sample_events
from gisgov.sample import governance as sample_governance
from gisgov.security import accounts

LEADER = "dashind_leader"


@pytest.fixture(scope="module")
def city(db_factory, sample_city):
    """A database of its own (the demo steps change staff and compounds): grids, staff, a year of
    synthetic events, staff gaps and compound breaches; a street leader and a viewer of the first street."""
    url = build_gridded_city(db_factory, sample_city, "gisgov_test_dashind")
    owner = owner_url_of(url)
    sample_events.demo_step(owner, Console(quiet=True))
    sample_governance.demo_step(owner, Console(quiet=True))
    eng = create_engine(owner, poolclass=pool.NullPool)
    try:
        with eng.begin() as c:
            street = c.execute(text("SELECT code FROM street ORDER BY code LIMIT 1")).scalar_one()
            accounts.add_user(c, LEADER, USER_PASSWORD, "street_leader", street, display_name="李主任")
            gridded = (
                c.execute(
                    text("SELECT DISTINCT community_code FROM grid_current() WHERE community_code LIKE :s ORDER BY 1"),
                    {"s": street + "%"},
                )
                .scalars()
                .all()
            )
    finally:
        eng.dispose()
    return {"url": url, "street": street, "community": gridded[0], "viewer": ensure_user(url, "viewer", street)}


@pytest.fixture(scope="module")
def base(city):
    with serve(city["url"]) as url:
        yield url


def open_page(browser, base, username, path):
    page = browser.new_context(viewport={"width": 1920, "height": 1080}).new_page()
    rec = Recorder(page)
    sign_in(page, base, path, username)
    rec.errors[:] = [e for e in rec.errors if "401" not in e]  # the redirect before signing in
    return page, rec


def wait_indicators(page, key: str) -> None:
    page.wait_for_function("k => document.body.dataset.indicators === k", arg=key, timeout=60000)


def value(page, sel: str) -> str:
    return page.locator(sel).get_attribute("data-value")


def fmt(x) -> str:
    return "" if x is None else str(x)


def assert_events(page, ev: dict) -> None:
    assert ev["total"] > 0, "the demo gives every view events"
    for k in ("open", "overdue", "share_closed_in_grid", "median_hours_to_close", "total"):
        assert value(page, f'#events [data-ind="{k}"]') == fmt(ev[k]), k
    assert page.locator('#events [data-ind="open"] .value').inner_text().startswith(f"{ev['open']:,}")
    assert page.locator('#events [data-ind="overdue"] .value').inner_text().startswith(f"{ev['overdue']:,}")
    share = f"{ev['share_closed_in_grid'] * 100:.1f}%"
    assert page.locator('#events [data-ind="share_closed_in_grid"] .value').inner_text() == share
    h = ev["median_hours_to_close"]
    assert (f"{h / 24:.1f}" if h >= 48 else f"{h:.1f}") in page.locator(
        '#events [data-ind="median_hours_to_close"]'
    ).inner_text()
    bars = page.locator("#events .trend rect")
    months = ev["trend"][-12:]
    assert bars.count() == len(months) > 0
    got = bars.evaluate_all("rs => rs.map(r => [r.dataset.month, +r.dataset.reported, +r.dataset.closed])")
    assert got == [[m["month"], m["reported"], m["closed"]] for m in months]
    assert page.locator("#events-link").get_attribute("href") == "/events"


def special_sums(summary: dict, pick) -> dict:
    out: dict[str, dict[str, int | None]] = {}
    for u in summary["units"]:
        if not pick(u):
            continue
        for g in u["groups"]:
            o = out.setdefault(g["group"], {"beyond": None, "overdue": None})
            for f in ("beyond", "overdue"):
                if g[f] is not None:
                    assert isinstance(g[f], int)  # a street leader sees exact counts
                    o[f] = (o[f] or 0) + g[f]
    return out


def test_street_leader_sees_events_and_breaches_with_overlays(base, browser, city, tmp_path):
    street, community = city["street"], city["community"]
    page, rec = open_page(browser, base, LEADER, "/dashboard")
    api = lambda u: page.request.get(base + u).json()  # noqa: E731
    page.goto(f"{base}/dashboard#/street/{street}")
    wait_indicators(page, f"street/{street}")

    # events: the street's figures; for a street leader the same as the unfiltered statistics of its scope
    ev = api(f"/api/dashboard/events?street={street}")
    plain = api("/api/events/stats")
    assert {k: ev[k] for k in ("total", "open", "overdue", "median_hours_to_close")} == {
        k: plain[k] for k in ("total", "open", "overdue", "median_hours_to_close")
    }
    assert ev["overdue"] > 0
    assert_events(page, ev)

    # staff gaps
    gaps = api(f"/api/staff/gaps?code={street}&geometry=polygon")
    s = gaps["summary"]
    assert s["no_leader"] or s["no_full_time"], "the demo leaves staff gaps"
    assert value(page, '#staff-gaps [data-ind="no_leader"]') == str(len(s["no_leader"]))
    assert value(page, '#staff-gaps [data-ind="no_full_time"]') == str(len(s["no_full_time"]))
    assert value(page, '#staff-gaps [data-ind="caseload_over"]') == str(len(s["caseload_over"]))
    assert value(page, '#staff-gaps [data-ind="grids_ok"]') == str(s["grids_ok"])
    assert page.locator("#staff-gaps li.link").count() == min(5, len(gaps["features"]))

    # compound rules: the check's totals
    chk = api(f"/api/compounds/check?code={street}")
    assert sum(chk["totals"]["breaches"].values()) > 0, "the demo leaves compound breaches"
    for rule, n in chk["totals"]["breaches"].items():
        assert value(page, f'#compound-breaches [data-ind="{rule}"]') == str(n), rule
    assert value(page, '#compound-breaches [data-ind="old_ratio"]') == fmt(chk["totals"]["old_ratio"])
    assert (
        f"{chk['totals']['old_ratio'] * 100:.1f}%"
        in page.locator('#compound-breaches [data-ind="old_ratio"]').inner_text()
    )

    # special-group service gaps: the street's communities added up (exact for a street leader)
    sums = special_sums(
        api("/api/special/summary"), lambda u: u["level"] == "community" and u["code"].startswith(street)
    )
    assert any(v["beyond"] for v in sums.values()), "someone lives beyond the circle in the sample city"
    assert page.locator("#special-gaps tbody tr").count() == len(sums)
    for g, v in sums.items():
        row = page.locator(f'#special-gaps tr[data-group="{g}"]')
        assert row.locator('[data-ind="beyond"]').get_attribute("data-value") == fmt(v["beyond"]), g
        assert row.locator('[data-ind="overdue"]').get_attribute("data-value") == fmt(v["overdue"]), g

    # overlays: off at first; each switch draws the API's features of this street
    assert page.locator("#overlays").is_visible()
    assert page.locator(".ev-cluster, path.gap-shape, path.breach-shape").count() == 0
    page.locator("#events-map").click()  # the events panel's "地图 map" link switches the overlay on
    geo = api("/api/events/geojson")
    clusters = [f for f in geo["features"] if f["properties"]["code"].startswith(street)]
    assert clusters
    page.wait_for_function("n => document.querySelectorAll('.ev-cluster').length === n", arg=len(clusters))
    assert page.locator("#ov-events").is_checked()
    shown = sorted(int(t) for t in page.locator(".ev-cluster span").all_inner_texts())
    assert shown == sorted(f["properties"]["open"] for f in clusters)
    page.locator("#ov-staff").check()
    page.wait_for_function("n => document.querySelectorAll('path.gap-shape').length === n", arg=len(gaps["features"]))
    page.locator("#compound-breaches .maplink").click()
    breaches = api(f"/api/compounds/breaches?code={street}")
    page.wait_for_function(
        "n => document.querySelectorAll('path.breach-shape').length === n", arg=len(breaches["features"])
    )
    assert len(breaches["features"]) == len(chk["breaches"]) > 0
    page.screenshot(path=str(tmp_path / "indicators_street.png"))

    # a community with grids: its own event statistics; overlays stay on and follow the unit
    page.goto(f"{base}/dashboard#/community/{community}")
    wait_indicators(page, f"community/{community}")
    assert_events(page, api(f"/api/events/stats?community={community}"))
    cg = api(f"/api/staff/gaps?code={community}&geometry=polygon")
    assert page.locator("path.gap-shape").count() == len(cg["features"])
    assert page.locator(".ev-cluster").count() == len(
        [f for f in clusters if f["properties"]["code"].startswith(community)]
    )
    page.screenshot(path=str(tmp_path / "indicators_community.png"))

    # click a grid on the map (its cluster): the grid's statistics and its compounds' breaches
    grid = api(f"/api/stats/community/{community}")["children"]["items"][0]["code"]
    page.goto(f"{base}/dashboard#/grid/{grid}")
    wait_indicators(page, f"grid/{grid}")
    assert_events(page, api(f"/api/events/stats?grid={grid}"))
    doc = api(f"/api/stats/grid/{grid}")
    mine = {c["code"] for c in doc["children"]["items"]}
    expected = [
        f for f in api(f"/api/compounds/breaches?code={community}")["features"] if f["properties"]["code"] in mine
    ]
    assert page.locator("path.breach-shape").count() == len(expected)
    for rule in chk["totals"]["breaches"]:
        n = sum(rule in f["properties"]["rules"] for f in expected)
        assert value(page, f'#compound-breaches [data-ind="{rule}"]') == str(n), rule
    page.screenshot(path=str(tmp_path / "indicators_grid.png"))

    assert page.locator("#notice").is_hidden()
    assert rec.off_host() == []
    assert rec.errors == [], rec.errors
    print(f"screenshots: {tmp_path}")
    page.context.close()


def test_viewer_sees_suppressed_cells_and_a_forbidden_source_is_left_out(base, browser, city, tmp_path):
    street = city["street"]
    page, rec = open_page(browser, base, city["viewer"], "/dashboard")
    # pretend the role may not read staff gaps: the panel and the overlay are left out, nothing else changes
    page.route(
        "**/api/staff/gaps*",
        lambda route: route.fulfill(
            status=403, content_type="application/json", body='{"detail": "无权限 not allowed", "error": "Forbidden"}'
        ),
    )
    page.goto(f"{base}/dashboard#/street/{street}")
    wait_indicators(page, f"street/{street}")
    api = lambda u: page.request.get(base + u).json()  # noqa: E731
    assert page.locator("#staff-gaps").is_hidden()
    assert page.locator('#overlays label[data-overlay="staff"]').is_hidden()
    assert page.locator('#overlays label[data-overlay="events"]').is_visible()
    assert page.locator("#notice").is_hidden()
    assert page.locator("#events-card").is_visible() and page.locator("#compound-breaches").is_visible()
    assert_events(page, api(f"/api/dashboard/events?street={street}"))

    # suppressed special-group cells are shown as given: "<5"/"≥5" never become numbers
    summary = api("/api/special/summary")
    assert summary["suppression"] is not None
    units = [u for u in summary["units"] if u["level"] == "community" and u["code"].startswith(street)]
    checked = 0
    for g in {x["group"] for u in units for x in u["groups"]}:
        cells = [x["beyond"] for u in units for x in u["groups"] if x["group"] == g and x["beyond"] is not None]
        tags = [c for c in cells if isinstance(c, str)]
        if not tags:
            continue
        cell = page.locator(f'#special-gaps tr[data-group="{g}"] [data-ind="beyond"]')
        text_ = cell.inner_text()
        for t in set(tags):
            assert t in text_, (g, text_)
        nums = [c for c in cells if isinstance(c, int)]
        if nums:
            assert text_.startswith(f"{sum(nums):,}"), (g, text_)
        checked += 1
    assert checked, "the viewer's street has suppressed beyond-the-circle cells"
    page.screenshot(path=str(tmp_path / "indicators_viewer.png"))
    assert rec.off_host() == []
    assert [e for e in rec.errors if "403" not in e] == [], rec.errors
    page.context.close()
