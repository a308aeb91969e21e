"""Hardening, checked over HTTP on the sample city (with grid plans): vendored files served, security
headers, CSRF on cookie-authenticated writes, CORS closed, links from configuration (not the Host
header), sign-in rate limit and lock-out, session cookie flags, sign-out and session expiry, and the
clear-PII scanner (tests/pii_scanner.py) itself.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from contextlib import contextmanager

import pytest
from auth_helpers import USER_PASSWORD, app_engine, bearer_token, ensure_user, sign_in_cookie
from fastapi.testclient import TestClient
from pii_scanner import assert_no_clear_pii, find_clear_pii, looks_like_id
from security_city import gridded_city_url  # noqa: F401  (fixture)
from sqlalchemy import create_engine, pool, text
from starlette.requests import Request

from gisgov.api.app import create_app
from gisgov.api.links import absolute_url, request_link, route_link
from gisgov.config import Settings
from gisgov.gridding import service
from gisgov.maps.assets import ASSETS, css_references, node_modules

EVIL = "http://evil.example"
WEB_DIR = Settings().web_dir


@pytest.fixture(scope="module")
def owner(gridded_city_url):
    eng = create_engine(gridded_city_url, poolclass=pool.NullPool)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def app_eng(gridded_city_url):
    eng = app_engine(gridded_city_url)
    yield eng
    eng.dispose()


@contextmanager
def client_for(app_eng, **settings):
    """A fresh app (own rate limiter) on the app-role engine; not signed in."""
    s = Settings(**{"login_rate_per_minute": 1000, **settings})
    with TestClient(create_app(s, engine=app_eng)) as c:
        yield c, s


@pytest.fixture(scope="module")
def nodes(owner) -> dict:
    with owner.connect() as c:
        grid = c.execute(
            text("""SELECT g.code FROM grid g JOIN grid_plan p ON p.id = g.plan_id AND p.status = 'active'
                                 ORDER BY g.code LIMIT 1""")
        ).scalar_one()
    return {"grid": grid, "community": grid[:12], "street": grid[:9]}


def _q(owner, sql: str, **params):
    with owner.connect() as c:
        return c.execute(text(sql), params).all()


# ---- 1. vendored files --------------------------------------------------------------------------


def test_vendor_serves_the_assets_and_what_they_load(app_eng):
    root = node_modules(WEB_DIR)
    loaded = {
        "leaflet/dist/images/marker-icon.png",
        "leaflet/dist/images/marker-icon-2x.png",
        "leaflet/dist/images/marker-shadow.png",
        "leaflet/dist/images/layers.png",
    }
    for rel in ASSETS.values():
        if rel.endswith(".css"):
            base = rel.rsplit("/", 1)[0]
            for ref in css_references((root / rel).read_text(encoding="utf-8", errors="replace")):
                parts = f"{base}/{ref}".split("/")
                out: list[str] = []
                for p in parts:
                    if p == "..":
                        out.pop()
                    elif p != ".":
                        out.append(p)
                loaded.add("/".join(out))
    assert "@fortawesome/fontawesome-free/webfonts/fa-solid-900.woff2" in loaded
    assert "leaflet.awesome-markers/dist/images/markers-soft.png" in loaded
    with client_for(app_eng) as (c, _):
        for rel in sorted(set(ASSETS.values()) | loaded):
            r = c.get(f"/static/vendor/{rel}")
            assert r.status_code == 200 and r.content == (root / rel).read_bytes(), rel


@pytest.mark.parametrize(
    "rel",
    [
        "leaflet/package.json",
        ".package-lock.json",
        ".gisgov-lock",
        "leaflet/dist/leaflet-src.js",
        "leaflet/dist/leaflet.js.map",
        "swagger-ui-dist/index.html",
        "swagger-ui-dist/oauth2-redirect.html",
        "swagger-ui-dist/swagger-ui-bundle.js.map",
        "swagger-ui-dist/package.json",
        "jquery/README.md",
        "bootstrap/dist/css/bootstrap.css",
        "lodash/lodash.js",
        "@fortawesome/fontawesome-free/LICENSE.txt",
        "leaflet/dist/images/../../package.json",
        "leaflet",
        "leaflet/dist/images/",
    ],
)
def test_vendor_refuses_everything_else(app_eng, rel):
    with client_for(app_eng) as (c, _):
        r = c.get(f"/static/vendor/{rel}")
    assert r.status_code == 404, (rel, r.status_code)


def test_the_refused_files_exist(app_eng):
    """The 404s above come from the allowlist, not from missing files."""
    root = node_modules(WEB_DIR)
    for rel in (
        "leaflet/package.json",
        ".package-lock.json",
        "leaflet/dist/leaflet-src.js",
        "swagger-ui-dist/index.html",
        "jquery/README.md",
    ):
        assert (root / rel).is_file(), rel


async def _raw_get(app, path: str) -> int:
    """GET with the path exactly as given (an HTTP client would normalise '..' away)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }
    status = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


@pytest.mark.parametrize(
    "path",
    [
        "/static/vendor/leaflet/dist/../package.json",
        "/static/vendor/leaflet/dist/images/../../../.package-lock.json",
        "/static/vendor/../../pyproject.toml",
        "/static/vendor/./leaflet/dist/leaflet.js",
        "/static/vendor/leaflet/dist/images/../leaflet.js",
    ],
)
def test_vendor_refuses_dot_segments(app_eng, path):
    app = create_app(Settings(), engine=app_eng)
    assert asyncio.run(_raw_get(app, path)) == 404


# ---- 5. security headers, CSRF, CORS --------------------------------------------------------------


def _csp(r) -> dict[str, list[str]]:
    out = {}
    for d in r.headers["content-security-policy"].split(";"):
        parts = d.split()
        if parts:
            out[parts[0]] = parts[1:]
    return out


def _inline_script_hashes(html: str) -> set[str]:
    out = set()
    for m in re.finditer(r"<script(?![^>]*\bsrc\s*=)[^>]*>(.*?)</script>", html, re.S | re.I):
        if m.group(1).strip():
            out.add("'sha256-" + base64.b64encode(hashlib.sha256(m.group(1).encode()).digest()).decode() + "'")
    return out


def test_security_headers_on_pages_and_api(gridded_city_url, app_eng, nodes):
    with client_for(app_eng) as (c, _s):
        user = ensure_user(gridded_city_url, "community_staff", nodes["community"])
        c.headers["Authorization"] = f"Bearer {bearer_token(c, user)}"
        for path in ("/login", "/map", "/dashboard"):
            # uncompressed, so the length the server declares can be compared with the body (gzip is tested apart)
            r = c.get(path, headers={"Accept-Encoding": "identity"})
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
            csp = _csp(r)
            assert "script-src" in csp and "'unsafe-inline'" not in csp["script-src"], (path, csp)
            assert "'unsafe-eval'" not in csp["script-src"] and "*" not in csp["script-src"]
            assert csp.get("frame-ancestors") == ["'none'"] and csp.get("object-src") == ["'none'"]
            assert csp.get("default-src") == ["'self'"]
            assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
            # every inline script of the page is allowed by its hash, and nothing else inline
            hashes = {x for x in csp["script-src"] if x.startswith("'sha256-")}
            assert _inline_script_hashes(r.text) == hashes, path
            assert int(r.headers["content-length"]) == len(r.content)
        for path in ("/api/auth/me", "/api/hierarchy", "/health"):
            r = c.get(path)
            assert r.status_code == 200, path
            csp = _csp(r)
            assert csp.get("default-src") == ["'none'"] and csp.get("frame-ancestors") == ["'none'"], path
            assert r.headers["x-content-type-options"] == "nosniff"
        assert c.get("/api/hierarchy").headers["cache-control"] == "no-store"


@pytest.fixture(scope="module")
def draft(owner, nodes) -> tuple[str, int]:
    """A saved draft plan in a community WITHOUT an active plan (so the test never changes the
    grids other security tests rely on): what a forged cross-site POST would try to activate."""
    comm = _q(
        owner,
        """SELECT c.code FROM community c WHERE c.street_code = :s AND NOT EXISTS (
                          SELECT 1 FROM grid_plan p WHERE p.community_code = c.code) ORDER BY c.code LIMIT 1""",
        s=nodes["street"],
    )[0][0]
    with owner.begin() as conn:
        out = service.propose_plan(conn, comm, closest=True, time_limit_s=2.0, save=True, author="t_csrf")
    assert "version" in out, out
    return comm, out["version"]


def _plan_state(owner, comm: str):
    return _q(
        owner, "SELECT version, status, activated FROM grid_plan WHERE community_code = :c ORDER BY version", c=comm
    )


def _audit_count(owner, **where) -> int:
    cond = " AND ".join(f"{k} = :{k}" for k in where)
    return _q(owner, f"SELECT count(*) FROM audit_log WHERE {cond}", **where)[0][0]


def test_cross_site_form_post_is_refused_and_changes_nothing(gridded_city_url, app_eng, owner, nodes, draft):
    comm, version = draft
    url = f"/api/grids/plans/{comm}/{version}/activate"
    before = _plan_state(owner, comm)
    assert [r.status for r in before] == ["draft"]
    audits = _audit_count(owner, action="plan_activate", object=f"{comm}/v{version}")
    user = ensure_user(gridded_city_url, "street_leader", nodes["street"])
    with client_for(app_eng) as (c, s):
        sign_in_cookie(c, s, user)
        token = c.cookies.get("gisgov_csrf")
        assert token
        form = {"content-type": "application/x-www-form-urlencoded"}
        attempts = [
            {"Origin": EVIL, **form},  # a form on another site
            {"Origin": EVIL, "X-CSRF-Token": token, **form},  # even with the token
            {"Origin": EVIL, "X-CSRF-Token": token, "content-type": "application/json"},
            {"Origin": "null", **form},  # sandboxed/privacy origin
            {"Referer": EVIL + "/page", **form},  # no Origin, foreign Referer
            {**form},  # neither Origin nor Referer
            {"Origin": s.origin, **form},  # same origin but no CSRF token
            {"Origin": s.origin, "X-CSRF-Token": "wrong", "content-type": "application/json"},
        ]
        for headers in attempts:
            c.headers.pop("Origin", None)
            c.headers.pop("X-CSRF-Token", None)
            body = "force=true" if headers.get("content-type", "").endswith("urlencoded") else '{"force": true}'
            r = c.post(url, content=body, headers=headers)
            assert r.status_code == 403, (headers, r.status_code, r.text)
        # the session itself can write when the request is same-origin with the token (positive control)
        r = c.post(
            "/api/grids/validate",
            json={"community": nodes["community"]},
            headers={"Origin": s.origin, "X-CSRF-Token": token},
        )
        assert r.status_code == 200, r.text
        r = c.post(
            "/api/grids/validate",
            json={"community": nodes["community"]},
            headers={"Origin": EVIL, "X-CSRF-Token": token},
        )
        assert r.status_code == 403
    assert _plan_state(owner, comm) == before
    assert _audit_count(owner, action="plan_activate", object=f"{comm}/v{version}") == audits


def test_login_from_another_site_is_refused(gridded_city_url, app_eng, nodes):
    user = ensure_user(gridded_city_url, "viewer", nodes["community"])
    with client_for(app_eng) as (c, _):
        r = c.post("/api/auth/login", json={"username": user, "password": USER_PASSWORD}, headers={"Origin": EVIL})
        assert r.status_code == 403
        assert "gisgov_session" not in r.headers.get("set-cookie", "")


def test_cors_is_closed(gridded_city_url, app_eng, nodes):
    user = ensure_user(gridded_city_url, "viewer", nodes["community"])
    with client_for(app_eng) as (c, _):
        auth = {"Authorization": f"Bearer {bearer_token(c, user)}"}
        responses = [
            c.get("/health", headers={"Origin": EVIL}),
            c.get("/api/hierarchy", headers={"Origin": EVIL, **auth}),
            c.options(
                "/api/grids/validate",
                headers={
                    "Origin": EVIL,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type,x-csrf-token",
                },
            ),
            c.options("/api/auth/login", headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"}),
        ]
    for r in responses:
        cors = [k for k in r.headers if k.lower().startswith("access-control-")]
        assert cors == [], (r.request.method, r.request.url.path, cors)


# ---- 2. links from configuration, not the Host header ----------------------------------------------


def test_redirects_ignore_a_forged_host(app_eng):
    with client_for(app_eng, public_url="https://gisgov.example.gov.cn") as (c, s):
        for path in ("/map/", "/static/vendor", "/api/hierarchy/"):
            r = c.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
            if r.status_code in (301, 302, 303, 307, 308):
                loc = r.headers["location"]
                assert "evil.example" not in loc, (path, loc)
                assert loc.startswith(("/", s.origin + "/")), (path, loc)
        r = c.get("/map/", headers={"Host": "evil.example"}, follow_redirects=False)
        assert r.status_code == 307 and r.headers["location"] == "https://gisgov.example.gov.cn/map"


def test_link_helpers_use_the_configured_origin(app_eng):
    s = Settings(public_url="https://gisgov.example.gov.cn/")
    app = create_app(s, engine=app_eng)
    scope = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "path": "/api/layers/community",
        "root_path": "",
        "query_string": b"limit=5&offset=0&bbox=1,2,3,4",
        "server": ("evil.example", 80),
        "app": app,
        "headers": [
            (b"host", b"evil.example"),
            (b"x-forwarded-host", b"evil.example"),
            (b"x-forwarded-proto", b"http"),
        ],
    }
    request = Request(scope)
    assert str(request.url).startswith("http://evil.example/")  # what the request itself claims
    assert absolute_url(s, "/api/layers?x=1") == "https://gisgov.example.gov.cn/api/layers?x=1"
    assert absolute_url(s, "//evil.example/x").startswith("https://gisgov.example.gov.cn//")
    with pytest.raises(ValueError):
        absolute_url(s, "http://evil.example/x")
    nxt = request_link(request, offset=5, limit=5)
    assert nxt.startswith("https://gisgov.example.gov.cn/api/layers/community?") and "offset=5" in nxt
    assert "bbox=1%2C2%2C3%2C4" in nxt or "bbox=1,2,3,4" in nxt
    assert request_link(request) == "https://gisgov.example.gov.cn/api/layers/community?limit=5&offset=0&bbox=1,2,3,4"
    assert route_link(request, "import_status", job_id="abc") == "https://gisgov.example.gov.cn/api/import/abc"


def test_paging_links_ignore_a_forged_host(gridded_city_url, app_eng, nodes):
    user = ensure_user(gridded_city_url, "viewer", nodes["community"])
    with client_for(app_eng, public_url="https://gisgov.example.gov.cn") as (c, s):
        c.headers["Authorization"] = f"Bearer {bearer_token(c, user)}"
        r = c.get("/api/layers/compound", params={"limit": 1, "offset": 1}, headers={"Host": "evil.example"})
        assert r.status_code == 200
        links = r.json()["links"]
        assert {x["rel"] for x in links} >= {"self", "next", "prev"}
        assert all(x["href"].startswith(s.origin + "/api/layers/compound?") for x in links), links


# ---- sign-in: rate limit, lock-out, cookies, sign-out, expiry --------------------------------------


def test_sign_in_rate_limit(gridded_city_url, app_eng, owner, nodes):
    user = ensure_user(gridded_city_url, "viewer", nodes["street"], username="t_ratelimit")
    before = _audit_count(owner, action="login", actor=user, result="denied")
    with client_for(app_eng, login_rate_per_minute=4, login_max_failures=100) as (c, s):
        codes = [
            c.post(
                "/api/auth/login", json={"username": user, "password": "wrong-Passw0rd"}, headers={"Origin": s.origin}
            ).status_code
            for _ in range(4)
        ]
        assert codes == [401] * 4
        # the 5th attempt within the minute is refused whatever it carries, on both sign-in routes
        r = c.post("/api/auth/login", json={"username": user, "password": USER_PASSWORD}, headers={"Origin": s.origin})
        assert r.status_code == 429, r.text
        r = c.post("/api/auth/token", data={"username": user, "password": USER_PASSWORD})
        assert r.status_code == 429
    assert _audit_count(owner, action="login", actor=user, result="denied") == before + 2
    # a fresh app (another process) has its own window: the account itself is not locked
    with client_for(app_eng, login_max_failures=100) as (c, _):
        assert c.post("/api/auth/token", data={"username": user, "password": USER_PASSWORD}).status_code == 200


def test_lockout_after_repeated_failures(gridded_city_url, app_eng, owner, nodes):
    user = ensure_user(gridded_city_url, "viewer", nodes["street"], username="t_lockout")
    with owner.begin() as conn:  # start clean if the session already used this account
        conn.execute(text("UPDATE app_user SET failed_count = 0, locked_until = NULL WHERE username = :u"), {"u": user})
    before = _q(owner, "SELECT coalesce(max(id), 0) FROM audit_log")[0][0]
    with client_for(app_eng, login_max_failures=3) as (c, s):
        wrong = [c.post("/api/auth/token", data={"username": user, "password": "wrong-Passw0rd"}) for _ in range(3)]
        assert [r.status_code for r in wrong] == [401] * 3
        right = c.post("/api/auth/token", data={"username": user, "password": USER_PASSWORD})
        assert right.status_code == 401, "the correct password must be refused while the account is locked"
        assert right.json()["detail"] == wrong[0].json()["detail"]  # no hint that the account is locked
        r = c.post("/api/auth/login", json={"username": user, "password": USER_PASSWORD}, headers={"Origin": s.origin})
        assert r.status_code == 401 and "gisgov_session" not in r.headers.get("set-cookie", "")
    rows = _q(
        owner,
        """SELECT result, detail->>'reason' FROM audit_log WHERE id > :b AND action = 'login'
                        AND actor = :u ORDER BY id""",
        b=before,
        u=user,
    )
    assert [tuple(r) for r in rows] == [("failed", "wrong_password")] * 3 + [("failed", "locked")] * 2
    locked = _q(owner, "SELECT locked_until > now() FROM app_user WHERE username = :u", u=user)[0][0]
    assert locked


def test_session_cookie_flags(gridded_city_url, app_eng, nodes):
    user = ensure_user(gridded_city_url, "viewer", nodes["community"])
    with client_for(app_eng) as (c, s):
        r = c.post("/api/auth/login", json={"username": user, "password": USER_PASSWORD}, headers={"Origin": s.origin})
        assert r.status_code == 200
        cookies = {h.split("=", 1)[0]: h for h in r.headers.get_list("set-cookie")}
        session = cookies["gisgov_session"].lower()
        assert "httponly" in session and "samesite=strict" in session and "path=/" in session
        assert "max-age=" in session
        csrf = cookies["gisgov_csrf"].lower()
        assert "samesite=strict" in csrf and "httponly" not in csrf  # the page reads it to echo the header
        token = c.cookies.get("gisgov_session")
        assert token and token not in r.text  # the session token is never in the body
    with client_for(app_eng, public_url="https://gisgov.example.gov.cn") as (c, s):
        r = c.post("/api/auth/login", json={"username": user, "password": USER_PASSWORD}, headers={"Origin": s.origin})
        assert r.status_code == 200
        assert all("secure" in h.lower() for h in r.headers.get_list("set-cookie"))


def test_sign_out_ends_the_session(gridded_city_url, app_eng, owner, nodes):
    user = ensure_user(gridded_city_url, "viewer", nodes["community"])
    with client_for(app_eng) as (c, s):
        tok = bearer_token(c, user)
        auth = {"Authorization": f"Bearer {tok}"}
        assert c.get("/api/auth/me", headers=auth).status_code == 200
        assert c.post("/api/auth/logout", headers=auth).status_code == 200
        assert c.get("/api/auth/me", headers=auth).status_code == 401
        assert c.post("/api/auth/logout", headers=auth).status_code == 401
        digest = hashlib.sha256(tok.encode()).digest()
        assert _q(owner, "SELECT count(*) FROM auth_session WHERE token_hash = :t", t=digest)[0][0] == 0

        sign_in_cookie(c, s, user)
        cookie = c.cookies.get("gisgov_session")
        assert c.get("/api/auth/me").status_code == 200
        assert c.post("/api/auth/logout").status_code == 200
    with client_for(app_eng) as (c2, _):  # replaying the old cookie after sign-out
        c2.cookies.set("gisgov_session", cookie)
        assert c2.get("/api/auth/me").status_code == 401
        r = c2.get("/map", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_idle_and_expired_sessions_are_refused(gridded_city_url, app_eng, owner, nodes):
    user = ensure_user(gridded_city_url, "viewer", nodes["community"])
    with client_for(app_eng, session_idle_minutes=30) as (c, s):
        sign_in_cookie(c, s, user)
        digest = hashlib.sha256(c.cookies.get("gisgov_session").encode()).digest()
        assert c.get("/api/auth/me").status_code == 200
        with owner.begin() as conn:
            conn.execute(
                text("UPDATE auth_session SET last_seen = now() - interval '31 minutes' WHERE token_hash = :t"),
                {"t": digest},
            )
        r = c.get("/api/auth/me")
        assert r.status_code == 401 and r.headers.get("www-authenticate") == "Bearer"

        tok = bearer_token(c, user)
        auth = {"Authorization": f"Bearer {tok}"}
        assert c.get("/api/auth/me", headers=auth).status_code == 200
        with owner.begin() as conn:
            conn.execute(
                text("UPDATE auth_session SET expires = now() - interval '1 second' WHERE token_hash = :t"),
                {"t": hashlib.sha256(tok.encode()).digest()},
            )
        assert c.get("/api/auth/me", headers=auth).status_code == 401
        # a bearer token is not a cookie and a cookie is not a bearer token
        tok2 = bearer_token(c, user)
        c.cookies.clear()
        c.cookies.set("gisgov_session", tok2)
        assert c.get("/api/auth/me").status_code == 401


# ---- the clear-PII scanner --------------------------------------------------------------------------


def test_pii_scanner_finds_clear_ids_and_mobiles(sample_city):
    ids = sample_city.residents["id_number"].astype(str).head(200).tolist()
    phones = [p for p in sample_city.residents["phone"].head(400).tolist() if isinstance(p, str)][:100]
    assert all(looks_like_id(x) for x in ids)
    blob = "居民 " + "，".join(ids) + " 电话 " + " / ".join(phones)
    kinds = [k for k, _ in find_clear_pii(blob)]
    assert kinds.count("id") == len(ids) and kinds.count("mobile") == len(phones)
    with pytest.raises(AssertionError) as err:
        assert_no_clear_pii(f'{{"id_number": "{ids[0]}"}}', where="test")
    assert ids[0] not in str(err.value)  # the failure message does not repeat the number
    assert_no_clear_pii('{"phone": "13812345678"}'.replace("13812345678", "138****5678"))
    with pytest.raises(AssertionError):
        assert_no_clear_pii(b'{"phone": "13812345678"}')


@pytest.mark.parametrize(
    "text_",
    [
        "110101********4514",  # masked ID
        "138****5678",  # masked mobile
        "110101199003074515",  # wrong check character
        "110101199013074512",  # month 13
        "340104001001001001001",  # 21-digit household code
        "34010400100100100",  # 17-digit building code
        "[117.13812345678, 31.15912345678]",  # coordinates' decimals
        "12812345678 10012345678",  # not mobile prefixes
        "213812345678",  # 12 digits
    ],
)
def test_pii_scanner_ignores_masked_and_other_numbers(text_):
    assert find_clear_pii(text_) == []


def test_pii_scanner_check_character():
    assert looks_like_id("11010519491231002X")  # the example of GB 11643-1999
    assert looks_like_id("11010519491231002x")
    assert not looks_like_id("110105194912310021")
    assert find_clear_pii("证件 11010519491231002X 号") == [("id", "11010519491231002X")]


def test_personal_responses_hold_no_clear_pii(gridded_city_url, app_eng, nodes):
    user = ensure_user(gridded_city_url, "grid_worker", nodes["grid"])
    with client_for(app_eng) as (c, _):
        c.headers["Authorization"] = f"Bearer {bearer_token(c, user)}"
        r = c.get("/api/layers/resident", params={"limit": 2000})
        assert r.status_code == 200 and r.json()["features"]
        assert_no_clear_pii(r.text, where="resident layer")
        rid = r.json()["features"][0]["id"]
        r = c.get(f"/api/resident/{rid}")
        assert r.status_code == 200
        assert_no_clear_pii(r.text, where="resident detail")
        for path in (
            f"/api/grid/{nodes['grid']}",
            f"/api/community/{nodes['community']}",
            "/api/hierarchy",
            f"/api/grids/plans/{nodes['community']}",
        ):
            r = c.get(path)
            assert r.status_code == 200, (path, r.status_code)
            assert_no_clear_pii(r.text, where=path)
