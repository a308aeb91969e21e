"""web/grid-editor/balance.js (window.gridBalance) run in headless Chromium on a blank page: the grid
palette is colour-blind safe (≥ 12 colours, pairwise distinct for normal vision and under simulated
deuteranopia), neighbouring grids get different colours, the bars put the band, its centre and the
value where the rules say, the deviation is shown as ±N and %, status is never colour alone, and the text
colours of the bars and the plan panel reach 4.5:1 on white."""

from __future__ import annotations

import itertools
import re

import pytest
from live_server import browser  # noqa: F401  (fixture)

from gisgov.config import REPO_ROOT

WEB = REPO_ROOT / "web" / "grid-editor"
RULES = {"min_households": 300, "max_households": 500, "max_people": 1000}


@pytest.fixture(scope="module")
def page(browser):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_content("<!doctype html><html><body><div id='box'></div></body></html>")
    page.add_script_tag(path=str(WEB / "balance.js"))
    page.add_style_tag(path=str(WEB / "plans.css"))
    yield page
    assert errors == []
    page.close()


def rgb(hex_: str) -> tuple[float, float, float]:
    h = hex_.lstrip("#")
    return tuple(int(h[i : i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]


def linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def luminance(hex_: str) -> float:
    r, g, b = (linear(c) for c in rgb(hex_))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def lab(lin: tuple[float, float, float]) -> tuple[float, float, float]:
    r, g, b = lin
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def delta_e(a, b) -> float:
    return sum((p - q) ** 2 for p, q in zip(a, b, strict=True)) ** 0.5


# Machado et al. (2009), deuteranopia at severity 1.0, on linear RGB
DEUTAN = ((0.367322, 0.860646, -0.227968), (0.280085, 0.672501, 0.047413), (-0.011820, 0.042940, 0.968881))


def deutan(hex_: str) -> tuple[float, float, float]:
    lin = [linear(c) for c in rgb(hex_)]
    out = [min(1.0, max(0.0, sum(m * c for m, c in zip(row, lin, strict=True)))) for row in DEUTAN]
    return out[0], out[1], out[2]


def test_palette_is_distinct_for_normal_and_deuteranope_vision(page):
    palette = page.evaluate("() => gridBalance.palette")
    assert len(palette) >= 12 and len({p.lower() for p in palette}) == len(palette)
    first = palette[:12]
    normal = min(
        delta_e(lab(tuple(linear(c) for c in rgb(a))), lab(tuple(linear(c) for c in rgb(b))))
        for a, b in itertools.combinations(first, 2)
    )
    deut = min(delta_e(lab(deutan(a)), lab(deutan(b))) for a, b in itertools.combinations(first[:8], 2))
    assert normal > 15, normal
    assert deut > 5, deut  # the first eight (Okabe–Ito and Tol's indigo) stay apart for deuteranopes
    assert page.evaluate("() => [gridBalance.color(0), gridBalance.color(12), gridBalance.color(-1)]") == [
        palette[0],
        palette[12 % len(palette)],
        palette[1],
    ]


def test_neighbours_get_different_colours(page):
    # a 4×4 block of unit squares: each square's edge neighbours (and corner neighbours) must differ
    colours = page.evaluate(
        """() => {
        const grids = [];
        for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) {
            const x = 117 + i * 0.01, y = 31 + j * 0.01;
            grids.push({code: `g${i}${j}`, geometry: {type: "Polygon", coordinates: [[[x, y], [x + 0.01, y],
                [x + 0.01, y + 0.01], [x, y + 0.01], [x, y]]]}});
        }
        const out = gridBalance.assign(grids);
        return {out, viaColor: grids.map((g, k) => gridBalance.color(k, g.code))};
    }"""
    )
    out = colours["out"]
    assert len(out) == 16
    for i, j in itertools.product(range(4), range(4)):
        for di, dj in ((0, 1), (1, 0)):
            if i + di < 4 and j + dj < 4:
                assert out[f"g{i}{j}"] != out[f"g{i + di}{j + dj}"], (i, j, di, dj)
    assert len(set(out.values())) <= 4  # greedy colouring of a grid graph needs few colours
    assert colours["viaColor"] == [out[f"g{i}{j}"] for i in range(4) for j in range(4)]
    # a second call with the same grids keeps every colour (no flicker while editing)
    again = page.evaluate(
        "(o) => { const g = Object.keys(o).map(c => ({code: c, geometry: null})); return gridBalance.assign(g); }", out
    )
    assert again == out


@pytest.mark.parametrize(
    ("households", "people", "status", "dev", "pct", "icon"),
    [
        (412, 980, "ok", 12, 3, "✓"),
        (250, 700, "under", -150, -38, "▼"),
        (530, 1100, "over", 130, 33, "▲"),
        (400, 1200, "over", 0, 0, "▲"),
    ],
)
def test_cell_shows_band_centre_value_and_deviation(page, households, people, status, dev, pct, icon):
    page.evaluate(
        "([row, rules]) => { document.getElementById('box').innerHTML = gridBalance.cell(row, rules); }",
        [{"code": "x", "households": households, "people": people}, RULES],
    )
    cell = page.locator("#box .gb-cell")
    assert cell.get_attribute("data-status") == status
    assert int(cell.get_attribute("data-deviation")) == dev
    assert cell.locator(".gb-icon").inner_text() == icon
    text = cell.inner_text()
    sign = "+" if dev > 0 else "−" if dev < 0 else "±"
    assert f"{sign}{abs(dev)}" in text and f"{sign}{abs(pct)}%" in text, text
    assert f"{households} 户" in text.replace(",", "") and f"{people} 人" in text.replace(",", "").replace("\u202f", "")
    # positions on the households bar: scale 0 … 1.4 × max (700)
    pos = page.evaluate(
        """() => { const s = (c) => document.querySelector('#box .gb-hh ' + c).style;
        return {band: [s('.gb-band').left, s('.gb-band').width], centre: s('.gb-centre').left, mark: s('.gb-mark').left,
                limit: document.querySelector('#box .gb-pp .gb-limit').style.left}; }"""
    )
    pct = {k: [float(x.rstrip("%")) for x in (v if isinstance(v, list) else [v])] for k, v in pos.items()}
    assert pct["band"] == pytest.approx([300 / 700 * 100, 200 / 700 * 100], abs=0.06)
    assert pct["centre"] == pytest.approx([400 / 700 * 100], abs=0.06)
    assert pct["mark"] == pytest.approx([min(100, households / 700 * 100)], abs=0.06)
    assert pct["limit"] == [80.0]  # 1,000 on a 0 … 1,250 scale
    label = cell.locator(".gb-hh").get_attribute("aria-label")
    assert "300–500" in label and f"{sign}{abs(dev)}" in label
    # status is also a pattern on the households bar, not only a colour
    bg = page.evaluate("() => getComputedStyle(document.querySelector('#box .gb-hh .gb-fill')).backgroundImage")
    assert ("gradient" in bg) == (status != "ok"), bg


def test_render_sorts_by_deviation_and_escapes(page):
    rows = [
        {"code": "g1", "households": 410, "people": 900},
        {"code": "g2", "households": 200, "people": 500},
        {"code": "<b>g3</b>", "households": 560, "people": 990},
    ]
    page.evaluate("([rows, rules]) => gridBalance.render(document.getElementById('box'), rows, rules)", [rows, RULES])
    order = page.locator("#box ol.gb-list li").evaluate_all("lis => lis.map(l => l.dataset.code)")
    assert order == ["g2", "<b>g3</b>", "g1"]  # |−200| > |+160| > |+10|
    assert page.locator("#box ol.gb-list b b").count() == 0  # the code was escaped, not parsed
    assert page.locator("#box .gb-legend").inner_text().count("户") >= 1


def test_text_colours_reach_4_5_to_1():
    css = (WEB / "plans.css").read_text(encoding="utf-8")
    inks = dict(re.findall(r"--(gb-(?:ok|under|over)-ink):\s*(#[0-9a-fA-F]{6})", css))
    assert set(inks) == {"gb-ok-ink", "gb-under-ink", "gb-over-ink"}
    for name, colour in inks.items():
        assert contrast(colour, "#ffffff") >= 4.5, (name, colour)
    # the secondary text colour used in the panel and the bars, on white and on the message backgrounds
    for bg in ("#ffffff", "#f4f7fb", "#fdf0e6", "#e8f2fa", "#fafbfc"):
        assert contrast("#56657a", bg) >= 4.5, bg
    for fg, bg in (("#7a3000", "#fdf0e6"), ("#0d3d63", "#e8f2fa"), ("#8f3500", "#ffffff"), ("#4f5b69", "#eef0f3")):
        assert contrast(fg, bg) >= 4.5, (fg, bg)
