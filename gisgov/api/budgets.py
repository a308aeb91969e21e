"""Request budgets: what one request may cost the server.

One pure ASGI middleware (:class:`RequestBudget`, added by :func:`install`) and the helpers the
request transaction uses (:func:`statement_timeout_ms`, :func:`track`):

- **Body size.** A request body larger than ``GISGOV_MAX_BODY_MB`` (``POST /api/import``:
  ``GISGOV_INGEST_MAX_UPLOAD_MB``) answers 413. A declared ``Content-Length`` above the limit is
  refused before a byte is read; otherwise the bytes are counted as the app reads them and reading
  stops at the limit (an upload is spooled to disk while it is read, so this bounds the disk too).
- **JSON shape.** A JSON body is parsed once here: ``NaN`` / ``Infinity`` / numbers that overflow to
  infinity, more GeoJSON coordinate positions (in every ``"coordinates"`` array) than
  ``GISGOV_MAX_VERTICES``, or a list / object with more members than ``GISGOV_MAX_LIST_ITEMS``
  (coordinates excepted: they count as vertices) answer 422 naming the JSON path. Vertices are
  counted on the raw bytes first, so an oversized geometry is refused without parsing it. The original
  bytes are then handed on to the app unchanged. Bodies that are not valid JSON are left to the app.
- **statement_timeout per request class.** Every request transaction sets PostgreSQL's
  ``statement_timeout`` (transaction-local): ``GISGOV_ANALYSIS_TIMEOUT_S`` for the analysis routes
  (:data:`ANALYSIS_ROUTES`), ``GISGOV_STATEMENT_TIMEOUT_S`` for every other. A statement cancelled
  by it answers 503 ``StatementTimeout``.
- **Client gone.** When the client disconnects while the request's transaction is open, its running
  statement is cancelled (libpq cancel request on the request's own connection), and a transaction
  that opens after the client left is refused; the connection goes back to the pool as usual.

Error bodies have the app's shape: ``{"detail": "<中文 English>", "error": "<ErrorClass>"}``.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from typing import Any

import anyio
from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

from gisgov.api.errors import error_content, error_response
from gisgov.api.json_only import is_json
from gisgov.errors import GisgovError

log = logging.getLogger(__name__)

# Routes whose statements may run long: (method, route path template). Everything else is "ordinary".
ANALYSIS_ROUTES = frozenset(
    {
        ("POST", "/api/grids/propose"),
        ("POST", "/api/grids/repair"),
        ("POST", "/api/grids/feasibility"),
        ("POST", "/api/coverage/compute"),
        ("POST", "/api/coverage/site"),
        ("POST", "/api/coverage/whatif"),  # a committed what-if recomputes the categories it touches
        ("GET", "/api/coverage/summary"),  # the first coverage request of a process loads the city model
        ("GET", "/api/coverage/areas"),
        ("GET", "/api/coverage/gaps"),
        ("GET", "/coverage/map"),
    }
)
# Uploads: limited by the ingest setting, read as a stream (never buffered here).
UPLOAD_ROUTES = frozenset({("POST", "/api/import"), ("POST", "/api/staff/import")})

STATE_KEY = "gisgov_budget"  # request.state attribute holding this request's _Watch
SQLSTATE_QUERY_CANCELED = "57014"
MB = 1_000_000


class ClientGone(GisgovError):
    """The client disconnected before the request's transaction opened (nobody reads the answer)."""

    status_code = 499


# -- request classes and statement_timeout ---------------------------------------------------------


def _route_key(request: Request) -> tuple[str, str]:
    scope = getattr(request, "scope", None) or {}
    route = scope.get("route")
    return scope.get("method", ""), getattr(route, "path", None) or scope.get("path", "")


def is_analysis(request: Request) -> bool:
    return _route_key(request) in ANALYSIS_ROUTES


def _settings(request: Request):
    return getattr(getattr(getattr(request, "app", None), "state", None), "settings", None)


def statement_timeout_s(request: Request) -> float | None:
    s = _settings(request)
    if s is None:
        return None
    return float(s.analysis_timeout_s if is_analysis(request) else s.statement_timeout_s)


def statement_timeout_ms(request: Request) -> int | None:
    """The ``statement_timeout`` (ms, at least 1) of this request's transaction (None: no app settings,
    the server's default applies)."""
    t = statement_timeout_s(request)
    return None if t is None else max(1, int(round(t * 1000)))


def is_statement_cancel(exc: BaseException) -> bool:
    """A statement cancelled by ``statement_timeout`` or a cancel request (SQLSTATE 57014)."""
    orig = getattr(exc, "orig", None) or exc
    return getattr(orig, "sqlstate", None) == SQLSTATE_QUERY_CANCELED


# -- cancelling the statement of a request whose client left ---------------------------------------


class Cancellable:
    """The DBAPI (psycopg) connection of one open request transaction. :meth:`cancel` sends a cancel
    request for whatever statement runs on it; :meth:`close` (called before the connection goes back
    to the pool) waits for a cancel in flight and disarms it, so a cancel can never reach the next
    request that gets the connection."""

    def __init__(self, dbapi_conn: Any):
        self._conn = dbapi_conn
        self._lock = threading.Lock()
        self._open = True
        self.cancelled = False

    def cancel(self) -> bool:
        with self._lock:
            if not self._open or self._conn is None:
                return False
            try:
                if hasattr(self._conn, "cancel_safe"):
                    self._conn.cancel_safe(timeout=5)
                else:  # pragma: no cover - psycopg < 3.2
                    self._conn.cancel()
            except Exception as exc:  # the server may be gone too: nothing left to cancel
                log.warning("cancel request failed: %s", exc)
                return False
            self.cancelled = True
            return True

    def close(self) -> None:
        with self._lock:
            self._open = False
            self._conn = None


def track(request: Request, dbapi_conn: Any) -> Cancellable:
    """Register the request transaction's DBAPI connection (from the dependency that opened it): it is
    cancelled if the client disconnects. Raises :class:`ClientGone` when the client already left.
    The caller must :meth:`Cancellable.close` it before the connection goes back to the pool."""
    handle = Cancellable(dbapi_conn)
    w = _watch_of(request)
    if w is not None:
        if w.gone:
            handle.close()
            raise ClientGone("客户端已断开 client disconnected; request abandoned")
        w.handles.append(handle)
    return handle


def _watch_of(request: Request):
    scope = getattr(request, "scope", None) or {}
    return (scope.get("state") or {}).get(STATE_KEY)


def untrack(request: Request, handle: Cancellable) -> None:
    w = _watch_of(request)
    if w is not None and handle in w.handles:
        w.handles.remove(handle)


# -- JSON budget -----------------------------------------------------------------------------------


class _Constant:
    """What ``json.loads`` made of ``NaN`` / ``Infinity`` / ``-Infinity`` (refused with its path)."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


class BudgetError(Exception):
    def __init__(self, status: int, error: str, detail: str):
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


def _path_str(path) -> str:
    keys = []
    while path is not None:
        path, k = path
        keys.append(k)
    out = ""
    for k in reversed(keys):
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return out or "(body)"


def _non_finite(value, path) -> BudgetError:
    shown = value.text if isinstance(value, _Constant) else repr(value)
    return BudgetError(
        422,
        "InvalidInput",
        f"非有限数值 non-finite number {shown} at {_path_str(path)}: numbers must be finite (no NaN, "
        "Infinity or values beyond ±1.8e308) (rule: finite_number)",
    )


def _too_long(n: int, path, limit: int) -> BudgetError:
    return BudgetError(
        422,
        "InvalidInput",
        f"列表过长 list too long at {_path_str(path)}: {n} items, limit {limit} "
        "(setting GISGOV_MAX_LIST_ITEMS) (rule: max_list_items)",
    )


def _positions(coords: list, path, max_items: int) -> int:
    """Coordinate positions in one GeoJSON ``coordinates`` array (any nesting); checks they are finite.
    Arrays of positions may be longer than ``max_items`` (they count as vertices instead); an array
    of arrays of positions (rings, lines, polygons) may not."""
    n = 0
    isfinite = math.isfinite
    stack = [(coords, path)]
    while stack:
        arr, p = stack.pop()
        if not arr:
            continue
        first = arr[0]
        if type(first) is list and first and type(first[0]) in (float, int, _Constant):  # positions
            for i, pos in enumerate(arr):
                if type(pos) is not list:
                    continue  # malformed: the app's own validation says what is wrong
                for x in pos:
                    tx = type(x)
                    if (tx is float and not isfinite(x)) or tx is _Constant:
                        raise _non_finite(x, ((p, i), pos.index(x)))
            n += len(arr)
            continue
        if type(first) in (float, int, _Constant):  # a single position (Point)
            for j, x in enumerate(arr):
                if (type(x) is float and not isfinite(x)) or type(x) is _Constant:
                    raise _non_finite(x, (p, j))
            n += 1
            continue
        if len(arr) > max_items:
            raise _too_long(len(arr), p, max_items)
        for i, child in enumerate(arr):
            if type(child) is list:
                stack.append((child, (p, i)))
            elif type(child) is _Constant or (type(child) is float and not math.isfinite(child)):
                raise _non_finite(child, (p, i))
    return n


def check_json(doc: Any, *, max_vertices: int, max_items: int) -> None:
    """Raise :class:`BudgetError` (422) for a non-finite number, too many coordinate positions in
    total, or a list / object with more than ``max_items`` members. Iterative (no recursion limit)."""
    vertices = 0
    isfinite = math.isfinite
    stack = [(doc, None)]
    while stack:
        obj, path = stack.pop()
        t = type(obj)
        if t is dict:
            if len(obj) > max_items:
                raise _too_long(len(obj), path, max_items)
            items = obj.items()
        elif t is list:
            if len(obj) > max_items:
                raise _too_long(len(obj), path, max_items)
            items = enumerate(obj)
        elif (t is float and not isfinite(obj)) or t is _Constant:
            raise _non_finite(obj, path)
        else:
            continue
        for k, v in items:
            tv = type(v)
            if tv is list and k == "coordinates" and t is dict:
                vertices += _positions(v, (path, k), max_items)
            elif tv is dict or tv is list:
                stack.append((v, (path, k)))
            elif (tv is float and not isfinite(v)) or tv is _Constant:
                raise _non_finite(v, (path, k))
    if vertices > max_vertices:
        raise _too_many_vertices(vertices, max_vertices)


# The raw bytes of every "coordinates" array (nested arrays of numbers only) and the positions in it
# (innermost arrays: "[" then a number). Counting these needs no parse: a geometry with far too many
# vertices is refused in milliseconds whatever its size.
_COORDINATES = re.compile(rb'"coordinates"\s*:\s*(\[[\[\]0-9\s,.eE+\-]*)')
_POSITION = re.compile(rb"\[\s*[-+0-9.]")


def count_vertices_raw(body: bytes) -> int:
    """Coordinate positions in every ``"coordinates"`` array of a JSON body, counted on its bytes
    (the same count :func:`check_json` makes on the parsed document of a valid GeoJSON body)."""
    return sum(len(_POSITION.findall(m.group(1))) for m in _COORDINATES.finditer(body))


def _too_many_vertices(n: int, limit: int) -> BudgetError:
    return BudgetError(
        422,
        "InvalidInput",
        f"顶点过多 too many vertices: {n} coordinate positions, limit {limit} "
        "(setting GISGOV_MAX_VERTICES) (rule: max_vertices)",
    )


def parse_json(body: bytes) -> Any:
    """``json.loads`` keeping NaN / Infinity as markers for :func:`check_json`; ValueError / RecursionError
    for a body that is not JSON (left to the app)."""
    return json.loads(body, parse_constant=_Constant)


# -- the middleware --------------------------------------------------------------------------------


class _TooLarge(Exception):
    """Raised into the app from ``receive`` when the body passes its limit."""


class _Watch:
    """Per-request state shared by the middleware and the request's transaction."""

    __slots__ = (
        "body_done",
        "disconnected",
        "gone",
        "handles",
        "replaced",
        "response_done",
        "response_started",
        "too_large",
    )

    def __init__(self) -> None:
        self.gone = False
        self.handles: list[Cancellable] = []
        self.body_done = anyio.Event()
        self.disconnected = anyio.Event()
        self.response_started = False
        self.response_done = False
        self.too_large: BudgetError | None = None
        self.replaced = False


def _headers(scope) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in scope.get("headers", ())}


def body_limit(scope, settings) -> tuple[int, str]:
    """(limit in bytes, setting that sets it) for this request."""
    route = (scope.get("method", ""), scope.get("path", ""))
    if route in UPLOAD_ROUTES:
        from gisgov.ingest.settings import get_ingest_settings

        return int(get_ingest_settings().max_upload_mb * MB), "GISGOV_INGEST_MAX_UPLOAD_MB"
    return int(settings.max_body_mb * MB), "GISGOV_MAX_BODY_MB"


def _too_large(limit: int, setting: str, declared: int | None = None) -> BudgetError:
    got = f"declared {declared} bytes" if declared is not None else "more than that was sent"
    return BudgetError(
        413,
        "PayloadTooLarge",
        f"请求体过大 request body too large: limit {limit / MB:g} MB ({limit} bytes), {got} (setting {setting})",
    )


async def _answer(send, err: BudgetError, *, close: bool = False) -> None:
    body = json.dumps(error_content(err.status, err.detail, err.error), ensure_ascii=False).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
        (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    ]
    if close:  # the rest of the body is not read: the connection cannot carry another request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestBudget:
    """Pure ASGI middleware: body size, JSON shape, disconnect watch (see the module doc)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = scope["app"].state.settings
        h = _headers(scope)
        limit, setting = body_limit(scope, settings)
        declared = None
        if b"content-length" in h:
            try:
                declared = int(h[b"content-length"])
            except ValueError:
                declared = None
        if declared is not None and declared > limit:
            await _answer(send, _too_large(limit, setting, declared), close=True)
            return
        has_body = (declared or 0) > 0 or b"transfer-encoding" in h
        w = _Watch()
        scope.setdefault("state", {})[STATE_KEY] = w
        queue: list[dict] = []

        if not has_body:  # the (empty) request message, so the disconnect watch can start at once
            queue.append(await receive())
            w.body_done.set()
        elif (
            is_json(h.get(b"content-type", b"").decode("latin-1"))
            and (scope["method"], scope["path"]) not in UPLOAD_ROUTES
        ):
            chunks, size = [], 0
            while True:
                msg = await receive()
                if msg["type"] != "http.request":
                    queue.append(msg)  # disconnect while sending: hand it on
                    w.gone = True
                    break
                chunk = msg.get("body", b"")
                size += len(chunk)
                if size > limit:
                    await _answer(send, _too_large(limit, setting), close=True)
                    return
                chunks.append(chunk)
                if not msg.get("more_body", False):
                    break
            body = b"".join(chunks)
            if not w.gone:
                if len(body) > 256_000:  # parsing megabytes takes a while: not on the event loop
                    err = await to_thread.run_sync(self._check, body, settings)
                else:
                    err = self._check(body, settings)
                if err is not None:
                    await _answer(send, err)
                    return
                queue.append({"type": "http.request", "body": body, "more_body": False})
            w.body_done.set()

        counted = 0

        async def app_receive() -> dict:
            nonlocal counted
            if queue:
                return queue.pop(0)
            if not w.body_done.is_set():  # streamed body: count while the app reads
                msg = await receive()
                if msg["type"] == "http.request":
                    counted += len(msg.get("body", b""))
                    if counted > limit:
                        w.too_large = _too_large(limit, setting)
                        raise _TooLarge()
                    if not msg.get("more_body", False):
                        w.body_done.set()
                else:
                    w.gone = True
                    w.disconnected.set()
                    w.body_done.set()
                return msg
            await w.disconnected.wait()
            return {"type": "http.disconnect"}

        async def app_send(msg: dict) -> None:
            if w.too_large is not None:  # the app's answer to the aborted read is replaced by the 413
                if msg["type"] == "http.response.start" and not w.replaced and not w.response_started:
                    w.replaced = True
                    await _answer(send, w.too_large, close=True)
                return
            if msg["type"] == "http.response.start":
                w.response_started = True
            elif msg["type"] == "http.response.body" and not msg.get("more_body", False):
                w.response_done = True
            await send(msg)

        error: Exception | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch, receive, w)
            try:
                await self.app(scope, app_receive, app_send)
            except Exception as exc:
                error = exc
            tg.cancel_scope.cancel()
        if w.too_large is not None and not w.replaced and not w.response_started:
            await _answer(send, w.too_large, close=True)
            return
        if error is not None:
            raise error

    @staticmethod
    def _check(body: bytes, settings) -> BudgetError | None:
        n = count_vertices_raw(body)
        if n > settings.max_vertices:
            return _too_many_vertices(n, settings.max_vertices)
        try:
            doc = parse_json(body)
        except (ValueError, RecursionError):
            return None  # not JSON: the app answers (422 / 400)
        try:
            check_json(doc, max_vertices=settings.max_vertices, max_items=settings.max_list_items)
        except BudgetError as err:
            return err
        return None

    @staticmethod
    async def _watch(receive, w: _Watch) -> None:
        """After the body: wait for the client to go away; then cancel the request's statements."""
        await w.body_done.wait()
        while not w.gone:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                break
        if w.response_done:
            return  # servers report a disconnect once the response is complete: nothing to cancel
        w.gone = True
        w.disconnected.set()
        for handle in list(w.handles):
            if await to_thread.run_sync(handle.cancel):
                log.info("client gone: cancelled the running statement of its request")


# -- install ---------------------------------------------------------------------------------------


def _timeout_response(request: Request) -> JSONResponse:
    t = statement_timeout_s(request) or 0
    setting = "GISGOV_ANALYSIS_TIMEOUT_S" if is_analysis(request) else "GISGOV_STATEMENT_TIMEOUT_S"
    cls = "分析 analysis" if is_analysis(request) else "普通 ordinary"
    return error_response(
        503,
        f"查询超时 database statement took longer than {t:g} s and was cancelled (statement_timeout of "
        f"{cls} requests; setting {setting}, others GISGOV_STATEMENT_TIMEOUT_S / "
        "GISGOV_ANALYSIS_TIMEOUT_S): narrow the request or raise the setting",
        "StatementTimeout",
    )


def install(app: FastAPI) -> None:
    """Add the budget middleware and the statement-timeout error handler (idempotent). Call it after
    the app's other exception handlers are installed: other ``OperationalError`` answers (e.g. the
    database is down) are passed on to the handler that was there before."""
    if getattr(app.state, "budgets_installed", False):
        return
    app.state.budgets_installed = True
    app.add_middleware(RequestBudget)

    previous = app.exception_handlers.get(OperationalError)

    async def statement_cancelled(request: Request, exc: Exception):
        if is_statement_cancel(exc):
            return _timeout_response(request)
        if previous is not None:  # another handler of OperationalError (e.g. database down)
            r = previous(request, exc)
            return await r if hasattr(r, "__await__") else r
        for cls in type(exc).__mro__[1:]:  # a handler of a broader class (DBAPIError, ...)
            if cls in (Exception, BaseException):
                break  # the catch-all belongs to the server-error layer: re-raise for it (and the log)
            handler = app.exception_handlers.get(cls)
            if handler is not None and handler is not statement_cancelled:
                r = handler(request, exc)
                return await r if hasattr(r, "__await__") else r
        raise exc

    app.add_exception_handler(OperationalError, statement_cancelled)
    try:
        from psycopg.errors import QueryCanceled
    except ImportError:  # pragma: no cover
        return

    async def query_cancelled(request: Request, exc: Exception):
        return _timeout_response(request)

    app.add_exception_handler(QueryCanceled, query_cancelled)


__all__ = [
    "ANALYSIS_ROUTES",
    "UPLOAD_ROUTES",
    "BudgetError",
    "Cancellable",
    "ClientGone",
    "RequestBudget",
    "check_json",
    "install",
    "is_analysis",
    "is_statement_cancel",
    "parse_json",
    "statement_timeout_ms",
    "statement_timeout_s",
    "track",
    "untrack",
]
