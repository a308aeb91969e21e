"""Error pages for browsers (issue 12, item 9): a page request (GET with Accept: text/html, outside /api) that
ends in 403 / 404 / 500 / 503 gets an HTML page in the app's style (status, Chinese and English message,
links to /dashboard and /login, no script, a CSP without inline scripts); /api/* and clients that do not ask
for HTML keep the JSON error model (tests/test_error_model.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gisgov.api import errors
from gisgov.api.headers import SecurityHeaders
from gisgov.errors import DatabaseUnavailable, Forbidden, NotFound

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.fixture(scope="module")
def client():
    app = FastAPI()
    errors.install(app)

    @app.get("/page/forbidden")
    def forbidden():
        raise Forbidden("无权限 仅限管理员 admins only")

    @app.get("/page/missing")
    def missing():
        raise NotFound("未找到 社区 community not found: 1")

    @app.get("/page/down")
    def down():
        raise DatabaseUnavailable("数据库不可用 database unavailable")

    @app.get("/page/bug")
    def bug():
        raise RuntimeError("boom <script>alert(1)</script>")

    @app.get("/api/thing")
    def api_thing():
        raise NotFound("未找到 对象 thing not found")

    app.add_middleware(SecurityHeaders)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/no/such/page", 404, ["页面不存在", "Page not found"]),
        ("/page/missing", 404, ["社区", "community not found: 1"]),
        ("/page/forbidden", 403, ["无权访问", "Forbidden", "仅限管理员", "admins only"]),
        ("/page/bug", 500, ["服务器内部错误", "Internal server error"]),
        ("/page/down", 503, ["服务暂不可用", "Service unavailable", "数据库不可用"]),
    ],
)
def test_browser_gets_a_page(client, path, status, words):
    r = client.get(path, headers=BROWSER)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("text/html")
    page = r.text
    assert f"<title>{status} " in page and "gisgov" in page
    for w in words:
        assert w in page, w
    assert 'href="/dashboard"' in page and 'href="/login"' in page
    assert "<script" not in page.lower()
    assert "boom" not in page  # a bug's text stays in the log
    csp = r.headers["content-security-policy"]
    scripts = csp.split("script-src", 1)[1].split(";", 1)[0] if "script-src" in csp else "'none'"
    assert "'unsafe-inline'" not in scripts and ("script-src" in csp or "default-src 'none'" in csp)
    assert re.search(r"--accent:\s*#1f5fbf", page)  # the app's colours


def test_api_and_non_browsers_keep_json(client):
    r = client.get("/api/thing", headers=BROWSER)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/json")
    assert (r.json()["error"] == "NotFound" and r.json()["message_en"] == "对象 thing not found") or r.json()["detail"]
    r = client.get("/api/nothing-here", headers=BROWSER)
    assert r.status_code == 404 and r.json()["error"] == "NotFound"
    for accept in ("application/json", "*/*", ""):
        r = client.get("/no/such/page", headers={"Accept": accept} if accept else {})
        assert r.status_code == 404 and r.json()["error"] == "NotFound", accept
    r = client.post("/page/missing", headers=BROWSER)
    assert r.headers["content-type"].startswith("application/json")


def test_page_escapes_the_message():
    page = errors.error_page(404, "<b>x</b>", "a & b")
    assert "<b>x</b>" not in page and "&lt;b&gt;" in page and "a &amp; b" in page


# ---- text contrast (WCAG 2.x: at least 4.5:1 for normal text) ---------------------------------------------

COMMON_CSS = Path(__file__).resolve().parent.parent / "web" / "common" / "gisgov.css"


def luminance(hex_colour: str) -> float:
    h = hex_colour.lstrip("#")
    if len(h) == 3:
        h = "".join(c * 2 for c in h)
    rgb = [int(h[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_contrast_formula():
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0
    assert round(contrast("#777777", "#ffffff"), 2) == 4.48  # the classic just-failing grey


def css_vars(css: str) -> dict[str, str]:
    return dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{3,6})\b", css))


def rule_colour(css: str, selector: str, prop: str = "color") -> str:
    m = re.search(re.escape(selector) + r"\s*\{([^}]*)\}", css)
    assert m, selector
    value = re.search(rf"(?<![-\w]){prop}:\s*(#[0-9a-fA-F]{{3,6}}|var\(--[a-z-]+\))", m.group(1))
    assert value, (selector, prop)
    v = value.group(1)
    return css_vars(css)[v[6:-1]] if v.startswith("var(") else v


def test_common_css_text_contrast():
    """Every text colour gisgov.css sets, on the background it is drawn on."""
    css = COMMON_CSS.read_text(encoding="utf-8")
    v = css_vars(css)
    navy_light, navy_dark = "#1b3a66", "#102544"  # the top bar's gradient ends
    pairs = {
        "ink on bg": (v["ink"], v["bg"]),
        "ink on panel": (v["ink"], v["panel"]),
        "muted on bg": (v["muted"], v["bg"]),
        "muted on panel": (v["muted"], v["panel"]),
        "muted on side panel": (v["muted"], rule_colour(css, ".panel", "background")),
        "accent on panel": (v["accent"], v["panel"]),
        "accent on accent-soft": (v["accent"], v["accent-soft"]),
        "white on accent": ("#ffffff", v["accent"]),
        "brand small on top bar": (rule_colour(css, ".brand small"), navy_light),
        "top bar links": (rule_colour(css, ".top-right a"), navy_light),
        "user name": (rule_colour(css, ".user .who"), navy_light),
        "user scope": (rule_colour(css, ".user .who small"), navy_light),
        "sign-out": (rule_colour(css, ".user .sign-out"), navy_light),
        "flash": (rule_colour(css, ".gisgov-flash"), rule_colour(css, ".gisgov-flash", "background")),
    }
    pairs |= {f"{k} (dark end)": (fg, navy_dark) for k, (fg, bg) in pairs.items() if bg == navy_light}
    low = {k: round(contrast(fg, bg), 2) for k, (fg, bg) in pairs.items() if contrast(fg, bg) < 4.5}
    assert not low, low


def test_error_page_text_contrast():
    page = errors.error_page(404, "未找到", "not found")
    v = css_vars(page)
    for fg, bg in [
        (v["ink"], v["panel"]),
        (v["muted"], v["panel"]),
        (v["accent"], v["panel"]),
        ("#ffffff", v["accent"]),
    ]:
        assert contrast(fg, bg) >= 4.5, (fg, bg)
    assert contrast("#dbe6f5", "#1b3a66") >= 4.5  # header small text
