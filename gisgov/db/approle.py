"""The web app's own database login: the app role created by migration 0005.

The migrations (and the CLI) connect as the database owner; the web app never does. It connects as
``GISGOV_APP_ROLE`` (default ``gisgov_app``), which owns nothing and has neither SUPERUSER nor
BYPASSRLS, so PostgreSQL's row-level security applies to every query it makes.

Without ``GISGOV_APP_DATABASE_URL`` the owner gives the role a login with a random password kept in
``GISGOV_HOME/app-db.key`` (mode 0600) and the app URL is the owner URL with that user/password.
:func:`check_app_login` refuses an app connection that could bypass row-level security.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from gisgov.config import Settings, get_settings
from gisgov.db.engine import database_url, psycopg_conninfo, sqlalchemy_url
from gisgov.errors import GisgovError
from gisgov.privatefiles import create_once

KEY_FILE = "app-db.key"


class UnsafeAppRole(GisgovError):
    status_code = 500


def app_password(home: Path) -> str:
    """The app role's password, generated once into ``home/app-db.key`` (0600; concurrent first
    starts agree on one password)."""
    return create_once(Path(home) / KEY_FILE, lambda: secrets.token_urlsafe(24))


def grant_login(owner_url: str, role: str, password: str) -> None:
    """Give the app role a login with ``password`` (the owner needs CREATEROLE or to be superuser)."""
    conninfo = psycopg_conninfo(owner_url)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        if not exists:
            raise UnsafeAppRole(f"数据库角色 {role} 不存在 app role {role} missing: run `gisgov db migrate` first")
        conn.execute(
            sql.SQL("ALTER ROLE {} WITH LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )


def app_url_from_owner(owner_url: str, role: str, password: str) -> str:
    return make_url(owner_url).set(username=role, password=password).render_as_string(hide_password=False)


def app_database_url(settings: Settings | None = None, owner_url: str | None = None) -> str:
    """URL the web app connects with (see module docstring)."""
    s = settings or get_settings()
    if s.app_database_url:
        return sqlalchemy_url(s.app_database_url)
    if owner_url is None:
        owner_url = database_url(s, start=True)
    pw = app_password(s.home_abs)
    grant_login(owner_url, s.app_role, pw)
    return app_url_from_owner(owner_url, s.app_role, pw)


def check_app_login(engine: Engine) -> str:
    """Refuse (UnsafeAppRole) an app connection that is superuser, may bypass RLS or owns tables.
    Returns the role name."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT r.rolname, r.rolsuper, r.rolbypassrls, "
                "(SELECT count(*) FROM pg_class c WHERE c.relowner = r.oid AND c.relnamespace = 'public'::regnamespace) AS owned "
                "FROM pg_roles r WHERE r.rolname = current_user"
            )
        ).one()
    if row.rolsuper or row.rolbypassrls or row.owned:
        what = "SUPERUSER" if row.rolsuper else "BYPASSRLS" if row.rolbypassrls else f"owner of {row.owned} relations"
        raise UnsafeAppRole(
            f"拒绝启动 refusing to serve: the app connects as {row.rolname}, which is {what}; row-level security "
            "would not apply. Use the app role (GISGOV_APP_ROLE) or leave GISGOV_APP_DATABASE_URL unset."
        )
    return row.rolname
