"""/grids/editor (网格划分编辑器) in headless Chromium on a small synthetic sample city with one community
planned and activated: the grid table shows the API's grids and households, clicking a compound and
then a neighbouring grid moves it (both grids change by the compound's households, the total stays),
undo restores both, saving gives a draft version; nothing leaves 127.0.0.1 and the console stays
clean. The page is reached through the sign-in page (a planner of the community's street), every
write it sends carries the CSRF token, and signing out ends the session. Screenshots go to the
test's tmp folder."""

from __future__ import annotations

import hashlib

import pytest
import shapely
from auth_helpers import ensure_user
from live_server import Recorder, browser, serve, sign_in  # noqa: F401  (fixture)
from shapely.geometry import shape
from sqlalchemy import create_engine, pool, text

from gisgov.gridding import plans, service
from gisgov.gridding.io import load_context, load_plan, save_plan
from gisgov.sample import generate_city
from gisgov.sample.load import load_city
from gisgov.security.pii import Vault

SEED = 20241123
VAULT = Vault(hashlib.sha256(b"grid editor test key").digest())


def plan_one_community(db_factory, prefix: str, min_grids: int = 2):
    """A fresh database with the sample city at scale 0.4 and one (unchallenged) community planned and
    activated: (engine, community code, active version, url)."""
    city = generate_city(seed=SEED, scale=0.4)
    url = db_factory.create(prefix=prefix)
    load_city(url, city, vault=VAULT)
    stranded = {c["community_code"] for c in city.meta["grid_challenges"]}
    code = min(set(city.communities["code"]) - stranded)
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.begin() as conn:
        out = service.plan_and_activate(conn, code, time_limit_s=2.0)
    assert out["grids"] >= min_grids and not out["forced"], out
    return engine, code, out["version"], url


@pytest.fixture(scope="module")
def planned(db_factory):
    engine, code, version, url = plan_one_community(db_factory, "gisgov_test_grideditor")
    try:
        yield engine, code, version, url
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def base(planned):
    with serve(planned[3], login_rate_per_minute=1000) as url:
        yield url


@pytest.fixture(scope="module")
def planner(planned):
    """A planner (规划人员) of the planned community's street."""
    return ensure_user(planned[3], "planner", planned[1][:9])


def rows(page) -> dict[str, tuple[int, int]]:
    return {
        r["code"]: (int(r["h"]), int(r["p"]))
        for r in page.locator("#grids tbody tr").evaluate_all(
            "trs => trs.map(t => ({code: t.dataset.code, h: t.dataset.households, p: t.dataset.people}))"
        )
    }


def click_lonlat(page, lon: float, lat: float) -> None:
    pt = page.evaluate("ll => { const p = gridEditor.map.latLngToContainerPoint(ll); return [p.x, p.y]; }", [lat, lon])
    box = page.locator("#map").bounding_box()
    page.mouse.click(box["x"] + pt[0], box["y"] + pt[1])


def wait_rev(page, before: str) -> None:
    page.wait_for_function(
        "r => document.body.dataset.rev !== r && !document.body.dataset.busy", arg=before, timeout=20000
    )


def pick_move(page, base: str):
    """A compound wholly in one grid that borders another grid: (props, geometry, its grid, the other
    grid, the other grid's geometry)."""
    sid = page.evaluate("() => gridEditor.state().sid")
    layers = page.request.get(f"{base}/api/grids/sessions/{sid}/layers").json()
    grids = {g["code"]: shape(g["geometry"]) for g in layers["grids"]}
    for f in layers["compounds"]["features"]:
        p = f["properties"]
        if f["geometry"] is None or p["households"] == 0 or len(p["grids"]) != 1:
            continue
        geom = shape(f["geometry"])
        near = [c for c, g in grids.items() if c != p["grids"][0] and g.distance(geom) < 1e-6]
        if near:
            return p, geom, p["grids"][0], min(near), grids[min(near)]
    raise AssertionError("no compound borders another grid")


def test_editor_moves_a_compound_and_undoes(planned, base, browser, planner, tmp_path):
    _, code, version, _ = planned
    page = browser.new_page(viewport={"width": 1600, "height": 960})
    rec = Recorder(page)
    posts = []
    page.on("request", lambda r: posts.append((r.url, r.headers)) if r.method == "POST" else None)
    sign_in(page, base, f"/grids/editor?community={code}", planner)
    page.wait_for_function("() => document.body.dataset.ready === 'ready'", timeout=30000)
    assert page.evaluate("() => L.version") == "1.9.4"
    page.wait_for_function("() => document.getElementById('who').dataset.username", timeout=10000)
    assert page.locator("#who").get_attribute("data-username") == planner
    assert "规划人员" in page.locator("#who").inner_text() and page.locator("#logout").is_visible()

    # the table and the map show the API's grids and households
    plan = page.request.get(f"{base}/api/grids/plans/{code}/{version}").json()
    api = {
        f["properties"]["code"]: (f["properties"]["households"], f["properties"]["people"]) for f in plan["features"]
    }
    shown = rows(page)
    assert shown == api and len(shown) >= 2
    assert page.locator("path.grid-shape").count() == len(api)
    assert page.locator(".grid-label").count() == len(api)
    total_h = sum(h for h, _ in api.values())
    assert int(page.locator("#summary").get_attribute("data-households")) == total_h
    assert page.locator("path.compound-shape").count() > 0 and page.locator(".building-shape").count() > 0
    page.screenshot(path=str(tmp_path / "editor_open.png"))

    # a compound wholly in one grid that borders another grid
    comp, geom, src, dst, target = pick_move(page, base)

    rev = page.evaluate("() => document.body.dataset.rev")
    inside = shapely.point_on_surface(geom)
    click_lonlat(page, inside.x, inside.y)
    assert page.locator("#selection").get_attribute("data-code") == comp["code"]
    assert page.locator("#selection").get_attribute("data-kind") == "compound"
    page.screenshot(path=str(tmp_path / "editor_selected.png"))
    at = shapely.point_on_surface(target)
    click_lonlat(page, at.x, at.y)
    wait_rev(page, rev)
    moved = rows(page)
    assert moved[src][0] == api[src][0] - comp["households"]
    assert moved[dst][0] == api[dst][0] + comp["households"]
    assert moved[src][1] == api[src][1] - comp["people"] and moved[dst][1] == api[dst][1] + comp["people"]
    assert sum(h for h, _ in moved.values()) == total_h
    assert {c: v for c, v in moved.items() if c not in (src, dst)} == {
        c: v for c, v in api.items() if c not in (src, dst)
    }
    assert int(page.locator("#summary").get_attribute("data-households")) == total_h
    last = page.locator("#last-move").inner_text()
    assert comp["name"] in last and dst[-3:] in last
    assert (
        page.locator("#last-move table.mini tbody tr").count() >= 2
    )  # both grids (and neighbours whose outline moved)
    # the labels on the map follow
    assert any(f"{moved[dst][0]:,} 户" in t for t in page.locator(".grid-label").all_inner_texts())
    page.screenshot(path=str(tmp_path / "editor_moved.png"))

    # undo restores both grids
    rev = page.evaluate("() => document.body.dataset.rev")
    page.locator("#undo").click()
    wait_rev(page, rev)
    assert rows(page) == api
    assert page.locator("#undo").is_disabled()
    assert "撤销" in page.locator("#last-move").inner_text()

    # move again, then save the session as a draft version
    rev = page.evaluate("() => document.body.dataset.rev")
    click_lonlat(page, inside.x, inside.y)
    click_lonlat(page, at.x, at.y)
    wait_rev(page, rev)
    assert rows(page)[dst][0] == api[dst][0] + comp["households"]
    rev = page.evaluate("() => document.body.dataset.rev")
    page.locator("#save").click()
    wait_rev(page, rev)
    saved = int(page.locator("#saved").get_attribute("data-version"))
    plans = {p["version"]: p for p in page.request.get(f"{base}/api/grids/plans/{code}").json()}
    assert plans[saved]["status"] == "draft" and plans[version]["status"] == "active"
    draft = page.request.get(f"{base}/api/grids/plans/{code}/{saved}").json()
    assert {f["properties"]["code"]: f["properties"]["households"] for f in draft["features"]}[dst] == moved[dst][0]
    page.screenshot(path=str(tmp_path / "editor_saved.png"))

    assert rec.off_host() == [], f"requests left the server: {rec.off_host()}"
    assert rec.errors == [], f"console errors: {rec.errors}"
    assert any("/static/vendor/leaflet/dist/leaflet.js" in u for u in rec.requests)
    assert any("/static/grid-editor/grid-editor.js" in u for u in rec.requests)

    # every write the page sent carried the CSRF token of its session (the gisgov_csrf cookie), as JSON
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "gisgov_csrf")
    writes = [(u, h) for u, h in posts if "/api/grids/" in u]
    assert len(writes) >= 5  # open, move, undo, move, save
    assert all(
        h.get("x-csrf-token") == csrf and h.get("content-type", "").startswith("application/json") for _, h in writes
    ), writes
    # the same write without the token is refused (the cookie alone is not enough)
    sid = page.evaluate("() => gridEditor.state().sid")
    r = page.request.post(f"{base}/api/grids/sessions/{sid}/save", data={}, headers={"Origin": base})
    assert r.status == 403
    # sign out: back to the sign-in page, and the editor wants a sign-in again
    page.locator("#logout").click()
    page.wait_for_url("**/login**", timeout=20000)
    page.goto(f"{base}/grids/editor?community={code}")
    page.wait_for_url("**/login?next=**", timeout=20000)
    print(f"screenshots: {tmp_path}")
    page.close()


def test_editor_expired_session_and_save_conflict(planned, base, browser, tmp_path):
    """A street leader: the session idles out (410: the page says so in Chinese and reopens it with its
    moves), then saves after someone else activated another plan (409: the page says what changed, keeps
    the edits; "rebase and save" stores the draft on top of the newly active plan)."""
    engine, code, _, url = planned
    leader = ensure_user(url, "street_leader", code[:9])
    page = browser.new_page(viewport={"width": 1600, "height": 960})
    rec = Recorder(page)
    sign_in(page, base, f"/grids/editor?community={code}", leader)
    page.wait_for_function("() => document.body.dataset.ready === 'ready'", timeout=30000)
    page.wait_for_function("() => document.getElementById('who').dataset.username", timeout=10000)
    start = rows(page)
    comp, geom, _src, dst, target = pick_move(page, base)
    inside, at = shapely.point_on_surface(geom), shapely.point_on_surface(target)

    sid = page.evaluate("() => gridEditor.state().sid")
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE grid_edit_session SET touched = now() - interval '9 hours' WHERE id = :i"), {"i": sid}
        )
    rev = page.evaluate("() => document.body.dataset.rev")
    click_lonlat(page, inside.x, inside.y)
    click_lonlat(page, at.x, at.y)
    wait_rev(page, rev)
    assert page.evaluate("() => document.body.dataset.session") == "expired"
    note = page.locator("#notice").inner_text()
    assert "编辑会话已过期" in note and "重新打开" in note, note
    assert rows(page) == start
    page.screenshot(path=str(tmp_path / "editor_expired.png"))
    page.locator("#reopen").click()
    page.wait_for_function(
        "s => gridEditor.state().sid !== s && !document.body.dataset.session", arg=sid, timeout=20000
    )
    rev = page.evaluate("() => document.body.dataset.rev")
    click_lonlat(page, inside.x, inside.y)
    click_lonlat(page, at.x, at.y)
    wait_rev(page, rev)
    assert rows(page)[dst][0] == start[dst][0] + comp["households"]

    # another plan is activated before this session is saved: the save is refused (409), the page says
    # what changed, nothing is lost, and "save anyway" stores the draft
    with engine.begin() as conn:
        ctx = load_context(conn, code)
        plan, _ = load_plan(conn, ctx, None)
        first = save_plan(conn, ctx, plan, author="t", note="a plan activated while editing")
        plans.activate(conn, code, first, force=True)
    rev = page.evaluate("() => document.body.dataset.rev")
    page.locator("#save").click()
    wait_rev(page, rev)
    assert page.locator("#saved").is_hidden()
    msg = page.locator("#conflict").inner_text()
    assert "方案冲突，未保存" in msg and f"第 {first} 版" in msg and "修改都还在" in msg, msg
    assert page.locator("#save-conflict").get_attribute("data-active") == str(first)
    # every edit is kept in the page: same table, still unsaved, save still possible
    assert rows(page)[dst][0] == start[dst][0] + comp["households"]
    assert page.evaluate("() => gridEditor.state().dirty") is True and page.locator("#save").is_enabled()
    page.screenshot(path=str(tmp_path / "editor_save_conflict.png"))
    rev = page.evaluate("() => document.body.dataset.rev")
    page.locator("#save-anyway").click()
    wait_rev(page, rev)
    saved = int(page.locator("#saved").get_attribute("data-version"))
    with engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT parent_version FROM grid_plan WHERE community_code = :c AND version = :v"),
                {"c": code, "v": saved},
            ).scalar()
            == first
        )
    assert page.locator("#saved").is_visible() and f"v{saved}" in page.locator("#saved").inner_text()
    assert page.locator("#save").is_disabled() and page.evaluate("() => gridEditor.state().dirty") is False
    # activation is the plan panel's job: the editor itself has no activate button
    assert page.locator("#activate").count() == 0
    # the only failures seen are the answers the page explained (410, 409)
    assert [e for e in rec.errors if "409" not in e and "410" not in e] == [], rec.errors
    assert any("410" in e for e in rec.errors) and any("409" in e for e in rec.errors)
    assert rec.off_host() == []
    page.close()


def test_editor_without_community_says_so(base, browser, planner):
    page = browser.new_page()
    rec = Recorder(page)
    sign_in(page, base, "/grids/editor", planner)
    page.wait_for_function("() => document.body.dataset.ready === 'error'", timeout=20000)
    assert "community" in page.locator("#notice").inner_text()
    assert rec.errors == [] and rec.off_host() == []
    page.close()
