"""Leaders' views on /dashboard (领导驾驶舱) in headless Chromium on the gridded sample city, signed in as a
street leader: drilling down street → community → grid with the mouse; the comparison table (对比表) shows
/api/stats's figures for each child, sorts by a header click or the keyboard (aria-sort) and exports CSV
(UTF-8 with a BOM); the quantile legend's breaks rise and its class counts add up to the children; the print
layout (A4 landscape) is one PDF page with the unit's name and the date; the PNG export gives a PNG; the page
has no horizontal scroll at 1024×768 and 768×1024; the big-screen mode is dark with KPIs ≥ 32 px; text
contrast ≥ 4.5:1 in both themes. Nothing leaves 127.0.0.1 and the console stays clean. Screenshots go to the
test's tmp folder."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import json
from pathlib import Path

import pypdf
import pytest
from auth_helpers import USER_PASSWORD, owner_url_of
from live_server import Recorder, browser, serve, sign_in  # noqa: F401  (fixture)
from sample_fixtures import sample_city  # noqa: F401  (fixture)
from security_city import build_gridded_city
from sqlalchemy import create_engine, pool, text

from gisgov.security import accounts

LEADER = "leaders_view"


@pytest.fixture(scope="module")
def city(db_factory, sample_city):
    url = build_gridded_city(db_factory, sample_city, "gisgov_test_leaders")
    eng = create_engine(owner_url_of(url), poolclass=pool.NullPool)
    try:
        with eng.begin() as c:
            street = c.execute(text("SELECT code FROM street ORDER BY code LIMIT 1")).scalar_one()
            accounts.add_user(c, LEADER, USER_PASSWORD, "street_leader", street, display_name="赵主任")
            community = c.execute(
                text("SELECT min(community_code) FROM grid_current() WHERE community_code LIKE :s"), {"s": street + "%"}
            ).scalar_one()
    finally:
        eng.dispose()
    return {"url": url, "street": street, "community": community}


@pytest.fixture(scope="module")
def base(city):
    with serve(city["url"]) as url:
        yield url


def open_page(browser, base, viewport, path="/dashboard"):
    page = browser.new_context(viewport=viewport, accept_downloads=True).new_page()
    rec = Recorder(page)
    sign_in(page, base, "/dashboard", LEADER)
    rec.errors[:] = [e for e in rec.errors if "401" not in e]  # the redirect before signing in
    if path != "/dashboard":  # the hash does not survive the sign-in redirect
        wait_ready(page, "city")
        page.goto(f"{base}{path}")
    return page, rec


def wait_ready(page, key: str) -> None:
    try:
        page.wait_for_function("k => document.body.dataset.ready === k", arg=key, timeout=60000)
    except Exception as exc:
        got = page.evaluate("() => [document.body.dataset.ready, location.href]")
        raise AssertionError(f"page not ready at {key!r}: ready={got[0]!r} url={got[1]}") from exc


def click_polygon(page, code: str) -> None:
    """A real mouse click inside the child's polygon (a point of its box that hits the polygon itself), once the
    map has stopped moving (after a resize the page re-fits the view: the same point twice, 250 ms apart)."""
    find = """code => {
          const el = document.querySelector('path.child-' + code);
          const b = el.getBoundingClientRect();
          for (const fx of [0.5, 0.35, 0.65, 0.25, 0.75]) for (const fy of [0.5, 0.35, 0.65, 0.25, 0.75]) {
            const x = b.left + b.width * fx, y = b.top + b.height * fy;
            if (document.elementFromPoint(x, y) === el) return [x, y];
          }
          return null;
        }"""
    point, before = page.evaluate(find, code), None
    for _ in range(40):
        if point and point == before:
            break
        page.wait_for_timeout(250)
        before, point = point, page.evaluate(find, code)
    assert point, f"no clickable point in {code}"
    scrolled = page.evaluate("() => window.scrollY")
    page.mouse.move(*point)
    # hovering a polygon highlights its table row without scrolling the page under the pointer
    assert page.evaluate("() => window.scrollY") == scrolled
    page.mouse.click(*point)


def table_rows(page) -> dict[str, dict[str, str]]:
    return page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#children tbody tr')].map(tr => [tr.dataset.code,
             Object.fromEntries([...tr.querySelectorAll('td[data-col]')].map(td => [td.dataset.col, td.dataset.value]))]))"""
    )


def column(page, key: str) -> list[float]:
    return page.locator(f'#children tbody td[data-col="{key}"]').evaluate_all("tds => tds.map(t => +t.dataset.value)")


def check_legend(page, n_features: int) -> None:
    legend = page.locator("#legend")
    breaks = json.loads(legend.get_attribute("data-breaks"))
    assert len(breaks) >= 2
    assert all(a < b for a, b in itertools.pairwise(breaks)) or breaks[0] == breaks[-1], breaks
    counts = legend.locator(".cls").evaluate_all("els => els.map(e => +e.dataset.count)")
    assert sum(counts) == n_features == int(legend.get_attribute("data-features"))
    assert len(counts) <= 6  # at most 5 quantile classes (+ no data)
    classes = legend.locator(".cls[data-class]").evaluate_all("els => els.map(e => +e.dataset.count)")
    assert classes and all(c > 0 for c in classes), classes  # no empty class (a grid of 2 compounds: 2 classes)


# the share of visible text below 4.5:1 against the nearest opaque background (walking up the tree)
CONTRAST = """sel => {
  const rgb = s => { const m = s.match(/[\\d.]+/g); return m ? m.map(Number) : [0, 0, 0, 0]; };
  const lum = c => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const bgOf = el => { for (let e = el; e; e = e.parentElement) { const st = getComputedStyle(e), c = rgb(st.backgroundColor);
      if (c.length < 4 || c[3] > 0.6) return c;
      if (st.backgroundImage !== 'none') return null; } return [255, 255, 255]; };  // a gradient: not judged here
  const bad = [];
  for (const el of document.querySelectorAll(sel)) {
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length || getComputedStyle(el).visibility === 'hidden') continue;
    const fg = rgb(getComputedStyle(el).color), bg = bgOf(el);
    if (!bg) continue;
    const a = lum(fg), b = lum(bg), r = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (r < 4.5) bad.push(el.tagName + '.' + el.className + ' "' + el.textContent.trim().slice(0, 20) + '" ' + r.toFixed(2));
  }
  return bad;
}"""
TEXT = ".panel *, .legend *, .map-toolbar *, .topbar *"


def test_leader_drills_compares_sorts_and_exports(base, browser, city, tmp_path):
    page, rec = open_page(browser, base, {"width": 1366, "height": 900})
    wait_ready(page, "city")
    street, community = city["street"], city["community"]
    click_polygon(page, street)
    wait_ready(page, f"street/{street}")

    # the comparison table: one row per community with /api/stats's figures
    doc = page.request.get(f"{base}/api/stats/street/{street}").json()
    rows = table_rows(page)
    assert set(rows) == {c["code"] for c in doc["children"]["items"]}
    for c in doc["children"]["items"]:
        r, s = rows[c["code"]], c["stats"]
        assert r["households"] == str(s["households"]) and r["residents"] == str(s["residents"])
        assert r["special"] == str(s["special"]["people"]) and r["staff"] == str(s["staff"]["total"])
        assert r["coverage"] == ("" if s["coverage"] is None else str(s["coverage"]["complete"]["share"]))
        assert "events" in r  # open events per community (/api/events/geojson)
    assert page.locator('#children tbody td[data-col="households"]').first.inner_text().replace(",", "").isdigit()

    # sort by households: a click on the header, then Enter on it (keyboard)
    th = page.locator('#children thead th[data-key="households"]')
    th.locator("button").click()
    values = column(page, "households")
    assert values == sorted(values, reverse=True) and th.get_attribute("aria-sort") == "descending"
    page.keyboard.press("Enter")  # the header button keeps the focus
    values = column(page, "households")
    assert values == sorted(values) and th.get_attribute("aria-sort") == "ascending"
    assert page.locator('#children thead th[data-key="residents"]').get_attribute("aria-sort") == "none"
    check_legend(page, len(doc["children"]["items"]))

    # CSV of the table as shown: BOM, a header line, one line per row in the table's order
    with page.expect_download() as dl:
        page.locator("#btn-csv").click()
    data = Path(dl.value.path()).read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    lines = data.decode("utf-8-sig").strip().splitlines()
    assert len(lines) == 1 + len(rows) and lines[0].startswith("编码 code,名称 Name,户数 Households")
    assert [ln.split(",")[0] for ln in lines[1:]] == page.locator("#children tbody tr").evaluate_all(
        "trs => trs.map(t => t.dataset.code)"
    )
    assert dl.value.suggested_filename.endswith(".csv")

    # the mouse: street → community (with grids) → grid
    click_polygon(page, community)
    wait_ready(page, f"community/{community}")
    comm = page.request.get(f"{base}/api/stats/community/{community}").json()
    assert comm["children"]["level"] == "grid"
    assert (
        page.locator("#children tbody tr").count()
        == len(comm["children"]["items"])
        == page.locator("path.child-shape").count()
    )
    assert table_rows(page)[comm["children"]["items"][0]["code"]]["households"] == str(
        comm["children"]["items"][0]["stats"]["households"]
    )
    check_legend(page, len(comm["children"]["items"]))
    page.select_option("#indicator", "elderly")  # another indicator: quantiles of shares
    check_legend(page, len(comm["children"]["items"]))
    assert "老年人口占比" in page.locator("#legend").inner_text() and "%" in page.locator("#legend").inner_text()
    grid = comm["children"]["items"][-1]["code"]
    click_polygon(page, grid)
    wait_ready(page, f"grid/{grid}")
    grid_doc = page.request.get(f"{base}/api/stats/grid/{grid}").json()
    assert page.locator("#unit-name").inner_text() == grid_doc["name"]
    if grid_doc["children"]["items"]:  # a grid's compounds: few children, as many classes as distinct values
        check_legend(page, len(grid_doc["children"]["items"]))

    # PNG of the current view (map + legend + title)
    with page.expect_download() as dl:
        page.locator("#btn-png").click()
    png = Path(dl.value.path()).read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    assert page.evaluate("() => window.htmlToImage && true")
    page.screenshot(path=str(tmp_path / "leaders_grid.png"))

    assert rec.off_host() == [], rec.off_host()
    assert rec.errors == [], rec.errors
    page.context.close()


def test_print_layout_is_one_a4_page(base, browser, city, tmp_path):
    street = city["street"]
    page, rec = open_page(browser, base, {"width": 1366, "height": 900}, f"/dashboard#/street/{street}")
    wait_ready(page, f"street/{street}")
    name = page.locator("#unit-name").inner_text()
    page.emulate_media(media="print")
    page.wait_for_function("() => document.body.dataset.print === 'ready'", timeout=10000)
    for sel in (".map-toolbar", "#btn-print", ".topbar", "#btn-csv"):
        assert not page.locator(sel).is_visible(), sel
    for sel in ("#print-head", "#legend", ".leaflet-control-scale", "#north-arrow", "#children", ".kpis"):
        assert page.locator(sel).is_visible(), sel
    map_box, kpis = page.locator("#map").bounding_box(), page.locator(".kpis").bounding_box()
    table = page.locator("#children").bounding_box()
    assert kpis["y"] >= map_box["y"] + map_box["height"] - 1 and table["y"] >= map_box["y"] + map_box["height"] - 1
    page.screenshot(path=str(tmp_path / "leaders_print.png"))
    pdf = pypdf.PdfReader(io.BytesIO(page.pdf(format="A4", landscape=True, print_background=True)))
    assert len(pdf.pages) == 1
    words = pdf.pages[0].extract_text()
    assert name in words and dt.date.today().isoformat() in words
    box = pdf.pages[0].mediabox
    assert float(box.width) > float(box.height)  # landscape
    page.emulate_media(media="screen")
    page.wait_for_function("() => !document.body.dataset.print")
    assert rec.off_host() == [] and rec.errors == [], rec.errors
    page.context.close()


def test_tablet_small_screen_and_big_screen(base, browser, city, tmp_path):
    street = city["street"]
    page, rec = open_page(browser, base, {"width": 1024, "height": 768}, f"/dashboard#/street/{street}")
    wait_ready(page, f"street/{street}")
    for w, h in ((1024, 768), (768, 1024)):
        page.set_viewport_size({"width": w, "height": h})
        page.wait_for_function("w => document.documentElement.clientWidth === w", arg=w)
        assert page.evaluate("() => document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        m = page.locator("#map").bounding_box()
        assert m["width"] >= w - 2 and m["height"] >= 400, m
        for sel in ("#children", ".kpis", "#legend", ".map-toolbar"):
            b = page.locator(sel).bounding_box()
            assert b and b["x"] >= 0 and b["x"] + b["width"] <= w + 1, sel
        assert page.evaluate(CONTRAST, TEXT) == []
        page.screenshot(path=str(tmp_path / f"leaders_{w}x{h}.png"))
    # the map still drills at tablet size
    click_polygon(page, city["community"])
    wait_ready(page, f"community/{city['community']}")

    # big screen from the URL, then off and on with the button
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.goto(f"{base}/dashboard?mode=bigscreen#/street/{street}")
    wait_ready(page, f"street/{street}")
    assert page.evaluate("() => document.body.classList.contains('bigscreen')")
    size = page.locator('.kpi[data-kpi="households"] .value').evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
    assert size >= 32
    bg = page.evaluate("() => getComputedStyle(document.querySelector('.panel')).backgroundColor")
    assert bg.startswith("rgb(") and sum(int(x) for x in bg[4:-1].split(",")) < 150  # dark
    assert page.evaluate(CONTRAST, TEXT) == []
    page.screenshot(path=str(tmp_path / "leaders_bigscreen.png"))
    page.locator("#btn-big").click()
    assert page.locator("#btn-big").get_attribute("aria-pressed") == "false"
    assert "mode=bigscreen" not in page.url
    assert page.evaluate(CONTRAST, TEXT) == []
    assert rec.off_host() == [] and rec.errors == [], rec.errors
    page.context.close()


def test_building_footprints_come_as_vector_tiles(base, browser, city):
    """At a grid, the footprints are vector tiles (/tiles/building), not a GeoJSON download, and the grid's own
    buildings (drawn dark) are exactly the active plan's buildings of that grid."""
    eng = create_engine(owner_url_of(city["url"]), poolclass=pool.NullPool)
    with eng.connect() as c:
        grid = c.execute(
            text("SELECT min(code) FROM grid_current() WHERE community_code = :c"), {"c": city["community"]}
        ).scalar_one()
        want = set(
            c.execute(
                text("SELECT b.code FROM building b JOIN grid_current() g ON g.id = b.grid_id WHERE g.code = :g"),
                {"g": grid},
            ).scalars()
        )
    eng.dispose()
    page, rec = open_page(browser, base, {"width": 1366, "height": 768}, path=f"/dashboard#/grid/{grid}")
    wait_ready(page, f"grid/{grid}")
    page.wait_for_function(
        "() => document.body.dataset.buildings && JSON.parse(document.body.dataset.buildings).mine.length > 0",
        timeout=60000,
    )
    got = json.loads(page.evaluate("() => document.body.dataset.buildings"))
    assert got["drawn"] >= len(got["mine"])
    assert want and set(got["mine"]) <= want, sorted(set(got["mine"]) - want)[:5]
    # the view holds the whole grid, so every building of it is drawn
    assert set(got["mine"]) == want, (len(got["mine"]), len(want))
    tiles = [u for u in rec.requests if "/tiles/building/" in u]
    assert tiles and not [u for u in rec.requests if "/api/layers/building" in u]
    assert rec.off_host() == [] and not rec.errors, rec.errors[:5]
    page.close()
