"""The audit log page /admin/audit, GET /api/audit and GET /api/users: admin only, reads audited."""

from __future__ import annotations

import re

import pytest
from auth_helpers import app_engine, signed_in_client
from fastapi.testclient import TestClient
from mini_city import COMM_A, GRID_A1, STREET, load_mini_city
from sqlalchemy import create_engine, pool, text

from gisgov.api.app import create_app
from gisgov.config import Settings
from gisgov.security import audit


@pytest.fixture(scope="module")
def url(db_factory) -> str:
    u = db_factory.create()
    load_mini_city(u)
    return u


@pytest.fixture(scope="module")
def owner(url):
    eng = create_engine(url, poolclass=pool.NullPool)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def app_eng(url):
    eng = app_engine(url)
    yield eng
    eng.dispose()


@pytest.fixture
def admin(url, app_eng):
    with signed_in_client(Settings(), url, role="admin", engine=app_eng) as c:
        yield c


def _count(owner, action: str) -> int:
    with owner.connect() as c:
        return c.execute(text("SELECT count(*) FROM audit_log WHERE action = :a"), {"a": action}).scalar()


NON_ADMINS = [
    ("street_leader", STREET),
    ("community_staff", COMM_A),
    ("grid_worker", GRID_A1),
    ("planner", STREET),
    ("viewer", STREET),
]


@pytest.mark.parametrize("role, scope", NON_ADMINS)
def test_non_admins_get_403_and_nothing_is_read(url, app_eng, owner, role, scope):
    before = _count(owner, "audit_read")
    with signed_in_client(Settings(), url, role=role, scope=scope, engine=app_eng) as c:
        for path in ("/api/audit", "/api/audit?action=login", "/api/users", "/admin/audit"):
            r = c.get(path)
            assert r.status_code == 403, (role, path, r.text)
            assert "actor" not in r.text and "password" not in r.text
    assert _count(owner, "audit_read") == before


def test_not_signed_in(url, app_eng):
    with TestClient(create_app(Settings(), engine=app_eng)) as c:
        assert c.get("/api/audit").status_code == 401
        assert c.get("/api/users").status_code == 401
        page = c.get("/admin/audit", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/login?next=/admin/audit")


def test_admin_reads_audit_rows_and_the_read_is_audited_once(admin, owner):
    audit.record(
        owner, "login", actor="someone", result="failed", client="10.0.0.9", detail={"reason": "wrong_password"}
    )
    before = _count(owner, "audit_read")
    r = admin.get("/api/audit", params={"action": "login", "result": "failed", "limit": 10})
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["limit"] == 10 and body["offset"] == 0
    assert body["items"] and all(x["action"] == "login" and x["result"] == "failed" for x in body["items"])
    row = next(x for x in body["items"] if x["actor"] == "someone")
    assert row["client_addr"] == "10.0.0.9" and row["detail"] == {"reason": "wrong_password"}
    assert row["action_label"] == audit.ACTIONS["login"]
    assert _count(owner, "audit_read") == before + 1
    with owner.connect() as c:
        last = c.execute(
            text(
                "SELECT actor, actor_role, object, result, detail FROM audit_log "
                "WHERE action = 'audit_read' ORDER BY id DESC LIMIT 1"
            )
        ).one()
    assert (last.actor, last.actor_role, last.object, last.result) == ("t_admin_all", "admin", "audit_log", "ok")
    assert last.detail["action"] == "login" and last.detail["result"] == "failed" and last.detail["via"] == "api"


def test_filters_and_paging(admin, owner):
    for i in range(5):
        audit.record(owner, "export", actor="pager", object=f"export:{i}")
    p1 = admin.get("/api/audit", params={"actor": "pager", "limit": 2}).json()
    assert [x["object"] for x in p1["items"]] == ["export:4", "export:3"] and p1["next_offset"] == 2
    p2 = admin.get("/api/audit", params={"actor": "pager", "limit": 2, "offset": p1["next_offset"]}).json()
    assert [x["object"] for x in p2["items"]] == ["export:2", "export:1"]
    p3 = admin.get("/api/audit", params={"actor": "pager", "limit": 2, "offset": 4}).json()
    assert [x["object"] for x in p3["items"]] == ["export:0"] and p3["next_offset"] is None
    newest = p1["items"][0]["at"]
    since = admin.get("/api/audit", params={"actor": "pager", "since": newest}).json()["items"]
    assert [x["object"] for x in since] == ["export:4"]
    until = admin.get("/api/audit", params={"actor": "pager", "until": newest}).json()["items"]
    assert len(until) == 4 and "export:4" not in {x["object"] for x in until}
    assert admin.get("/api/audit", params={"since": "2999-01-01T00:00:00Z"}).json()["items"] == []


@pytest.mark.parametrize(
    "params",
    [{"action": "dance"}, {"result": "meh"}, {"limit": 0}, {"limit": 501}, {"offset": -1}, {"since": "yesterday"}],
)
def test_bad_filters_are_422(admin, params):
    assert admin.get("/api/audit", params=params).status_code == 422


def test_admin_page_is_chinese_first_without_inline_script(admin):
    r = admin.get("/admin/audit")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "审计日志" in html and html.index("审计日志") < html.index("Audit log")
    assert '<form id="filters"' in html and 'id="audit-table"' in html
    for key in audit.ACTIONS:
        assert f'<option value="{key}">' in html
    assert "{{" not in html
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r"\son[a-z]+\s*=", html)  # no inline event handlers
    csp = r.headers["content-security-policy"]
    assert "sha256-" not in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    src = re.search(r'<script src="([^"]+)"', html).group(1)
    assert src.startswith("/static/admin/admin.js")
    js = admin.get(src)
    assert js.status_code == 200 and "/api/audit" in js.text and "innerHTML" not in js.text
    assert admin.get(re.search(r'href="(/static/admin/admin\.css[^"]*)"', html).group(1)).status_code == 200


def test_api_users_lists_accounts_without_hashes(admin, owner, url):
    r = admin.get("/api/users")
    assert r.status_code == 200, r.text
    users = {u["username"]: u for u in r.json()}
    assert users["t_admin_all"]["role"] == "admin" and users["t_admin_all"]["role_label"] == "管理员"
    assert users["t_admin_all"]["last_login"] is not None
    assert "$argon2" not in r.text and "password" not in r.text
    assert set(users["t_admin_all"]) == {
        "username",
        "display_name",
        "role",
        "role_label",
        "scope",
        "disabled",
        "is_demo",
        "locked",
        "last_login",
        "created",
    }


def test_cookie_session_page_flow(url, app_eng):
    with signed_in_client(Settings(), url, role="admin", engine=app_eng, cookie=True) as c:
        assert c.get("/admin/audit").status_code == 200
        assert c.get("/api/audit").status_code == 200
