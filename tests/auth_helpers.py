"""Signed-in test clients: the app connects as the app role (never the owner), and each client is
an account of a given role bound to a given node, signed in with a bearer token (or a cookie).

    with signed_in_client(Settings(), owner_engine, role="admin") as c:
        c.get("/api/hierarchy")
"""

from __future__ import annotations

from contextlib import contextmanager

from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, pool, text
from sqlalchemy.engine import make_url

from gisgov.api.app import create_app
from gisgov.config import Settings
from gisgov.db.approle import app_url_from_owner, grant_login
from gisgov.security import accounts

APP_ROLE = "gisgov_app"
APP_TEST_PASSWORD = "gisgov-app-test-password-1"
USER_PASSWORD = "Test-passw0rd"


def owner_url_of(owner: Engine | str) -> str:
    if isinstance(owner, Engine):
        return owner.url.render_as_string(hide_password=False)
    return owner


def app_url(owner: Engine | str) -> str:
    url = owner_url_of(owner)
    grant_login(url, APP_ROLE, APP_TEST_PASSWORD)
    return app_url_from_owner(url, APP_ROLE, APP_TEST_PASSWORD)


def app_engine(owner: Engine | str, *, pool_size: int = 5, max_overflow: int = 5, pool_timeout: float = 30) -> Engine:
    """An engine connecting as the app role to the owner's database."""
    return create_engine(
        app_url(owner), pool_size=pool_size, max_overflow=max_overflow, pool_timeout=pool_timeout, pool_pre_ping=True
    )


def ensure_user(
    owner: Engine | str,
    role: str = "admin",
    scope: str = "",
    username: str | None = None,
    password: str = USER_PASSWORD,
) -> str:
    """Create (once) an account with ``role`` bound to ``scope``; returns its user name."""
    username = username or f"t_{role}_{scope or 'all'}"
    eng = create_engine(owner_url_of(owner), poolclass=pool.NullPool)
    try:
        with eng.begin() as conn:
            if conn.execute(text("SELECT 1 FROM app_user WHERE username = :u"), {"u": username}).first() is None:
                accounts.add_user(conn, username, password, role, scope)
    finally:
        eng.dispose()
    return username


def bearer_token(client: TestClient, username: str, password: str = USER_PASSWORD) -> str:
    r = client.post("/api/auth/token", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def sign_in_cookie(client: TestClient, settings: Settings, username: str, password: str = USER_PASSWORD) -> None:
    """Sign in like the login page does; later writes send Origin + X-CSRF-Token like the pages."""
    r = client.post(
        "/api/auth/login", json={"username": username, "password": password}, headers={"Origin": settings.origin}
    )
    assert r.status_code == 200, r.text
    client.headers["Origin"] = settings.origin
    client.headers["X-CSRF-Token"] = client.cookies.get("gisgov_csrf")


@contextmanager
def signed_in_client(
    settings: Settings | None,
    owner: Engine | str,
    *,
    role: str = "admin",
    scope: str = "",
    cookie: bool = False,
    engine: Engine | None = None,
):
    """A TestClient of an app on the owner's database, signed in as ``role`` at ``scope``."""
    settings = settings or Settings()
    own = engine is None
    eng = engine or app_engine(owner)
    user = ensure_user(owner, role, scope)
    app = create_app(settings, engine=eng)
    try:
        with TestClient(app) as c:
            if cookie:
                sign_in_cookie(c, settings, user)
            else:
                c.headers["Authorization"] = f"Bearer {bearer_token(c, user)}"
            yield c
    finally:
        if own:
            eng.dispose()


def database_name(owner: Engine | str) -> str:
    return make_url(owner_url_of(owner)).database
