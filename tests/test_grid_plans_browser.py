"""The grid editor's plan versions panel (方案版本, #plans-panel) in headless Chromium on the sample city at
scale 0.4 with one community planned and activated: the panel lists the API's versions; a planner
proposes a plan with one grid locked (a new draft, the locked grid unchanged, opened in the editor when
the editor can open versions), compares a hand-edited draft with the active version (the moved buildings
are highlighted on the map, as many as the diff API counts; counts before/after per grid as the API's),
repairs the open version and deletes that draft (when the delete route exists), downloads the exports;
a street leader activates the edited draft after a confirmation showing the diff (the draft becomes
启用, the old version 归档), and the proposed draft, made from the old version, then answers the 409
conflict, explained in Chinese. Nothing leaves 127.0.0.1, the console stays clean. Screenshots (1366×768)
go to the test's tmp folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from auth_helpers import ensure_user
from live_server import Recorder, browser, serve, sign_in  # noqa: F401  (fixture)
from shapely.geometry import shape
from test_grid_editor_browser import plan_one_community

VIEW = {"width": 1366, "height": 768}


@pytest.fixture(scope="module")
def planned(db_factory):
    """The sample city at scale 0.4 with one community (≥ 3 grids) planned and activated: (code, version, url)."""
    engine, code, version, url = plan_one_community(db_factory, "gisgov_test_gridplans", min_grids=3)
    try:
        yield code, version, url
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def base(planned):
    with serve(planned[2], login_rate_per_minute=1000, solver_max_s=3.0) as url:
        yield url


@pytest.fixture(scope="module")
def planner(planned):
    """A planner (规划人员) of the community's street: may propose, repair and save, not activate."""
    return ensure_user(planned[2], "planner", planned[0][:9])


@pytest.fixture(scope="module")
def leader(planned):
    """A street leader (街道领导): may activate plans."""
    return ensure_user(planned[2], "street_leader", planned[0][:9])


def open_editor(browser, base: str, code: str, user: str):
    page = browser.new_page(viewport=VIEW, accept_downloads=True)
    rec = Recorder(page)
    sign_in(page, base, f"/grids/editor?community={code}", user)
    page.wait_for_function("() => document.body.dataset.ready === 'ready'", timeout=30000)
    page.wait_for_function("() => document.getElementById('plans-panel').dataset.state === 'ready'", timeout=20000)
    return page, rec


def listed(page) -> dict[int, str]:
    return {
        int(r["v"]): r["s"]
        for r in page.locator("#plans-list li.plan[data-version]").evaluate_all(
            "lis => lis.map(l => ({v: l.dataset.version, s: l.dataset.status}))"
        )
    }


def loads(page) -> str:
    return page.evaluate("() => document.getElementById('plans-panel').dataset.loads || ''")


def wait_loaded(page, before: str) -> None:
    page.wait_for_function(
        "b => { const p = document.getElementById('plans-panel'); return p.dataset.loads !== b && !p.dataset.busy; }",
        arg=before,
        timeout=60000,
    )


def row(page, version: int):
    return page.locator(f"#plans-list li[data-version='{version}']")


def csrf_headers(page, base: str) -> dict[str, str]:
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "gisgov_csrf")
    return {"X-CSRF-Token": token, "Origin": base}


def edited_draft(page, base: str, code: str, version: int) -> tuple[int, bool]:
    """A draft saved from an edit session on ``version`` with the smallest compound that borders another
    grid moved into it (the way a planner's hand edits arrive); and whether it obeys every hard rule."""
    h = csrf_headers(page, base)
    s = page.request.post(f"{base}/api/grids/sessions", data={"community": code, "plan": version}, headers=h).json()
    sid = s["session"]
    layers = page.request.get(f"{base}/api/grids/sessions/{sid}/layers").json()
    grids = {g["code"]: shape(g["geometry"]) for g in layers["grids"]}
    options = []
    for f in layers["compounds"]["features"]:
        p = f["properties"]
        if f["geometry"] is None or p["households"] == 0 or len(p["grids"]) != 1:
            continue
        geom = shape(f["geometry"])
        options += [
            (p["households"], p["code"], dst)
            for dst, g in grids.items()
            if dst != p["grids"][0] and g.distance(geom) < 1e-6
        ]
    assert options, "no compound borders another grid"
    _, compound, dst = min(options)
    r = page.request.post(f"{base}/api/grids/sessions/{sid}/move", data={"compound": compound, "to": dst}, headers=h)
    assert r.status == 200, r.text()
    ok = page.request.get(f"{base}/api/grids/sessions/{sid}").json()["ok"]
    r = page.request.post(f"{base}/api/grids/sessions/{sid}/save", data={"note": "手工调整 moved"}, headers=h)
    assert r.status == 200, r.text()
    return r.json()["version"], ok


def has_route(base: str, page, method: str, path: str) -> bool:
    spec = page.request.get(f"{base}/openapi.json").json()
    return method in spec["paths"].get(path, {})


def test_plan_lifecycle_in_the_panel(planned, base, browser, planner, leader, tmp_path):
    code, v1, _ = planned
    page, rec = open_editor(browser, base, code, planner)
    can_open = page.evaluate("() => typeof (window.gridEditor || {}).open === 'function'")

    # the panel lists the API's versions; the active one is marked as open in the editor
    api = {p["version"]: p["status"] for p in page.request.get(f"{base}/api/grids/plans/{code}").json()}
    assert listed(page) == api == {v1: "active"}
    assert "启用" in row(page, v1).locator(".plan-status").inner_text()
    assert row(page, v1).get_attribute("aria-current") == "true"
    assert page.locator("#plans-panel").get_attribute("data-open") == str(v1)
    # a planner may not activate: no activate button anywhere
    assert page.locator("#plans-list button[data-act='activate']").count() == 0
    page.screenshot(path=str(tmp_path / "plans_open.png"))

    # 自动划分 with the first grid locked: a new draft, listed (and opened)
    order = page.evaluate(
        "() => { const s = typeof gridEditor.state === 'function' ? gridEditor.state() : gridEditor.state; return s.order; }"
    )
    locked = order[0]
    before = loads(page)
    page.locator("#plans-propose").click()
    dlg = page.locator("dialog#plans-dialog[open]")
    assert dlg.locator("input[name=lock]").count() == len(order)
    dlg.locator(f"input[name=lock][value='{locked}']").click()
    page.screenshot(path=str(tmp_path / "plans_propose_dialog.png"))
    dlg.locator("#dlg-propose").click()
    page.wait_for_function("() => document.getElementById('plans-panel').dataset.lastSaved", timeout=60000)
    wait_loaded(page, before)
    page.wait_for_function("() => !document.getElementById('plans-panel').dataset.busy", timeout=30000)
    v2 = int(page.locator("#plans-panel").get_attribute("data-last-saved"))
    assert v2 > v1 and listed(page) == {v1: "active", v2: "draft"}
    assert "草稿" in row(page, v2).locator(".plan-status").inner_text()
    assert page.locator("dialog#plans-dialog[open]").count() == 0
    if can_open:
        page.wait_for_function(f"() => document.getElementById('plans-panel').dataset.open === '{v2}'", timeout=30000)
        assert row(page, v2).get_attribute("aria-current") == "true"
    # the locked grid is unchanged in the draft
    diff = page.request.get(f"{base}/api/grids/diff/{code}?a={v1}&b={v2}").json()
    same = next(g for g in diff["grids"] if g["code"] == locked)
    assert same["before"] == same["after"] and same["before"]["households"] > 0
    assert not [m for m in diff["moved"] if locked in (m["from"], m["to"])]

    # 对比: active → a hand-edited draft; the moved buildings are highlighted on the map, as many as the API says
    before = loads(page)
    v3, v3_ok = edited_draft(page, base, code, v1)
    page.evaluate("() => gridPlans.reload()")
    wait_loaded(page, before)
    assert listed(page)[v3] == "draft"
    diff = page.request.get(f"{base}/api/grids/diff/{code}?a={v1}&b={v3}").json()
    assert diff["buildings_moved"] > 0
    page.locator("#plans-a").select_option(str(v1))
    page.locator("#plans-b").select_option(str(v3))
    page.locator("#plans-compare-go").click()
    page.wait_for_function(
        f"() => document.getElementById('plans-panel').dataset.compared === '{v1}:{v3}'", timeout=30000
    )
    assert int(page.locator("#plans-panel").get_attribute("data-highlighted")) == diff["buildings_moved"]
    moved_on_map = "#map .plan-moved, #map path.building-shape[fill='#ffffff']"
    assert page.locator(moved_on_map).count() == diff["buildings_moved"]
    assert int(page.locator("#plans-diff .diff-sum").get_attribute("data-moved")) == diff["buildings_moved"]
    shown = page.locator("#plans-diff table.diff-table tbody tr").evaluate_all(
        "trs => trs.map(t => [t.dataset.code, +t.dataset.before, +t.dataset.after])"
    )
    assert sorted(shown) == sorted(
        [g["code"], (g["before"] or {}).get("households", 0), (g["after"] or {}).get("households", 0)]
        for g in diff["grids"]
    )
    page.screenshot(path=str(tmp_path / "plans_compare.png"))
    page.locator("#plans-diff-clear").click()
    assert page.locator(moved_on_map).count() == 0

    # 导出: the code table downloads as CSV
    row(page, v1).locator("details.plan-export summary").click()
    with page.expect_download() as dl:
        row(page, v1).locator("a.dl-csv").click()
    csv = Path(dl.value.path()).read_bytes()
    assert dl.value.suggested_filename.endswith(".csv")
    assert csv.startswith(b"\xef\xbb\xbf") and code.encode() in csv
    exports = has_route(base, page, "get", "/api/grids/plans/{community}/{version}/export")
    if exports:
        for cls, magic in (("a.dl-gpkg", b"SQLite format 3\x00"), ("a.dl-shp", b"PK\x03\x04")):
            with page.expect_download() as dl:
                row(page, v1).locator(cls).click()
            assert Path(dl.value.path()).read_bytes()[: len(magic)] == magic, cls

    # 修复 the open version → another draft; 删除草稿 deletes it after a confirmation
    deletes = has_route(base, page, "delete", "/api/grids/plans/{community}/{version}")
    before = loads(page)
    page.locator("#plans-repair").click()
    page.wait_for_function(
        f"() => +(document.getElementById('plans-panel').dataset.lastSaved || 0) > {v3}", timeout=60000
    )
    wait_loaded(page, before)
    v4 = int(page.locator("#plans-panel").get_attribute("data-last-saved"))
    assert listed(page)[v4] == "draft"
    if deletes:
        page.wait_for_function("() => !document.getElementById('plans-panel').dataset.busy", timeout=30000)
        before = loads(page)
        row(page, v4).locator("button[data-act='delete']").click()
        dlg = page.locator("dialog#plans-dialog[open]")
        assert "删除草稿" in dlg.locator("h2").inner_text()
        assert page.evaluate("() => document.activeElement.id") == "dlg-cancel"  # the safe choice has the focus
        dlg.locator("#dlg-delete").click()
        wait_loaded(page, before)
        assert v4 not in listed(page)
        assert v4 not in {p["version"] for p in page.request.get(f"{base}/api/grids/plans/{code}").json()}
    assert rec.off_host() == [], rec.off_host()
    assert rec.errors == [], rec.errors
    page.close()

    # a street leader activates the edited draft: the confirmation shows the diff against the active one
    page, rec = open_editor(browser, base, code, leader)
    before = loads(page)
    row(page, v3).locator("button[data-act='activate']").click()
    dlg = page.locator("dialog#plans-dialog[open]")
    dlg.locator(".diff-sum").wait_for(timeout=20000)
    assert int(dlg.locator(".diff-sum").get_attribute("data-moved")) == diff["buildings_moved"]
    assert dlg.locator("table.diff-table tbody tr").count() == len(diff["grids"])
    assert f"启用第 {v3} 版" in dlg.locator("h2").inner_text()
    page.screenshot(path=str(tmp_path / "plans_activate_dialog.png"))
    dlg.locator("#dlg-activate").click()
    if not v3_ok:  # the edit left a grid under the minimum: refused (409), explained, confirmed with force
        dlg.locator("#dlg-force").wait_for(timeout=30000)
        assert "未启用：方案有规则问题" in dlg.locator(".dlg-msg").inner_text()
        page.screenshot(path=str(tmp_path / "plans_activate_breaks.png"))
        dlg.locator("#dlg-force").click()
    page.wait_for_function(f"() => document.getElementById('plans-panel').dataset.activated === '{v3}'", timeout=60000)
    wait_loaded(page, before)
    now = listed(page)
    assert now[v3] == "active" and now[v1] == "archived" and now[v2] == "draft"
    assert "归档" in row(page, v1).locator(".plan-status").inner_text()
    assert "启用" in row(page, v3).locator(".plan-status").inner_text()
    api = {p["version"]: p["status"] for p in page.request.get(f"{base}/api/grids/plans/{code}").json()}
    assert api[v3] == "active" and api[v1] == "archived"

    # the proposed draft was made from version v1, no longer active: 409, said in Chinese with what to do,
    # and the offer to activate it anyway; cancelling keeps the draft
    row(page, v2).locator("button[data-act='activate']").click()
    dlg = page.locator("dialog#plans-dialog[open]")
    dlg.locator("#dlg-activate").click()
    dlg.locator("#dlg-rebase").wait_for(timeout=30000)
    text = dlg.locator(".dlg-msg").inner_text()
    assert "方案冲突，未启用" in text and f"第 {v3} 版已由 {leader}" in text and "草稿已保留" in text, text
    page.screenshot(path=str(tmp_path / "plans_conflict.png"))
    dlg.locator("#dlg-cancel").click()
    assert page.locator("dialog#plans-dialog[open]").count() == 0
    assert listed(page)[v2] == "draft"
    page.screenshot(path=str(tmp_path / "plans_after.png"))
    assert rec.off_host() == [], rec.off_host()
    # the one refusal the page was asked for (the 409), nothing else
    assert [e for e in rec.errors if "409" not in e and "Conflict" not in e] == [], rec.errors
    print(
        f"screenshots: {tmp_path}; editor opens versions: {can_open}; delete route: {deletes}; exports: {exports}; "
        f"edited draft obeys the rules: {v3_ok}"
    )
    page.close()
