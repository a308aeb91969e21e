"""Accounts (``app_user``) and sessions (``auth_session``): sign-in with lock-out, opaque tokens.

Tokens are 256-bit random strings; only their SHA-256 is stored, so a database dump yields no
usable session. A cookie session carries a CSRF token; it ends after ``session_idle_minutes``
without use or ``session_hours`` after sign-in. Bearer tokens (API clients) last ``token_hours``.
After ``login_max_failures`` failed sign-ins an account is locked for ``lockout_minutes``, doubling
with every further failure (at most 24 h). Unknown user, wrong password, disabled and locked
accounts all get the same message, and take the same time (one argon2 verification).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, text

from gisgov.config import Settings
from gisgov.errors import GisgovError, InvalidInput, NotFound
from gisgov.security.passwords import hash_password, needs_rehash, password_problem, verify_password
from gisgov.security.roles import Principal, Role, check_scope

LOGIN_FAILED = "用户名或密码错误，或账号已锁定 wrong user name or password, or account locked"


class SignInFailed(GisgovError):
    status_code = 401

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Issued:
    token: str
    csrf: str | None
    principal: Principal
    max_age_s: int


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


# ---- accounts -------------------------------------------------------------------------------------------


def _check_node(conn: Connection, scope_code: str) -> None:
    if not scope_code:
        return
    level = {9: ("street", "code"), 12: ("community", "code"), 15: ("grid", "code")}[len(scope_code)]
    found = conn.execute(text(f"SELECT 1 FROM {level[0]} WHERE {level[1]} = :c LIMIT 1"), {"c": scope_code}).first()
    if found is None:
        raise NotFound(
            f"未知的{ {'street': '街道', 'community': '社区', 'grid': '网格'}[level[0]] }代码 unknown {level[0]} code {scope_code}"
        )


def add_user(
    conn: Connection,
    username: str,
    password: str,
    role: Role | str,
    scope_code: str = "",
    *,
    display_name: str | None = None,
    is_demo: bool = False,
) -> int:
    role = Role(role)
    try:
        scope_code = check_scope(role, scope_code)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    problem = password_problem(password, username=username)
    if problem:
        raise InvalidInput(problem)
    _check_node(conn, scope_code)
    if conn.execute(text("SELECT 1 FROM app_user WHERE username = :u"), {"u": username}).first():
        raise InvalidInput(f"用户名已存在 user {username} already exists")
    return int(
        conn.execute(
            text(
                "INSERT INTO app_user (username, display_name, role, scope_code, password_hash, is_demo) "
                "VALUES (:u, :d, :r, :s, :h, :demo) RETURNING id"
            ),
            dict(
                u=username,
                d=display_name or username,
                r=role.value,
                s=scope_code,
                h=hash_password(password),
                demo=is_demo,
            ),
        ).scalar_one()
    )


def list_users(conn: Connection) -> list[dict[str, Any]]:
    rows = (
        conn.execute(
            text(
                "SELECT id, username, display_name, role, scope_code, disabled, is_demo, failed_count, locked_until, "
                "created, last_login FROM app_user ORDER BY role, scope_code, username"
            )
        )
        .mappings()
        .all()
    )
    return [dict(r) for r in rows]


def _user_id(conn: Connection, username: str) -> int:
    uid = conn.execute(text("SELECT id FROM app_user WHERE username = :u"), {"u": username}).scalar()
    if uid is None:
        raise NotFound(f"无此用户 no user {username}")
    return int(uid)


def set_disabled(conn: Connection, username: str, disabled: bool = True) -> None:
    uid = _user_id(conn, username)
    conn.execute(
        text("UPDATE app_user SET disabled = :d, failed_count = 0, locked_until = NULL WHERE id = :i"),
        {"d": disabled, "i": uid},
    )
    if disabled:
        conn.execute(text("DELETE FROM auth_session WHERE user_id = :i"), {"i": uid})


def set_password(conn: Connection, username: str, password: str) -> None:
    problem = password_problem(password, username=username)
    if problem:
        raise InvalidInput(problem)
    uid = _user_id(conn, username)
    conn.execute(
        text(
            "UPDATE app_user SET password_hash = :h, password_changed = now(), is_demo = false, "
            "failed_count = 0, locked_until = NULL WHERE id = :i"
        ),
        {"h": hash_password(password), "i": uid},
    )
    conn.execute(text("DELETE FROM auth_session WHERE user_id = :i"), {"i": uid})


def set_role(conn: Connection, username: str, role: Role | str, scope_code: str) -> None:
    role = Role(role)
    try:
        scope_code = check_scope(role, scope_code)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    _check_node(conn, scope_code)
    uid = _user_id(conn, username)
    conn.execute(
        text("UPDATE app_user SET role = :r, scope_code = :s WHERE id = :i"),
        {"r": role.value, "s": scope_code, "i": uid},
    )
    conn.execute(text("DELETE FROM auth_session WHERE user_id = :i"), {"i": uid})


def demo_accounts_enabled(conn: Connection) -> list[str]:
    return list(
        conn.execute(text("SELECT username FROM app_user WHERE is_demo AND NOT disabled ORDER BY username")).scalars()
    )


# ---- sign-in and sessions ------------------------------------------------------------------------------


def sign_in(
    conn: Connection,
    settings: Settings,
    username: str,
    password: str,
    *,
    kind: str = "cookie",
    client: str | None = None,
) -> Issued:
    """Check the password (with lock-out) and open a session. Raises :class:`SignInFailed`.
    The caller commits ``conn`` in both cases (the failure counter must persist)."""
    # No row lock while argon2 runs (~50 ms): the counter update below is a single atomic statement.
    row = (
        conn.execute(
            text(
                "SELECT id, username, display_name, role, scope_code, password_hash, disabled, "
                "locked_until IS NOT NULL AND locked_until > now() AS locked FROM app_user WHERE username = :u"
            ),
            {"u": username},
        )
        .mappings()
        .first()
    )
    ok = verify_password(row["password_hash"] if row else None, password)
    if row is None or row["disabled"] or row["locked"] or not ok:
        if row is not None and not row["disabled"] and not row["locked"]:
            conn.execute(
                text(
                    "UPDATE app_user SET failed_count = failed_count + 1, locked_until = CASE "
                    "WHEN failed_count + 1 >= :max THEN now() + make_interval(secs => "
                    "least(86400, :lock * 60 * power(2, failed_count + 1 - :max))) ELSE NULL END WHERE id = :i"
                ),
                {"max": settings.login_max_failures, "lock": settings.lockout_minutes, "i": row["id"]},
            )
        reason = (
            "unknown_user"
            if row is None
            else "disabled"
            if row["disabled"]
            else "locked"
            if row["locked"]
            else "wrong_password"
        )
        raise SignInFailed(LOGIN_FAILED, reason)
    if needs_rehash(row["password_hash"]):
        conn.execute(
            text("UPDATE app_user SET password_hash = :h WHERE id = :i"), {"h": hash_password(password), "i": row["id"]}
        )
    conn.execute(
        text("UPDATE app_user SET failed_count = 0, locked_until = NULL, last_login = now() WHERE id = :i"),
        {"i": row["id"]},
    )
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24) if kind == "cookie" else None
    lifetime = timedelta(hours=settings.session_hours if kind == "cookie" else settings.token_hours)
    conn.execute(text("DELETE FROM auth_session WHERE expires < now()"))
    conn.execute(
        text(
            "INSERT INTO auth_session (token_hash, user_id, kind, csrf, expires, client_addr) "
            "VALUES (:t, :u, :k, :c, now() + :life, :a)"
        ),
        dict(t=token_digest(token), u=row["id"], k=kind, c=csrf, life=lifetime, a=client),
    )
    principal = Principal(
        row["id"],
        row["username"],
        row["display_name"],
        Role(row["role"]),
        row["scope_code"],
        auth=kind,
        csrf=csrf,
        session_key=token_digest(token),
    )
    return Issued(token, csrf, principal, int(lifetime.total_seconds()))


def resolve(conn: Connection, settings: Settings, token: str, kind: str) -> Principal | None:
    """The principal of a live session token (touching its idle clock), or None."""
    key = token_digest(token)
    idle_s = settings.session_idle_minutes * 60
    row = (
        conn.execute(
            text(
                "SELECT u.id, u.username, u.display_name, u.role, u.scope_code, s.csrf, "
                "s.last_seen < now() - make_interval(secs => :touch) AS stale "
                "FROM auth_session s JOIN app_user u ON u.id = s.user_id "
                "WHERE s.token_hash = :t AND s.kind = :k AND NOT u.disabled AND s.expires > now() "
                "AND (s.kind = 'bearer' OR s.last_seen > now() - make_interval(secs => :idle))"
            ),
            {"t": key, "k": kind, "idle": idle_s, "touch": min(60.0, idle_s / 4)},
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    if row["stale"]:  # touch the idle clock at most once a minute, not on every request
        conn.execute(text("UPDATE auth_session SET last_seen = now() WHERE token_hash = :t"), {"t": key})
    return Principal(
        row["id"],
        row["username"],
        row["display_name"],
        Role(row["role"]),
        row["scope_code"],
        auth=kind,
        csrf=row["csrf"],
        session_key=key,
    )


def sign_out(conn: Connection, principal: Principal) -> None:
    if principal.session_key:
        conn.execute(text("DELETE FROM auth_session WHERE token_hash = :t"), {"t": principal.session_key})
