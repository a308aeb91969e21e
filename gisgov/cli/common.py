"""The one place CLI commands open the gisgov database: the server brought up (embedded cluster) or
reached (``GISGOV_DATABASE_URL``), and the schema checked against the migrations' head.

Each failure is ONE line on stderr and an exit code, never a traceback:
3 the database cannot be reached or started; 2 the schema is missing, older than this gisgov (run
`gisgov db migrate`) or newer (upgrade gisgov).
"""

from __future__ import annotations

from contextlib import contextmanager

import typer

EXIT_NOT_MIGRATED = 2
EXIT_DATABASE = 3


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def say(message: str) -> None:
    """A progress note on stderr (e.g. waiting for a crashed server's processes)."""
    typer.echo(_one_line(message), err=True)


def fail(message: str, code: int) -> typer.Exit:
    """Print ``message`` as one line on stderr; return the Exit to raise."""
    typer.echo(f"错误 error: {_one_line(message)}", err=True)
    return typer.Exit(code)


def database_url(*, migrated: bool = True) -> str:
    """URL of the gisgov database (as its owner), the embedded cluster started if needed. With
    ``migrated`` (every command but the ones whose job is to migrate) the schema must be at head."""
    from sqlalchemy.exc import DBAPIError

    from gisgov.db import migrate
    from gisgov.db.engine import database_url as resolve
    from gisgov.errors import DatabaseUnavailable

    try:
        url = resolve(start=True, say=say)
    except DatabaseUnavailable as exc:
        raise fail(f"数据库不可用 database unavailable: {exc}", EXIT_DATABASE) from None
    if not migrated:
        return url
    try:
        problem = migrate.schema_problem(url)
    except DBAPIError as exc:
        orig = getattr(exc, "orig", None) or exc
        first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        raise fail(f"无法连接数据库 cannot reach the database: {first}", EXIT_DATABASE) from None
    if problem:
        raise fail(problem, EXIT_NOT_MIGRATED)
    return url


def engine(**kw):
    """An engine on the migrated gisgov database (see :func:`database_url`)."""
    from gisgov.db.engine import make_engine

    return make_engine(database_url(), **kw)


# --- commands that act as an account (`--as USER`): its role and scope apply, as in the web app -----

EXIT = {404: 1, 422: 2, 400: 2, 403: 3, 401: 3, 409: 4}
AS_HELP = "以该账号身份 act as this account (its role and scope apply)"


def _console():
    from gisgov.cli.users import out

    return out()


def _fail(exc) -> typer.Exit:
    """A domain error as one line and its exit code (:data:`EXIT`)."""
    from gisgov.cli.users import fail as say_fail

    return say_fail(str(exc), EXIT.get(exc.status_code, 2))


@contextmanager
def acting(username: str):
    """(connection in a transaction scoped to the account, principal, engine) on the app role's
    connection; commit on success. An unknown or disabled account: one line, exit 1."""
    from sqlalchemy import pool, text

    from gisgov.cli.users import fail as say_fail
    from gisgov.config import Settings
    from gisgov.db.approle import app_database_url
    from gisgov.db.engine import make_engine
    from gisgov.security.roles import Principal, Role

    eng = make_engine(app_database_url(Settings(), owner_url=database_url()), poolclass=pool.NullPool)
    try:
        with eng.connect() as conn:
            row = conn.execute(
                text("SELECT id, username, display_name, role, scope_code, disabled FROM app_user WHERE username = :u"),
                {"u": username},
            ).first()
            conn.rollback()
            if row is None or row.disabled:
                raise say_fail(f"账号不存在或已停用 no such enabled account: {username}", 1)
            p = Principal(row.id, row.username, row.display_name, Role(row.role), row.scope_code, auth="cli")
            with conn.begin():
                conn.execute(text("SELECT set_config('gisgov.scope', :s, true)"), {"s": p.db_scope})
                yield conn, p, eng
    finally:
        eng.dispose()
