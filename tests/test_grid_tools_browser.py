"""The grid editor's map tools in headless Chromium at 1366×768, with real mouse events, on the sample
city community of test_grid_editor_browser (planned and activated): draw a new grid (a row appears with the
buildings inside, totals kept), reshape a shared edge by dragging a vertex (the neighbour loses what the
grid gains; the grids stay gap- and overlap-free), split along a drawn line (one more grid), merge two
(one fewer), paint compounds into another grid by dragging, Shift multi-select then a click on a grid;
undo and redo return each state exactly; save gives a draft and disables save again; a save after
another version was activated answers 409 and the page keeps every edit. Nothing leaves 127.0.0.1, the
console stays clean, labels do not overlap. Screenshots go to the test's tmp folder."""

from __future__ import annotations

import json

import shapely
from live_server import Recorder, browser, sign_in  # noqa: F401  (fixture)
from shapely.geometry import LineString, Point, Polygon, shape
from test_grid_editor_browser import base, planned, planner, rows, wait_rev  # noqa: F401  (fixtures)

from gisgov.gridding import plans
from gisgov.gridding.io import load_context, load_plan, save_plan

VIEW = {"width": 1366, "height": 768}


def px(page, lon: float, lat: float) -> tuple[float, float]:
    pt = page.evaluate("ll => { const p = gridEditor.map.latLngToContainerPoint(ll); return [p.x, p.y]; }", [lat, lon])
    box = page.locator("#map").bounding_box()
    return box["x"] + pt[0], box["y"] + pt[1]


def click_at(page, lon: float, lat: float) -> None:
    page.mouse.click(*px(page, lon, lat))


def layers(page, base: str) -> dict:
    sid = page.evaluate("() => gridEditor.state().sid")
    return page.request.get(f"{base}/api/grids/sessions/{sid}/layers").json()


def building_points(data: dict) -> dict[str, tuple[Point, str | None, int]]:
    """building code -> (its point, its grid, households)"""
    out = {}
    for f in data["buildings"]["features"]:
        g = shape(f["geometry"])
        out[f["properties"]["code"]] = (
            g if g.geom_type == "Point" else shapely.point_on_surface(g),
            f["properties"]["grid"],
            f["properties"]["households"],
        )
    return out


def assert_tiled(data: dict, area_before: float | None = None) -> float:
    """the grids do not overlap and cover what they covered before (no gap opened)"""
    polys = [shape(g["geometry"]) for g in data["grids"] if g.get("geometry")]
    union = shapely.union_all(polys)
    total = sum(p.area for p in polys)
    assert total - union.area <= 1e-4 * union.area, f"grids overlap: {total} vs {union.area}"
    if area_before is not None:
        assert abs(union.area - area_before) <= 1e-3 * area_before, f"a gap opened: {union.area} vs {area_before}"
    return union.area


def labels_overlap(page) -> list:
    return page.evaluate("""() => {
      const r = [...document.querySelectorAll('.grid-label')].filter(e => e.offsetParent !== null)
        .map(e => e.getBoundingClientRect());
      const out = [];
      for (let i = 0; i < r.length; i++) for (let j = i + 1; j < r.length; j++) {
        const a = r[i], b = r[j];
        if (a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1) out.push([i, j]);
      }
      return out;
    }""")


def tool(page, name: str) -> None:
    page.locator(f"#tool-{name}").click()
    page.wait_for_function("t => document.body.dataset.tool === t", arg=name)


def rev(page) -> str:
    return page.evaluate("() => document.body.dataset.rev")


def open_editor(browser, base, path, user):
    page = browser.new_page(viewport=VIEW)
    rec = Recorder(page)
    sign_in(page, base, path, user)
    page.wait_for_function("() => document.body.dataset.ready === 'ready'", timeout=30000)
    page.locator("#snap").uncheck()  # the clicks below are the outline sent (the server snaps it anyway)
    return page, rec


def test_draw_reshape_split_merge_undo_redo(planned, base, browser, planner, tmp_path):
    _, code, _, _ = planned
    page, rec = open_editor(browser, base, f"/grids/editor?community={code}", planner)
    assert labels_overlap(page) == []
    page.screenshot(path=str(tmp_path / "tools_open.png"))
    start = rows(page)
    total = sum(h for h, _ in start.values())
    data = layers(page, base)
    area = assert_tiled(data)
    pts = building_points(data)
    grids = {g["code"]: shape(g["geometry"]) for g in data["grids"]}

    # --- draw: a rectangle in the middle of the grid with most buildings --------------------------
    big = max(grids, key=lambda c: sum(1 for p in pts.values() if p[1] == c))
    x0, y0, x1, y1 = grids[big].bounds
    rect = [
        (x0 + (x1 - x0) * 0.3, y0 + (y1 - y0) * 0.3),
        (x0 + (x1 - x0) * 0.7, y0 + (y1 - y0) * 0.3),
        (x0 + (x1 - x0) * 0.7, y0 + (y1 - y0) * 0.7),
        (x0 + (x1 - x0) * 0.3, y0 + (y1 - y0) * 0.7),
    ]
    inside = {b for b, p in pts.items() if Polygon(rect).contains(p[0])}
    assert inside and len(inside) < sum(1 for p in pts.values() if p[1] == big)
    tool(page, "draw")
    r = rev(page)
    sent = []
    page.on("request", lambda q: sent.append(q.post_data) if q.url.endswith("/edit") else None)
    for lon, lat in rect:
        click_at(page, lon, lat)
    click_at(page, *rect[0])  # close the polygon on its first corner
    wait_rev(page, r)
    drawn = rows(page)
    added = set(drawn) - set(start)
    assert len(added) == 1 and len(drawn) == len(start) + 1, (start, drawn)
    new = added.pop()
    geom = shape(json.loads(sent[-1])["geometry"])
    expect = {b for b, p in pts.items() if geom.contains(p[0])}
    assert drawn[new][0] == sum(pts[b][2] for b in expect) > 0
    assert sum(h for h, _ in drawn.values()) == total
    assert page.locator("#save").is_enabled() and page.evaluate("() => gridEditor.state().dirty") is True
    assert_tiled(layers(page, base), area)
    assert labels_overlap(page) == []
    page.screenshot(path=str(tmp_path / "tools_drawn.png"))

    # undo and redo return each state exactly
    r = rev(page)
    page.keyboard.press("Control+z")
    wait_rev(page, r)
    assert rows(page) == start
    r = rev(page)
    page.locator("#redo").click()
    wait_rev(page, r)
    assert rows(page) == drawn

    # --- reshape: drag one vertex of a grid's outline shared with a neighbour into the neighbour ------
    data = layers(page, base)
    pts = building_points(data)
    grids = {g["code"]: shape(g["geometry"]) for g in data["grids"] if g.get("geometry")}
    tool(page, "reshape")
    plan = None
    for a in sorted(grids, key=lambda c: -drawn[c][0]):
        page.locator(f"#grids tbody tr[data-code='{a}']").click()
        page.wait_for_function("c => document.body.dataset.reshaping === c", arg=a)
        ring = page.evaluate("() => gridEditor.reshaping()")
        for i, v in enumerate(ring):
            vp = Point(v)
            for b_code, gb in grids.items():
                if b_code == a or gb.distance(vp) > 1e-7:
                    continue
                near = sorted(
                    (p[0].distance(vp), bc) for bc, p in pts.items() if p[1] == b_code and p[0].distance(vp) < 0.002
                )
                for _, bc in near[:6]:
                    bp = pts[bc][0]
                    to = (bp.x + (bp.x - vp.x) * 0.25, bp.y + (bp.y - vp.y) * 0.25)
                    moved = Polygon([to if j == i else q for j, q in enumerate(ring)])
                    if moved.is_valid and moved.contains(bp) and gb.contains(Point(to)):
                        plan = (a, b_code, v, to)
                        break
                if plan:
                    break
            if plan:
                break
        if plan:
            break
    assert plan, "no vertex on a shared edge to drag"
    a, b_code, v, to = plan
    before = rows(page)
    r = rev(page)
    page.mouse.move(*px(page, *v))
    page.mouse.down()
    page.mouse.move(*px(page, *to), steps=8)
    page.mouse.up()
    wait_rev(page, r)
    reshaped = rows(page)
    assert reshaped[b_code][0] < before[b_code][0] and reshaped[a][0] > before[a][0], (before, reshaped)
    assert sum(h for h, _ in reshaped.values()) == total and set(reshaped) == set(before)
    assert_tiled(layers(page, base), area)
    page.screenshot(path=str(tmp_path / "tools_reshaped.png"))

    # --- split the grid with most buildings along a horizontal line through its buildings' middle -------
    data = layers(page, base)
    pts = building_points(data)
    grids = {g["code"]: shape(g["geometry"]) for g in data["grids"] if g.get("geometry")}
    big = max(grids, key=lambda c: sum(1 for p in pts.values() if p[1] == c))
    ys = sorted(p[0].y for p in pts.values() if p[1] == big)
    ymid = (ys[len(ys) // 2 - 1] + ys[len(ys) // 2]) / 2
    x0, _, x1, _ = grids[big].bounds
    line = [(x0 - (x1 - x0) * 0.04, ymid), (x1 + (x1 - x0) * 0.04, ymid)]
    assert LineString(line).crosses(grids[big])
    page.locator(f"#grids tbody tr[data-code='{big}']").click()
    tool(page, "split")
    r = rev(page)
    click_at(page, *line[0])
    click_at(page, *line[1])
    click_at(page, *line[1])  # a second click on the last point ends the line
    wait_rev(page, r)
    split = rows(page)
    assert len(split) == len(reshaped) + 1 and sum(h for h, _ in split.values()) == total, (reshaped, split)
    assert split[big][0] < reshaped[big][0]
    assert_tiled(layers(page, base), area)

    # --- merge two neighbouring grids (the first kept) -----------------------------------------------
    data = layers(page, base)
    grids = {g["code"]: shape(g["geometry"]) for g in data["grids"] if g.get("geometry")}
    pair = next(
        (x, y)
        for x in sorted(grids)
        for y in sorted(grids)
        if x < y and grids[x].intersection(grids[y]).length > 0 and split[x][0] and split[y][0]
    )
    tool(page, "merge")
    page.once("dialog", lambda d: d.accept())
    r = rev(page)
    for c in pair:
        p = shapely.point_on_surface(grids[c])
        click_at(page, p.x, p.y)
    wait_rev(page, r)
    merged = rows(page)
    assert len(merged) == len(split) - 1 and pair[1] not in merged
    assert merged[pair[0]][0] == split[pair[0]][0] + split[pair[1]][0]
    assert sum(h for h, _ in merged.values()) == total
    assert_tiled(layers(page, base), area)
    assert labels_overlap(page) == []
    page.screenshot(path=str(tmp_path / "tools_merged.png"))

    # undo all four edits, one by one, then redo them: each state comes back exactly
    states = [start, drawn, reshaped, split, merged]
    for want in reversed(states[:-1]):
        r = rev(page)
        page.locator("#undo").click()
        wait_rev(page, r)
        assert rows(page) == want
    assert page.locator("#undo").is_disabled()
    for want in states[1:]:
        r = rev(page)
        page.keyboard.press("Control+Shift+z")
        wait_rev(page, r)
        assert rows(page) == want
    assert page.locator("#redo").is_disabled()

    assert rec.off_host() == [], rec.off_host()
    assert rec.errors == [], rec.errors
    print(f"screenshots: {tmp_path}")
    page.close()


def test_paint_multiselect_save_and_conflict(planned, base, browser, planner, tmp_path):
    engine, code, _, _ = planned
    page, rec = open_editor(browser, base, f"/grids/editor?community={code}", planner)
    start = rows(page)
    total = sum(h for h, _ in start.values())
    data = layers(page, base)
    grids = {g["code"]: shape(g["geometry"]) for g in data["grids"] if g.get("geometry")}
    comps = [
        (f["properties"], shape(f["geometry"]))
        for f in data["compounds"]["features"]
        if f["geometry"] and f["properties"]["households"] and len(f["properties"]["grids"]) == 1
    ]
    # target grid A and two compounds of a neighbour B that touch A
    a, b_code, near = None, None, []
    for x in sorted(grids):
        for y in sorted(grids):
            cs = sorted(
                (c for c in comps if c[0]["grids"] == [y] and c[1].distance(grids[x]) < 0.002),
                key=lambda c: c[1].distance(grids[x]),
            )
            if x != y and len(cs) >= 2 and grids[x].distance(grids[y]) < 1e-6:
                a, b_code, near = x, y, cs
                break
        if a:
            break
    assert a, "no two compounds of a neighbour touch a grid"

    # --- paint: press and drag over the compounds (the map must not pan) -------------------------------
    tool(page, "paint")
    page.locator("#target").select_option(a)
    center = page.evaluate("() => gridEditor.map.getCenter()")
    r = rev(page)
    targets = near[:2]
    p0 = shapely.point_on_surface(targets[0][1])
    p1 = shapely.point_on_surface(targets[1][1])
    page.mouse.move(*px(page, p0.x, p0.y))
    page.mouse.down()
    page.mouse.move(*px(page, p1.x, p1.y), steps=12)
    page.mouse.up()
    wait_rev(page, r)
    assert page.evaluate("() => gridEditor.map.getCenter()") == center  # no pan
    painted = rows(page)
    moved_h = sum(c[0]["households"] for c in targets)
    assert painted[a][0] >= start[a][0] + moved_h and painted[b_code][0] <= start[b_code][0] - moved_h
    assert sum(h for h, _ in painted.values()) == total
    inn = {f["properties"]["code"]: f["properties"]["grids"] for f in layers(page, base)["compounds"]["features"]}
    assert all(inn[c[0]["code"]] == [a] for c in targets)

    # --- Shift multi-select two compounds of another grid, then click grid A ----------------------------
    tool(page, "select")
    others = [c for c in comps if c[0]["grids"] != [a] and c[0]["code"] not in {t[0]["code"] for t in targets}]
    others = [c for c in others if inn[c[0]["code"]] == c[0]["grids"]]
    left = {g: sum(1 for c in others if c[0]["grids"] == [g]) for g in grids}
    others = [c for c in others if left[c[0]["grids"][0]] >= 4][:2]  # no grid is emptied (a grid needs an area)
    assert len(others) == 2
    r = rev(page)
    page.keyboard.down("Shift")
    for _props, g in others:
        p = shapely.point_on_surface(g)
        click_at(page, p.x, p.y)
    page.keyboard.up("Shift")
    assert page.locator("#selection").get_attribute("data-count") == "2"
    pa = shapely.point_on_surface(grids[a])
    click_at(page, pa.x, pa.y)
    wait_rev(page, r)
    multi = rows(page)
    assert multi[a][0] == painted[a][0] + sum(c[0]["households"] for c in others)
    assert sum(h for h, _ in multi.values()) == total

    # undo both, redo both: exact states
    for want in (painted, start):
        r = rev(page)
        page.keyboard.press("Control+z")
        wait_rev(page, r)
        assert rows(page) == want
    for want in (painted, multi):
        r = rev(page)
        page.keyboard.press("Control+y")
        wait_rev(page, r)
        assert rows(page) == want
    page.screenshot(path=str(tmp_path / "tools_painted.png"))

    # --- save: a draft, save disabled again ------------------------------------------------------------
    saw = []
    page.evaluate("() => document.addEventListener('grideditor:saved', e => window.__saved = e.detail)")
    r = rev(page)
    page.locator("#save").click()
    wait_rev(page, r)
    shown = page.locator("#saved").get_attribute("data-version")
    assert shown, (page.locator("#notice").inner_text(), page.locator("#conflict").inner_text(), rec.errors)
    version = int(shown)
    assert page.evaluate("() => window.__saved.version") == version
    assert page.locator("#save").is_disabled() and page.evaluate("() => gridEditor.state().dirty") is False
    listed = {p["version"]: p["status"] for p in page.request.get(f"{base}/api/grids/plans/{code}").json()}
    assert listed[version] == "draft"

    # --- one more edit, then another version is activated meanwhile: 409, every edit kept ---------------
    tool(page, "paint")
    page.locator("#target").select_option(b_code)
    r = rev(page)
    page.mouse.move(*px(page, p0.x, p0.y))
    page.mouse.down()
    page.mouse.move(*px(page, p0.x, p0.y + 1e-6), steps=2)
    page.mouse.up()
    wait_rev(page, r)
    edited = rows(page)
    assert edited != multi and page.locator("#save").is_enabled()
    with engine.begin() as conn:
        ctx = load_context(conn, code)
        plan, _ = load_plan(conn, ctx, None)
        other = save_plan(conn, ctx, plan, author="t", note="activated while editing")
        plans.activate(conn, code, other, force=True)
    r = rev(page)
    page.locator("#save").click()
    wait_rev(page, r)
    msg = page.locator("#conflict").inner_text()
    assert "方案冲突，未保存" in msg and "修改都还在" in msg, msg
    assert rows(page) == edited and page.evaluate("() => gridEditor.state().dirty") is True
    assert page.locator("#save").is_enabled() and page.locator("#conflict-reload").is_visible()
    page.screenshot(path=str(tmp_path / "tools_conflict.png"))
    assert saw == []
    assert rec.off_host() == [], rec.off_host()
    assert [e for e in rec.errors if "409" not in e] == [], rec.errors
    page.close()
