"""`gisgov user add | list | disable | passwd | role`: accounts, from the command line.

The commands connect as the database owner (the same URL as `gisgov db …`), change accounts through
:mod:`gisgov.security.accounts` and write an audit row (action ``user_admin``, actor ``cli:<OS user>``)
in the same transaction as the change; a change the database rejects is audited as ``failed``.
Passwords are read hidden (asked twice) or from standard input (``--password-stdin``); they are
never printed, logged or audited.

Exit codes (:mod:`gisgov.cli.common`): 0 done, 1 rejected, 2 bad input (role, scope, password, duplicate name),
3 database unavailable or not migrated (run `gisgov db migrate`), 4 no such user.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

from gisgov.cli import common
from gisgov.cli.common import EXIT_DATABASE, EXIT_NOT_FOUND, EXIT_USAGE, fail
from gisgov.cli.common import console as out
from gisgov.errors import InvalidInput, NotFound
from gisgov.security.roles import ROLE_LABELS, Role, check_scope

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

app = common.group("账号 Accounts: add, list, disable, change password or role (audited).")

EXIT_BAD_INPUT = EXIT_USAGE

ROLE_HELP = "角色 Role: " + ", ".join(f"{r.value} ({ROLE_LABELS[r]})" for r in Role)
SCOPE_HELP = "绑定的层级代码 Scope: street (9 digits), community (12) or grid (15) code; empty for admin (whole city)."


def cli_actor() -> str:
    """Who runs the command, for the audit log: ``cli:<OS user name>``."""
    try:
        name = getpass.getuser()
    except Exception:  # no user name in the environment or password database
        name = "unknown"
    return f"cli:{name}"


def owner_engine() -> Engine:
    """An engine on the gisgov database as its owner (embedded cluster brought up if needed)."""
    from sqlalchemy import pool

    return common.engine(poolclass=pool.NullPool)


@contextmanager
def owner_transaction() -> Iterator[Connection]:
    """One transaction as the owner; a database without the accounts schema is a clear error."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    eng = owner_engine()
    try:
        try:
            with eng.begin() as conn:
                if conn.execute(text("SELECT to_regclass('app_user') IS NOT NULL")).scalar() is not True:
                    raise fail("数据库尚无账号表 no account tables yet: run `gisgov db migrate` first", EXIT_DATABASE)
                yield conn
        except OperationalError as exc:
            raise fail(f"无法连接数据库 cannot reach the database: {exc.orig}", EXIT_DATABASE) from exc
    finally:
        eng.dispose()


def record_failure(op: str, username: str | None, reason: str) -> None:
    """Audit a rejected change in its own transaction (the change itself was rolled back)."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from gisgov.security import audit

    eng = owner_engine()
    try:
        audit.record(
            eng,
            "user_admin",
            actor=cli_actor(),
            object=_object(username),
            result="failed",
            detail={"op": op, "reason": reason},
        )
    except (OperationalError, ProgrammingError):
        pass  # no schema or no database: nothing to audit into, the error was already reported
    finally:
        eng.dispose()


def _object(username: str | None) -> str | None:
    return f"user:{username}" if username else None


def parse_role(role: str) -> Role:
    try:
        return Role(role.strip())
    except ValueError:
        raise fail(
            f"未知角色 unknown role {role!r}; one of: " + ", ".join(f"{r.value} ({ROLE_LABELS[r]})" for r in Role),
            EXIT_BAD_INPUT,
        ) from None


def parse_scope(role: Role, scope: str) -> str:
    try:
        return check_scope(role, scope)
    except ValueError as exc:
        raise fail(f"范围无效 invalid scope: {exc}", EXIT_BAD_INPUT) from None


def read_password(password_stdin: bool) -> str:
    """The new password: one line from stdin with --password-stdin, else asked twice, hidden."""
    if password_stdin:
        pw = sys.stdin.readline().rstrip("\r\n")
        if not pw:
            raise fail("标准输入没有密码 no password on standard input", EXIT_BAD_INPUT)
        return pw
    return str(
        typer.prompt("新密码 New password", hide_input=True, confirmation_prompt="再输一次 Repeat the new password")
    )


def _exists(conn: Connection, username: str) -> bool:
    from sqlalchemy import text

    return conn.execute(text("SELECT 1 FROM app_user WHERE username = :u"), {"u": username}).first() is not None


def _check_username(username: str) -> None:
    import re

    if not re.fullmatch(r"[A-Za-z0-9_.@-]{2,64}", username):
        raise fail(f"用户名无效 invalid user name {username!r}: 2–64 letters, digits or _ . @ -", EXIT_BAD_INPUT)


def _scope_name(conn: Connection, code: str) -> str:
    return scope_names(conn, [code]).get(code, code)


def scope_names(conn: Connection, codes: list[str]) -> dict[str, str]:
    """Names of hierarchy nodes by code ('' = 全市 whole city); grids of the active plan first."""
    from sqlalchemy import text

    names = {"": "全市 whole city"}
    codes = [c for c in set(codes) if c]
    if codes:
        rows = conn.execute(
            text(
                "SELECT code, name FROM street WHERE code = ANY(:c) "
                "UNION ALL SELECT code, name FROM community WHERE code = ANY(:c) "
                "UNION ALL SELECT * FROM (SELECT DISTINCT ON (g.code) g.code, coalesce(g.name, g.code) FROM grid g "
                "LEFT JOIN grid_plan p ON p.id = g.plan_id WHERE g.code = ANY(:c) "
                "ORDER BY g.code, (p.status = 'active') DESC NULLS LAST) AS gg"
            ),
            {"c": codes},
        ).all()
        names.update({r[0]: r[1] for r in rows})
    return names


# ---- commands -------------------------------------------------------------------------------------------


@app.command("add")
def add(
    username: str = typer.Argument(..., help="用户名 User name (2–64: letters, digits, _ . @ -)."),
    role: str = typer.Option(..., "--role", "-r", help=ROLE_HELP),
    scope: str = typer.Option("", "--scope", "-s", help=SCOPE_HELP),
    name: str = typer.Option(None, "--name", "-n", help="显示名 Display name (default: the user name)."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="从标准输入读一行密码 Read the password from stdin."
    ),
) -> None:
    """新建账号 Add an account with a role bound to one node of the hierarchy."""
    from gisgov.security import accounts, audit

    _check_username(username)
    r = parse_role(role)
    code = parse_scope(r, scope)
    password = read_password(password_stdin)
    try:
        with owner_transaction() as conn:
            accounts.add_user(conn, username, password, r, code, display_name=name)
            where = _scope_name(conn, code)
            audit.record(
                conn,
                "user_admin",
                actor=cli_actor(),
                object=_object(username),
                detail={"op": "add", "role": r.value, "scope": code},
            )
    except (InvalidInput, NotFound) as exc:
        record_failure("add", username, str(exc))
        raise fail(str(exc), EXIT_BAD_INPUT) from None
    out().print(
        f"[green]已创建 added[/] {username}: {r.value} ({ROLE_LABELS[r]}) @ {code or '—'} {where}", highlight=False
    )


@app.command("list")
def list_cmd() -> None:
    """账号列表 List accounts: role, scope, disabled, locked, last sign-in (no password hashes)."""
    from rich.markup import escape
    from rich.table import Table
    from sqlalchemy import text

    from gisgov.security import accounts, audit

    with owner_transaction() as conn:
        users = accounts.list_users(conn)
        names = scope_names(conn, [u["scope_code"] for u in users])
        locked = {
            r[0]
            for r in conn.execute(
                text("SELECT username FROM app_user WHERE locked_until IS NOT NULL AND locked_until > now()")
            )
        }
        audit.record(
            conn, "user_admin", actor=cli_actor(), object="app_user", detail={"op": "list", "count": len(users)}
        )
    table = Table(title=f"账号 Accounts ({len(users)})")
    for col in (
        "用户 user",
        "姓名 name",
        "角色 role",
        "范围 scope",
        "停用 disabled",
        "锁定 locked",
        "最近登录 last login",
    ):
        table.add_column(col, no_wrap=col.startswith(("用户", "停用", "锁定", "最近")))
    for u in users:
        role = Role(u["role"])
        scope = f"{u['scope_code']} {names.get(u['scope_code'], '')}".strip() if u["scope_code"] else names[""]
        table.add_row(
            escape(u["username"]) + (" [yellow](演示 demo)[/]" if u["is_demo"] else ""),
            escape(u["display_name"]),
            f"{role.value} {ROLE_LABELS[role]}",
            scope,
            "[red]是 yes[/]" if u["disabled"] else "否 no",
            f"[red]至 until {u['locked_until']:%Y-%m-%d %H:%M}[/]" if u["username"] in locked else "否 no",
            f"{u['last_login']:%Y-%m-%d %H:%M}" if u["last_login"] else "—",
        )
    out().print(table)


@app.command("disable")
def disable(
    username: str = typer.Argument(..., help="用户名 User name."),
    enable: bool = typer.Option(False, "--enable", help="重新启用 Enable the account again instead."),
) -> None:
    """停用账号 Disable an account (its sessions end at once); --enable turns it back on."""
    from gisgov.security import accounts, audit

    op = "enable" if enable else "disable"
    try:
        with owner_transaction() as conn:
            accounts.set_disabled(conn, username, disabled=not enable)
            audit.record(conn, "user_admin", actor=cli_actor(), object=_object(username), detail={"op": op})
    except NotFound as exc:
        record_failure(op, username, str(exc))
        raise fail(str(exc), EXIT_NOT_FOUND) from None
    out().print(f"[green]{'已启用 enabled' if enable else '已停用 disabled'}[/] {username}", highlight=False)


@app.command("passwd")
def passwd(
    username: str = typer.Argument(..., help="用户名 User name."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="从标准输入读一行密码 Read the password from stdin."
    ),
) -> None:
    """改密码 Set a new password (ends the account's sessions; a demo account stops being one)."""
    from gisgov.security import accounts, audit

    with owner_transaction() as conn:
        found = _exists(conn, username)
    if not found:
        record_failure("passwd", username, "no such user")
        raise fail(f"无此用户 no user {username}", EXIT_NOT_FOUND)
    password = read_password(password_stdin)
    try:
        with owner_transaction() as conn:
            accounts.set_password(conn, username, password)
            audit.record(conn, "user_admin", actor=cli_actor(), object=_object(username), detail={"op": "passwd"})
    except NotFound as exc:
        record_failure("passwd", username, str(exc))
        raise fail(str(exc), EXIT_NOT_FOUND) from None
    except InvalidInput as exc:
        record_failure("passwd", username, str(exc))
        raise fail(str(exc), EXIT_BAD_INPUT) from None
    out().print(f"[green]已修改密码 password changed[/] {username}", highlight=False)


@app.command("role")
def role_cmd(
    username: str = typer.Argument(..., help="用户名 User name."),
    role: str = typer.Option(..., "--role", "-r", help=ROLE_HELP),
    scope: str = typer.Option("", "--scope", "-s", help=SCOPE_HELP),
) -> None:
    """改角色 Change an account's role and scope (its sessions end at once)."""
    from sqlalchemy import text

    from gisgov.security import accounts, audit

    r = parse_role(role)
    code = parse_scope(r, scope)
    try:
        with owner_transaction() as conn:
            if not _exists(conn, username):
                raise NotFound(f"无此用户 no user {username}")
            before = conn.execute(
                text("SELECT role, scope_code FROM app_user WHERE username = :u"), {"u": username}
            ).one()
            try:
                accounts.set_role(conn, username, r, code)
            except NotFound as exc:  # the user exists: the scope code names no node
                raise InvalidInput(str(exc)) from None
            where = _scope_name(conn, code)
            audit.record(
                conn,
                "user_admin",
                actor=cli_actor(),
                object=_object(username),
                detail={
                    "op": "role",
                    "role": r.value,
                    "scope": code,
                    "was": {"role": before.role, "scope": before.scope_code},
                },
            )
    except NotFound as exc:
        record_failure("role", username, str(exc))
        raise fail(str(exc), EXIT_NOT_FOUND) from None
    except InvalidInput as exc:
        record_failure("role", username, str(exc))
        raise fail(str(exc), EXIT_BAD_INPUT) from None
    out().print(
        f"[green]已修改角色 role changed[/] {username}: {r.value} ({ROLE_LABELS[r]}) @ {code or '—'} {where}",
        highlight=False,
    )


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="user")
