"""Request dependencies: who is asking (:func:`current_principal`), and THE place where a request
gets its database work (:data:`DB`): one connection, one transaction, committed on success and rolled
back on error, with the caller's hierarchy scope set transaction-locally for row-level security::

    SELECT set_config('gisgov.scope', :scope, true)

Connections are taken from the pool in threads of their own (``acquire`` limiter) and returned in
others (``finish`` limiter), never in the route threadpool: a request waiting for a connection can
never keep a finished request from giving its connection back (the sync-dependency deadlock, FastAPI
issue #3205). Waiting longer than the pool timeout answers 503.

Sign-in: a bearer token (``Authorization: Bearer …``, API clients) or the session cookie (pages).
Cookie-authenticated writes (POST/PUT/PATCH/DELETE) need a same-origin ``Origin`` (or ``Referer``)
and the session's CSRF token in ``X-CSRF-Token``; bearer requests carry no ambient credential and
need neither.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import anyio
from anyio import to_thread
from fastapi import Depends, Request
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from gisgov.api import budgets
from gisgov.db.engine import make_engine
from gisgov.errors import Forbidden, NotAuthenticated, NotFound
from gisgov.security import accounts
from gisgov.security import audit as _audit
from gisgov.security.roles import Perm, Principal

SESSION_COOKIE = "gisgov_session"
CSRF_COOKIE = "gisgov_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SIDE_LOCK = threading.Lock()
_SET_SCOPE = text("SELECT set_config('gisgov.scope', :scope, true)")
_SET_SCOPE_AND_TIMEOUT = text(
    "SELECT set_config('gisgov.scope', :scope, true), set_config('statement_timeout', :timeout, true)"
)


def _limiters(request: Request) -> tuple[anyio.CapacityLimiter, anyio.CapacityLimiter]:
    st = request.app.state
    if getattr(st, "acquire_limiter", None) is None:
        st.acquire_limiter = anyio.CapacityLimiter(64)
        st.finish_limiter = anyio.CapacityLimiter(16)
    return st.acquire_limiter, st.finish_limiter


def client_addr(request: Request) -> str | None:
    return request.client.host if request.client else None


def allowed_origins(settings) -> set[str]:
    origin = settings.origin
    out = {origin}
    parts = urlsplit(origin)
    if parts.hostname in ("127.0.0.1", "localhost"):
        for h in ("127.0.0.1", "localhost"):
            out.add(f"{parts.scheme}://{h}" + (f":{parts.port}" if parts.port else ""))
    return out


def _origin_of(request: Request) -> str | None:
    origin = request.headers.get("origin")
    if origin and origin != "null":
        return origin.rstrip("/")
    ref = request.headers.get("referer")
    if ref:
        p = urlsplit(ref)
        return f"{p.scheme}://{p.netloc}"
    return None


def check_same_origin(request: Request) -> None:
    origin = _origin_of(request)
    if origin is not None and origin not in allowed_origins(request.app.state.settings):
        raise Forbidden(f"跨站请求被拒绝 cross-site request refused (origin {origin})")


def _check_csrf(request: Request, p: Principal) -> None:
    if request.method in SAFE_METHODS or p.auth != "cookie":
        return
    if _origin_of(request) is None:
        raise Forbidden("跨站请求被拒绝 cross-site or origin-less write refused (CSRF)")
    check_same_origin(request)
    sent = request.headers.get(CSRF_HEADER, "")
    if not p.csrf or not hmac.compare_digest(sent, p.csrf):
        raise Forbidden("缺少或错误的 CSRF 令牌 missing or wrong X-CSRF-Token")


def _credentials(request: Request) -> tuple[str, str] | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip(), "bearer"
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return cookie, "cookie"
    return None


def _resolve(engine: Engine, settings, token: str, kind: str) -> Principal | None:
    with engine.begin() as conn:
        return accounts.resolve(conn, settings, token, kind)


async def optional_principal(request: Request) -> Principal | None:
    """The signed-in principal, or None (no credentials, or an expired session)."""
    if hasattr(request.state, "principal"):
        return request.state.principal
    cred = _credentials(request)
    p = None
    if cred is not None and len(cred[0]) < 200:
        acquire, _ = _limiters(request)
        p = await to_thread.run_sync(_resolve, side_engine(request), request.app.state.settings, *cred, limiter=acquire)
    request.state.principal = p
    return p


async def current_principal(request: Request) -> Principal:
    """The signed-in principal; 401 (pages: redirect to /login) without one; CSRF checked on writes."""
    p = await optional_principal(request)
    if p is None:
        raise NotAuthenticated(
            "请先登录 sign in first"
            if _credentials(request) is None
            else "会话已过期，请重新登录 session expired, sign in again"
        )
    _check_csrf(request, p)
    return p


def require(*perms: Perm):
    """Dependency: the principal must hold every permission in ``perms`` (403 otherwise)."""

    async def dep(p: Principal = Depends(current_principal)) -> Principal:
        missing = [x.value for x in perms if not p.can(x)]
        if missing:
            raise Forbidden(f"无权限 not allowed for role {p.role.value} ({p.label}): needs {', '.join(missing)}")
        return p

    dep.__name__ = "require_" + "_".join(p.value for p in perms)
    return dep


def _open(engine: Engine, scope: str, timeout_ms: int | None = None) -> Connection:
    conn = engine.connect()
    try:
        conn.begin()
        if timeout_ms is None:
            conn.execute(_SET_SCOPE, {"scope": scope})
        else:
            conn.execute(_SET_SCOPE_AND_TIMEOUT, {"scope": scope, "timeout": str(int(timeout_ms))})
    except BaseException:
        conn.close()
        raise
    return conn


def _finish(conn: Connection, commit: bool, handle: budgets.Cancellable | None = None) -> None:
    if handle is not None:
        handle.close()  # disarm a client-gone cancel before the connection can serve another request
    try:
        if commit:
            conn.commit()
        else:
            conn.rollback()
    finally:
        conn.close()


@asynccontextmanager
async def transaction(request: Request, scope: str) -> AsyncIterator[Connection]:
    """A pooled connection in a transaction with ``gisgov.scope`` set; commit on success.

    The transaction's ``statement_timeout`` is the request class's (:mod:`gisgov.api.budgets`:
    analyses ``GISGOV_ANALYSIS_TIMEOUT_S``, others ``GISGOV_STATEMENT_TIMEOUT_S``); its connection is
    registered so that a statement still running when the client disconnects is cancelled."""
    acquire, finish = _limiters(request)
    slots = _slots(request)
    await _take_slot(request, slots)
    try:
        conn = await to_thread.run_sync(
            _open, request.app.state.engine, scope, budgets.statement_timeout_ms(request), limiter=acquire
        )
    except BaseException:
        slots.release()
        raise
    handle = None
    try:
        handle = budgets.track(request, conn.connection.dbapi_connection)
        yield conn
    except BaseException:
        # Shielded: a cancelled request (client gone) must still give its connection back to the pool;
        # unshielded, to_thread.run_sync would raise the cancellation before running _finish.
        with anyio.CancelScope(shield=True):
            try:
                await to_thread.run_sync(_finish, conn, False, handle, limiter=finish)
                if handle is not None:
                    budgets.untrack(request, handle)
            finally:
                slots.release()
        raise
    with anyio.CancelScope(shield=True):
        try:
            await to_thread.run_sync(_finish, conn, True, handle, limiter=finish)
            budgets.untrack(request, handle)
        finally:
            slots.release()


def _slots(request: Request) -> anyio.Semaphore:
    """One slot per connection the main pool can give (size + overflow). A request waits for a slot
    here, in the event loop and in arrival order (FIFO), before it takes a worker thread: the pool itself
    then never makes a thread wait, and a queue of hundreds of requests costs no threads."""
    st = request.app.state
    sem = getattr(st, "connection_slots", None)
    if sem is None:
        pool = st.engine.pool
        size = getattr(pool, "size", None)
        n = size() + max(int(getattr(pool, "_max_overflow", 0)), 0) if callable(size) else 1000
        sem = st.connection_slots = anyio.Semaphore(max(n, 1))
    return sem


async def _take_slot(request: Request, slots: anyio.Semaphore) -> None:
    """Wait for a connection slot at most ``GISGOV_POOL_TIMEOUT_S``; longer answers 503 DatabaseBusy."""
    settings = getattr(request.app.state, "settings", None)
    wait = float(getattr(settings, "pool_timeout_s", 30.0))
    try:
        with anyio.fail_after(wait):
            await slots.acquire()
    except TimeoutError:
        raise PoolTimeout(f"no database connection free within {wait:g} s") from None


async def db(request: Request, p: Principal = Depends(current_principal)) -> AsyncIterator[Connection]:
    """The request's connection in a transaction, scoped to the principal (row-level security)."""
    async with transaction(request, p.db_scope) as conn:
        yield conn


async def db_unscoped(request: Request) -> AsyncIterator[Connection]:
    """A connection with NO scope (personal-data tables show no rows): for public routes such as /health."""
    async with transaction(request, "") as conn:
        yield conn


# Use as ``conn: Connection = DB``: the transaction ends (commit or rollback) when the route returns,
# before the response is sent, so a failed commit is never reported as success.
DB = Depends(db, scope="function")
DB_UNSCOPED = Depends(db_unscoped, scope="function")


def in_scope_or_404(p: Principal, code: str | None, what: str = "对象 object") -> None:
    """Objects outside the caller's area answer 404 (not 403), so codes cannot be probed."""
    if not p.covers(code):
        raise NotFound(f"未找到 {what} not found: {code}")


def system_scope(conn: Connection) -> None:
    """Widen THIS transaction to the whole city, for computations whose output is aggregate only
    (e.g. loading per-building counts for coverage). Callers filter what they return by the
    principal's scope; never return rows of personal-data tables read after this call."""
    conn.execute(_SET_SCOPE, {"scope": "*"})


def side_engine(request: Request) -> Engine:
    """A small pool of its own for the short statements around a request: session lookups and audit
    rows. A request then waits for the main pool only once (for its own transaction), and a request
    that holds its connection never waits for a second one from the same pool (which, under load,
    could be held by requests doing the same)."""
    st = request.app.state
    eng = getattr(st, "side_engine", None)
    if eng is None:
        with _SIDE_LOCK:
            eng = getattr(st, "side_engine", None)
            if eng is None:
                eng = st.side_engine = make_engine(st.engine.url, pool_size=2, max_overflow=4, pool_timeout=30)
    return eng


def audit(
    request: Request,
    action: str,
    p: Principal | None,
    *,
    object: str | None = None,
    result: str = "ok",
    detail: dict | None = None,
    conn: Connection | None = None,
) -> None:
    """Append an audit row for this request (call from sync code).

    A successful change passes the request's ``conn``: its row then commits with the change, or not at
    all. Refusals and failures (whose transaction rolls back) and reads leave ``conn`` out: the row is
    committed at once in its own transaction, through the side pool."""
    _audit.record(
        conn if conn is not None else side_engine(request),
        action,
        actor=p,
        object=object,
        result=result,
        client=client_addr(request),
        detail=detail,
    )
