"""Error pages for browsers (issue 12, item 9): a page request (GET with Accept: text/html, outside /api) that
ends in 403 / 404 / 500 / 503 gets an HTML page in the app's style (status, Chinese and English message,
links to /dashboard and /login, no script, a CSP without inline scripts); /api/* and clients that do not ask
for HTML keep the JSON error model (tests/test_error_model.py)."""

from __future__ import annotations

import re

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
