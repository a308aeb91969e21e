"""What every CLI command shares: the exit codes, the one-line error, the console, and the one way to
open the gisgov database (the server brought up (embedded cluster) or reached (``GISGOV_DATABASE_URL``),
and the schema checked against the migrations' head).

Exit codes, the same for every command (documented in the README, tested in tests/test_cli_exit_codes.py):

== ====================================================================================================
0  done
1  rejected or refused (nothing written), rule breaks found, refused for the account's role, conflict
2  usage error: unknown option, bad value or bad input
3  database unavailable: cannot be reached or started, or not migrated (run `gisgov db migrate`)
4  not found: no such community, grid, plan, event, account … (or outside the account's scope)
== ====================================================================================================

Each failure is ONE line on stderr and an exit code, never a traceback.

Keep the command line fast: ``gisgov --help`` imports every command module, so a command module
imports nothing heavy at its top (no geopandas, pandas, shapely, numpy, SQLAlchemy, folium, OR-Tools,
SciPy, openpyxl, rich.progress …: tests/test_cli_fast.py checks). A command imports what it needs
inside its function, after ``engine()`` / ``database_url()``, so an unreachable database is said at
once rather than after seconds of imports. This module itself imports nothing but typer.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy import Connection, Engine

    from gisgov.security.roles import Principal

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_DATABASE = 3
EXIT_NOT_FOUND = 4

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "完成 done",
    EXIT_REJECTED: "已拒绝/违反规则 rejected or refused (nothing written), rule breaks, conflict",
    EXIT_USAGE: "用法错误 usage error: unknown option, bad value or bad input",
    EXIT_DATABASE: "数据库不可用或未迁移 database unavailable, or not migrated (run `gisgov db migrate`)",
    EXIT_NOT_FOUND: "未找到 not found (or outside the account's scope)",
}

# Kept for older imports: a database without the current schema is "database unavailable".
EXIT_NOT_MIGRATED = EXIT_DATABASE


def group(help: str, **kw: Any) -> typer.Typer:
    """A command group (``gisgov <name> …``): help when called bare, plain click help (rendering it
    through rich would import rich's markdown machinery, about 0.4 s on every ``--help``)."""
    kw.setdefault("no_args_is_help", True)
    kw.setdefault("rich_markup_mode", None)
    kw.setdefault("pretty_exceptions_enable", False)
    return typer.Typer(help=help, **kw)


def exit_code_for(exc: BaseException) -> int:
    """The exit code of a domain error (:class:`gisgov.errors.GisgovError`), from its HTTP status:
    404 → 4 not found, 422 → 2 bad input, 503 → 3 database unavailable, any other refusal → 1."""
    status = getattr(exc, "status_code", None)
    if status == 404:
        return EXIT_NOT_FOUND
    if status == 422:
        return EXIT_USAGE
    if status == 503:
        return EXIT_DATABASE
    return EXIT_REJECTED


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


def say(message: str) -> None:
    """A progress note on stderr (e.g. waiting for a crashed server's processes)."""
    typer.echo(_one_line(message), err=True)


def fail(message: object, code: int) -> typer.Exit:
    """Print ``message`` as one line on stderr; return the Exit to raise (``raise fail(...)``)."""
    typer.echo(f"错误 error: {_one_line(message)}", err=True)
    return typer.Exit(code)


def error(exc: BaseException) -> typer.Exit:
    """A domain error as one line on stderr; return the Exit with its code (:func:`exit_code_for`)."""
    return fail(exc, exit_code_for(exc))


def escape(text: str) -> str:
    """``text`` with rich markup escaped (rich imported on first use)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def console() -> Console:
    """Console for results: the terminal's width, or wide (not 80) when written to a pipe or file."""
    import os

    from rich.console import Console

    if "COLUMNS" not in os.environ and not sys.stdout.isatty():
        return Console(width=200)
    return Console()


class LazyConsole:
    """A module-level ``console`` that creates the rich Console on first use (importing rich.console
    costs time every ``--help`` would pay otherwise)."""

    def __init__(self, **kw: Any) -> None:
        self._kw = kw
        self._console: Console | None = None

    def get(self) -> Console:
        """The rich Console itself (to hand to code that draws on it)."""
        if self._console is None:
            if self._kw:
                from rich.console import Console

                self._console = Console(**self._kw)
            else:  # results: never cut codes when piped (see console())
                self._console = console()
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


def progress(con: Any, *, transient: bool = False) -> Any:
    """The rich progress bar every long command draws (description, bar, n/m, elapsed)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=con,
        transient=transient,
    )


class StageBars:
    """Adapter: core functions call ``progress(stage, done, total)``; this draws one rich bar per stage."""

    def __init__(self, bars: Any, labels: dict[str, str] | None = None) -> None:
        self.p = bars
        self.labels = labels or {}
        self.tasks: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.p.add_task(self.labels.get(stage, stage), total=max(total, 1))
        self.p.update(self.tasks[stage], completed=done, total=max(total, 1))


def database_url(*, migrated: bool = True) -> str:
    """URL of the gisgov database (as its owner), the embedded cluster started if needed. With
    ``migrated`` (every command but the ones whose job is to migrate) the schema must be at head.
    Unreachable, or not at head: one line and exit 3."""
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
        raise fail(problem, EXIT_DATABASE)
    return url


def engine(**kw: Any) -> Engine:
    """An engine on the migrated gisgov database (see :func:`database_url`)."""
    from gisgov.db.engine import make_engine

    return make_engine(database_url(), **kw)


# --- commands that act as an account (`--as USER`): its role and scope apply, as in the web app -----

AS_HELP = "以该账号身份 act as this account (its role and scope apply)"


@contextmanager
def acting(username: str) -> Iterator[tuple[Connection, Principal, Engine]]:
    """(connection in a transaction scoped to the account, principal, engine) on the app role's
    connection; commit on success. An unknown account: one line, exit 4; a disabled one: exit 1."""
    from sqlalchemy import pool, text

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
            if row is None:
                raise fail(f"账号不存在 no such account: {username}", EXIT_NOT_FOUND)
            if row.disabled:
                raise fail(f"账号已停用 account disabled: {username}", EXIT_REJECTED)
            p = Principal(row.id, row.username, row.display_name, Role(row.role), row.scope_code, auth="cli")
            with conn.begin():
                conn.execute(text("SELECT set_config('gisgov.scope', :s, true)"), {"s": p.db_scope})
                yield conn, p, eng
    finally:
        eng.dispose()
