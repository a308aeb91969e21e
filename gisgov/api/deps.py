"""Request dependencies: who is asking (:func:`current_principal`), and THE place where a request
gets its database work (:data:`DB`): one connection, one transaction, committed on success and rolled
back on error, with the caller's hierarchy scope set transaction-locally for row-level security::

    SELECT set_config('gisgov.scope', :scope, true)

Connections are taken from the pool in threads of their own (``acquire`` limiter) and returned in
others (``finish`` limiter), never in the route threadpool: a request waiting for a connection can
never keep a finished request from giving its connection back (the sync-dependency deadlock, FastAPI
issue #3205). Waiting longer than the pool timeout answers 503.

Read replica (``GISGOV_READ_DATABASE_URL``, optional): GET/HEAD requests of read-only routes take their
transaction from the replica's pool instead, as a ``READ ONLY`` transaction; writes, GET routes that write
and read-your-writes stay on the primary (:func:`primary_reason` holds the rules). A replica that cannot be
reached sends reads back to the primary for :data:`REPLICA_RETRY_S` seconds (logged), never an error.
Without a read URL nothing of this runs.

Sign-in: a bearer token (``Authorization: Bearer …``, API clients) or the session cookie (pages).
Cookie-authenticated writes (POST/PUT/PATCH/DELETE) need a same-origin ``Origin`` (or ``Referer``)
and the session's CSRF token in ``X-CSRF-Token``; bearer requests carry no ambient credential and
need neither.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import anyio
from anyio import to_thread
from fastapi import Depends, Request
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from gisgov.api import budgets
from gisgov.db.engine import make_engine
from gisgov.db.replica import LagGate
from gisgov.errors import DatabaseUnavailable, Forbidden, NotAuthenticated, NotFound
from gisgov.security import accounts
from gisgov.security import audit as _audit
from gisgov.security.roles import Perm, Principal

SESSION_COOKIE = "gisgov_session"
CSRF_COOKIE = "gisgov_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SIDE_LOCK = threading.Lock()
# JIT off in every request transaction: the row-level-security subplans make the planner's cost estimates
# huge (millions for a few thousand rows), so PostgreSQL JIT-compiled ordinary requests, ~2 s of LLVM work
# for a 0.2 s query (the special-group summary measured 2.2 s, 1.9 s of it JIT). No request gains from it.
_SET_SCOPE = text("SELECT set_config('gisgov.scope', :scope, true), set_config('jit', 'off', true)")
_SET_SCOPE_AND_TIMEOUT = text(
    "SELECT set_config('gisgov.scope', :scope, true), set_config('statement_timeout', :timeout, true), "
    "set_config('jit', 'off', true)"
)
# A read transaction: READ ONLY first (allowed at any point of a transaction, and on a standby), then the scope
_SET_READ_ONLY_SCOPE_AND_TIMEOUT = text(
    "SELECT set_config('transaction_read_only', 'on', true), set_config('gisgov.scope', :scope, true), "
    "set_config('statement_timeout', :timeout, true), set_config('jit', 'off', true)"
)
_log = logging.getLogger(__name__)


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


def _open(engine: Engine, scope: str, timeout_ms: int | None = None, read_only: bool = False) -> Connection:
    conn = engine.connect()
    try:
        conn.begin()
        if read_only:
            timeout = (
                str(int(timeout_ms))
                if timeout_ms is not None
                else str(conn.exec_driver_sql("SHOW statement_timeout").scalar())
            )
            conn.execute(_SET_READ_ONLY_SCOPE_AND_TIMEOUT, {"scope": scope, "timeout": timeout})
        elif timeout_ms is None:
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
    timeout_ms = budgets.statement_timeout_ms(request)
    replica = replica_for(request)
    conn: Connection | None = None
    on_replica = False
    if replica is not None:
        slots = replica.slots()
        await _take_slot(request, slots)
        try:
            conn = await to_thread.run_sync(_open_on_replica, replica, scope, timeout_ms, limiter=acquire)
        except BaseException:
            slots.release()
            raise
        if conn is None:  # unreachable: this read runs on the primary (still read-only)
            slots.release()
        else:
            on_replica = True
    if conn is None:
        slots = _slots(request)
        await _take_slot(request, slots)
        try:
            conn = await to_thread.run_sync(
                _open, request.app.state.engine, scope, timeout_ms, replica is not None, limiter=acquire
            )
        except BaseException:
            slots.release()
            raise
    handle = None
    try:
        handle = budgets.track(request, conn.connection.dbapi_connection)
        yield conn
    except BaseException as error:
        # Shielded: a cancelled request (client gone) must still give its connection back to the pool;
        # unshielded, to_thread.run_sync would raise the cancellation before running _finish.
        with anyio.CancelScope(shield=True):
            try:
                await to_thread.run_sync(_finish, conn, False, handle, limiter=finish)
                if handle is not None:
                    budgets.untrack(request, handle)
            finally:
                slots.release()
        if on_replica and replica is not None and isinstance(error, (OperationalError, InterfaceError)):
            replica.failed(error)  # lost mid-request (answered 503 as on the primary): next reads go there
        violation = _read_only_violation(request, error)
        if violation is not None:
            raise violation from error
        raise
    with anyio.CancelScope(shield=True):
        try:
            await to_thread.run_sync(_finish, conn, True, handle, limiter=finish)
            budgets.untrack(request, handle)
        finally:
            slots.release()
    # a transaction opened for work outside an HTTP request (no method) counts as a write
    if getattr(request, "method", None) not in SAFE_METHODS:
        _pin_after_write(request)


# ---- read replica ---------------------------------------------------------------------------------------

#: Seconds a signed-in account's reads stay on the primary after it wrote (read-your-writes: the replica may
#: lag a few milliseconds behind, and a page reloads its list right after a save). Per worker process.
READ_YOUR_WRITES_S = 5.0
#: Seconds reads stay on the primary after the replica could not be reached, before it is tried again.
REPLICA_RETRY_S = 5.0

#: GET/HEAD routes (route path templates) whose transaction runs on the primary, and why. Every other GET of
#: a route using :data:`DB` / :data:`DB_UNSCOPED` runs on the replica when one is configured. A route that
#: writes in a GET and is missing here fails its read-only transaction once (503 ReplicaWrite, logged as an
#: error naming the route), and runs on the primary from then on in that process: add it here.
PRIMARY_READS: dict[str, str] = {
    "/health": "reports the primary itself (the replica beside it)",
    "/api/import/{job_id}": "reaps orphaned import jobs (UPDATE import_job); read-your-writes of a new job",
    "/api/export": "large exports start a background job (INSERT), every export is audited on the request",
    "/api/export/jobs/{job_id}": "read-your-writes of a job just started",
    "/api/export/jobs/{job_id}/file": "read-your-writes of a job just finished",
    "/api/jobs/{job_id}": "read-your-writes of an analysis job just started",
    "/api/grids/sessions/{sid}": "editor session: touches last use (UPDATE), read-your-writes of the edits",
    "/api/grids/sessions/{sid}/layers": "editor session: touches last use (UPDATE), read-your-writes",
    "/grids/editor": "the editor page opens on the session it just wrote",
    "/api/audit": "the read of the audit log is itself audited on the request's connection",
    "/api/users": "the read of the accounts is audited on the request's connection",
    "/api/staff": "the read of staff contacts is audited on the request's connection",
    "/api/special/beyond": "personal read audited on the request's connection",
    "/api/special/visits/overdue": "personal read audited on the request's connection",
}
#: Routes that write only for personal layers (``read_personal`` audit row on the request's connection):
#: ``/api/layers/{level}`` and the ``/api/<layer>/{code}`` detail routes.
_LAYER_LIST = "/api/layers/{level}"


class ReplicaWrite(DatabaseUnavailable):
    """A read routed to the replica tried to write (SQLSTATE 25006). The route now uses the primary."""


class ReadReplica:
    """The read replica's engine and what the app knows about it: when it last failed (reads go to the
    primary for :data:`REPLICA_RETRY_S` after a failure), whether its login was checked
    (:func:`gisgov.db.approle.check_app_login`: done at start, or on first contact when the replica was
    down then), routes found writing at run time, and accounts that just wrote (read-your-writes)."""

    def __init__(self, engine: Engine, *, checked: bool = False):
        self.engine = engine
        self.checked = checked
        self.disabled: str | None = None  # why the replica is never used (an unsafe login)
        self.down_until = 0.0
        self.down_reason: str | None = None
        self.learned: set[str] = set()
        self.pins: dict[int, float] = {}
        self._lock = threading.Lock()
        self._slots: anyio.Semaphore | None = None
        #: reads go to the replica only while its measured lag is within the limits (GISGOV_READ_MAX_LAG_S)
        self.lag_gate: LagGate | None = None

    def slots(self) -> anyio.Semaphore:
        """One slot per connection the replica's pool can give (as :func:`_slots` for the primary)."""
        if self._slots is None:
            pool = self.engine.pool
            size = getattr(pool, "size", None)
            n = size() + max(int(getattr(pool, "_max_overflow", 0)), 0) if callable(size) else 1000
            self._slots = anyio.Semaphore(max(n, 1))
        return self._slots

    def usable(self) -> bool:
        return self.disabled is None and time.monotonic() >= self.down_until

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            first = self.down_reason is None
            self.down_until = time.monotonic() + REPLICA_RETRY_S
            self.down_reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        if first:
            _log.warning(
                "只读副本不可用，读请求改由主库处理 read replica unreachable, reads go to the primary "
                "(retried every %g s): %s",
                REPLICA_RETRY_S,
                self.down_reason,
            )

    def answered(self) -> None:
        if self.down_reason is not None:
            with self._lock:
                was, self.down_reason = self.down_reason, None
            if was is not None:
                _log.warning("只读副本已恢复 read replica answers again; reads go to it")

    def check(self) -> None:
        """Refuse (for good: reads stay on the primary) a replica login that could bypass row-level security."""
        from gisgov.db.approle import UnsafeAppRole, check_app_login

        try:
            check_app_login(self.engine)
        except UnsafeAppRole as exc:
            self.disabled = str(exc)
            _log.error("只读副本登录不安全，不使用 read replica NOT used: %s", exc)
            raise
        self.checked = True

    def pin(self, user_id: int) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self.pins) > 10_000:
                self.pins = {u: t for u, t in self.pins.items() if t > now}
            self.pins[user_id] = now + READ_YOUR_WRITES_S

    def pinned(self, user_id: int) -> bool:
        until = self.pins.get(user_id)
        return until is not None and until > time.monotonic()


def primary_reason(request: Request) -> str | None:
    """Why this request's transaction runs on the primary although a read replica is configured; None =
    it runs on the replica. In order: every method but GET/HEAD; the routes of :data:`PRIMARY_READS`; the
    personal layers' list and detail routes (audited reads); routes found writing at run time; an account
    that wrote in the last :data:`READ_YOUR_WRITES_S` seconds."""
    if request.method not in ("GET", "HEAD"):
        return "writes"
    route = getattr(request.scope.get("route"), "path", None)
    if route is None:
        return "unknown route"
    why = PRIMARY_READS.get(route)
    if why is not None:
        return why
    if _personal_layer(request, route):
        return "personal layer read (audited on the request's connection)"
    replica: ReadReplica | None = getattr(request.app.state, "read_replica", None)
    if replica is not None:
        if route in replica.learned:
            return "found writing at run time"
        p = getattr(request.state, "principal", None)
        if p is not None and replica.pinned(p.user_id):
            return "read-your-writes after this account's write"
        gate = replica.lag_gate
        if gate is not None and not gate.allows_reads():  # never waits on the database (measured in a thread)
            return gate.reason or "replica lag over the limit"
    return None


def _personal_layer(request: Request, route: str) -> bool:
    from gisgov.layers import catalog

    if route == _LAYER_LIST:
        name = str(request.path_params.get("level", ""))
    elif route.startswith("/api/") and route.endswith("/{code}") and route.count("/") == 3:
        name = route.split("/")[2]
    else:
        return False
    try:
        cat = catalog(request.app.state.settings.layers_dir)
        return name not in cat or cat.get(name).personal  # unknown (answers 404 anyway): primary
    except Exception:
        return True


def replica_for(request: Request) -> ReadReplica | None:
    """The read replica this request's transaction should use, or None (no replica configured, or
    :func:`primary_reason` says primary)."""
    replica: ReadReplica | None = getattr(request.app.state, "read_replica", None)
    if replica is None or primary_reason(request) is not None:
        return None
    return replica


def _open_on_replica(replica: ReadReplica, scope: str, timeout_ms: int | None) -> Connection | None:
    """A read-only scoped transaction on the replica, or None when it cannot be reached (reads then go to
    the primary; logged once per outage)."""
    if not replica.usable():
        return None
    try:
        if not replica.checked:
            replica.check()
        conn = _open(replica.engine, scope, timeout_ms, read_only=True)
    except (OperationalError, InterfaceError, PoolTimeout, OSError) as exc:
        replica.failed(exc)
        return None
    except Exception:
        if replica.disabled is None:
            _log.exception("只读副本出错 read replica failed; this read goes to the primary")
        return None
    replica.answered()
    return conn


def _read_only_violation(request: Request, error: BaseException) -> ReplicaWrite | None:
    """The error a read-routed GET answers when its route wrote (SQLSTATE 25006 in a read-only transaction,
    on the replica or on the primary while the replica is down); None for any other error."""
    replica: ReadReplica | None = getattr(request.app.state, "read_replica", None)
    if replica is None or request.method not in ("GET", "HEAD"):
        return None
    exc: BaseException | None = error
    for _ in range(8):
        if exc is None:
            return None
        if (
            getattr(exc, "sqlstate", None) == "25006"
            or getattr(getattr(exc, "orig", None), "sqlstate", None) == "25006"
        ):
            break
        exc = exc.__cause__ or exc.__context__
    else:
        return None
    if exc is None:
        return None
    route = getattr(request.scope.get("route"), "path", None) or request.url.path
    replica.learned.add(route)
    _log.error(
        "GET %s wrote in a read-only transaction: it runs on the primary from now on; add it to "
        "gisgov.api.deps.PRIMARY_READS",
        route,
    )
    return ReplicaWrite(
        f"此只读请求尝试写入，已改由主库处理，请重试 this read request tried to write: the route {route} now runs "
        "on the primary, retry"
    )


def _pin_after_write(request: Request) -> None:
    replica: ReadReplica | None = getattr(request.app.state, "read_replica", None)
    p = getattr(request.state, "principal", None)
    if replica is not None and p is not None:
        replica.pin(p.user_id)


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


#: connections of the side pool (session lookups, audit rows) per worker
SIDE_POOL = 6


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
                # six connections kept open (no overflow): an overflow connection is closed when given back,
                # so under load each burst of requests opened new ones (a PostgreSQL backend started and a
                # SCRAM sign-in each time), which was most of the database's work in the load test
                eng = st.side_engine = make_engine(st.engine.url, pool_size=SIDE_POOL, max_overflow=0, pool_timeout=30)
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
