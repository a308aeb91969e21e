"""Map errors to HTTP responses in one place, every one with the same body (:class:`ErrorBody`)::

    {"detail": "<message 中文 English>", "error": "<ErrorClass>", "code": "<machine code>",
     "message_zh": "<中文>", "message_en": "<English>", "details": {...}}

``detail`` is the whole bilingual message (what the pages show); ``code`` is the ``rule: xxx`` the
message names, else the error class in snake_case (``not_found``, ``invalid_input``…); ``message_zh`` /
``message_en`` are the two halves (a generic text of the class when the message lacks one);
``details`` holds the extra members some errors carry (a 409's ``conflict``, a 422's ``errors``), which
also stay at the top level for older clients. Code that answers an error itself (a pure ASGI
middleware, a route returning a 409 with its conflict) builds the body with :func:`error_content` /
:func:`error_response`.

- domain errors (:class:`gisgov.errors.GisgovError` subclasses) answer their ``status_code``;
- request validation (FastAPI's ``RequestValidationError``) answers 422 ``InvalidInput`` with a readable
  ``detail`` naming the fields and, beside it, ``errors``: one ``{loc, msg, type}`` per problem (the
  submitted values are not echoed back);
- routing errors (unknown path 404, wrong method 405) answer ``NotFound`` / ``MethodNotAllowed``;
- values the database refuses (``sqlalchemy.exc.DataError``: a number beyond bigint, a NUL byte in a
  text value, an invalid JSON escape) answer 422 ``InvalidInput`` (a safety net: routes should check
  first);
- no free pooled connection in time answers 503 ``DatabaseBusy`` with ``Retry-After``;
- anything else is a bug: 500 ``InternalError`` without a traceback (the traceback goes to the log).

A browser asking for a page (``GET``/``HEAD`` with ``Accept: text/html``, a path outside ``/api``, ``/tiles``
and ``/static``) gets the same status as an HTML page in the app's style instead (:func:`error_page`: the
message in Chinese and English, links to 驾驶舱 /dashboard and 登录 /login, no script); ``/api/*`` and every
other client keep the JSON body above.

:func:`check_no_nul` refuses a NUL byte in any path or query parameter before a route runs (PostgreSQL
text cannot hold one), naming the parameter.
"""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DataError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from gisgov.errors import GisgovError, InvalidInput, NotAuthenticated, error_code, split_message

_log = logging.getLogger(__name__)


#: what a message says when it has no Chinese (or no English) half, by error class
GENERIC_TEXT: dict[str, tuple[str, str]] = {
    "BadRequest": ("请求无法解析", "bad request"),
    "NotAuthenticated": ("未登录", "not signed in"),
    "Forbidden": ("无权限", "forbidden"),
    "NotFound": ("未找到", "not found"),
    "MethodNotAllowed": ("不支持的请求方法", "method not allowed"),
    "NotAcceptable": ("无法提供所需格式", "not acceptable"),
    "Conflict": ("冲突", "conflict"),
    "PlanConflict": ("冲突", "conflict with the current state"),
    "Gone": ("已过期", "gone"),
    "PayloadTooLarge": ("请求体过大", "request body too large"),
    "UnsupportedMediaType": ("不支持的内容类型", "unsupported media type"),
    "InvalidInput": ("输入无效", "invalid input"),
    "TooManyRequests": ("尝试过于频繁", "too many requests"),
    "DatabaseBusy": ("服务繁忙", "server busy"),
    "DatabaseUnavailable": ("数据库不可用", "database unavailable"),
    "StatementTimeout": ("查询超时", "statement timeout"),
    "ServiceUnavailable": ("服务不可用", "service unavailable"),
    "InternalError": ("内部错误", "internal error"),
}
_BY_STATUS = {400: "BadRequest", 401: "NotAuthenticated", 403: "Forbidden", 404: "NotFound", 409: "Conflict"}
_BY_STATUS |= {410: "Gone", 413: "PayloadTooLarge", 415: "UnsupportedMediaType", 422: "InvalidInput"}
_BY_STATUS |= {429: "TooManyRequests", 503: "ServiceUnavailable"}
#: members of the body itself; anything else an error carries also goes under ``details``
MODEL_KEYS = frozenset({"detail", "error", "code", "message_zh", "message_en", "details"})


def generic_text(error: str, status: int | None = None) -> tuple[str, str]:
    """The generic (zh, en) of an error class (falling back on the HTTP status's class)."""
    hit = GENERIC_TEXT.get(error)
    if hit is None and status is not None:
        hit = GENERIC_TEXT.get(_BY_STATUS.get(status, ""))
    if hit is None and status is not None and status >= 500:
        hit = GENERIC_TEXT["InternalError"] if status == 500 else GENERIC_TEXT["ServiceUnavailable"]
    return hit or ("请求失败", "request failed")


def error_content(
    status: int,
    detail: str,
    error: str,
    /,
    *,
    zh: str | None = None,
    en: str | None = None,
    code: str | None = None,
    details: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    **more: Any,
) -> dict[str, Any]:
    """The body of an error answer: the model's members, then the extra members (``extra`` and keyword
    arguments) both under ``details`` and, for compatibility, at the top level."""
    split_zh, split_en = split_message(detail)
    gen_zh, gen_en = generic_text(error, status)
    rest = {k: v for k, v in {**(extra or {}), **more}.items() if k not in MODEL_KEYS}
    return {
        **rest,
        "detail": detail,
        "error": error,
        "code": code or error_code(detail, error),
        "message_zh": zh or split_zh or gen_zh,
        "message_en": en or split_en or gen_en,
        "details": {**(details or {}), **rest},
    }


class ErrorBody(BaseModel):
    """Every error answer of the API (4xx and 503): the whole bilingual message (``detail``), its class,
    a stable machine code, the message's two halves and the structured details. Members beyond these
    (a 409 plan conflict's ``conflict``, a 422's ``errors``, a rejected import's report) are also kept
    at the top level for older clients."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "detail": "未找到 社区 community not found: 110101001001",
                    "error": "NotFound",
                    "code": "not_found",
                    "message_zh": "未找到 社区",
                    "message_en": "community not found: 110101001001",
                    "details": {},
                }
            ]
        },
    )

    detail: str = Field(description="说明（中文 English）what went wrong and what to do, in Chinese and English")
    error: str = Field(description="错误类别 error class, e.g. InvalidInput, NotFound, Forbidden, PlanConflict")
    code: str = Field(
        description="机器可读代码 stable machine code: the rule the message names (e.g. area_pair), "
        "else the class in snake_case (not_found, invalid_input, forbidden …)"
    )
    message_zh: str = Field(description="中文说明 the message in Chinese (a generic text of the class if none)")
    message_en: str = Field(description="英文说明 the message in English (a generic text of the class if none)")
    details: dict[str, Any] = Field(
        default_factory=dict,
        description="附加信息 structured extras, e.g. a 409's conflict, a 422's errors (empty when none)",
    )


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="位置 where: path / query / body, then the field name (and index)")
    msg: str = Field(description="问题 what is wrong with it")
    type: str = Field(description="类别 the kind of problem, e.g. missing, int_parsing")


class ValidationErrorBody(ErrorBody):
    """422: a request the schema (or the app's own checks) refuses. ``errors`` is present when the
    request did not match the schema."""

    errors: list[FieldError] | None = Field(
        None, description="每个无效字段一条 one entry per invalid field (schema validation; also under details)"
    )


def error_response(
    status: int, detail: str, error: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """An error answer; ``extra`` members (``details=`` a dict, or others such as ``errors=``) as in
    :func:`error_content`."""
    details = extra.pop("details", None)
    zh, en, code = extra.pop("zh", None), extra.pop("en", None), extra.pop("code", None)
    content = error_content(status, detail, error, zh=zh, en=en, code=code, details=details, extra=extra)
    return JSONResponse(status_code=status, content=content, headers=headers)


_HTTP_ERRORS = {
    400: "BadRequest",
    401: "NotAuthenticated",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Gone",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    422: "InvalidInput",
    429: "TooManyRequests",
    503: "ServiceUnavailable",
}
_QUOTED = re.compile(r'"[^"]*"')
_HTTP_TEXT = {
    400: "请求体无法解析 the request body could not be read",
    404: "未找到 not found",
    405: "不支持的请求方法 method not allowed",
}


def _loc(loc) -> str:
    return ".".join(str(x) for x in loc)


def validation_detail(errors: list[dict]) -> str:
    """One readable line naming every invalid field, e.g. ``query.offset: Input should be ≤ …``."""
    parts = [f"{_loc(e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in errors[:5]]
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return "请求参数无效 invalid request: " + "; ".join(parts) + more


def check_no_nul(request: Request) -> None:
    """422 when a path or query parameter holds a NUL byte (PostgreSQL text cannot store one)."""
    for where, params in (("path", request.path_params), ("query", request.query_params)):
        for name, value in params.items():
            if "\x00" in str(name) or "\x00" in str(value):
                shown = str(name).replace("\x00", "\\0")
                raise InvalidInput(f"参数含空字符 NUL byte in {where} parameter {shown!r} (text cannot hold 0x00)")


# ---- error pages for browsers -------------------------------------------------------------------------------

#: what the page's heading says, by status (the message of the error follows it)
PAGE_HEADINGS: dict[int, tuple[str, str]] = {
    400: ("请求有误", "Bad request"),
    403: ("无权访问", "Forbidden"),
    404: ("页面不存在", "Page not found"),
    405: ("不支持的请求方法", "Method not allowed"),
    409: ("冲突", "Conflict"),
    410: ("已过期", "Gone"),
    422: ("参数无效", "Invalid input"),
    429: ("尝试过于频繁", "Too many requests"),
    500: ("服务器内部错误", "Internal server error"),
    503: ("服务暂不可用", "Service unavailable"),
}
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"
_NOT_PAGES = ("/api/", "/api", "/tiles/", "/static/", "/openapi.json")

_PAGE_CSS = """
:root { --ink: #1d2a3a; --muted: #4f5d6e; --bg: #eef2f6; --panel: #ffffff; --accent: #1f5fbf; --navy: #13294b; }
* { box-sizing: border-box; }
html, body { margin: 0; min-height: 100%; background: var(--bg); color: var(--ink);
  font-family: "Microsoft YaHei", "PingFang SC", "Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Micro Hei",
  "Helvetica Neue", Arial, sans-serif; }
header { display: flex; align-items: center; gap: 12px; height: 52px; padding: 0 18px; color: #fff;
  background: linear-gradient(90deg, #102544, #1b3a66); }
header b { font-size: 18px; font-weight: 600; letter-spacing: .05em; }
header small { color: #dbe6f5; }
main { max-width: 620px; margin: 64px auto; padding: 28px 32px; background: var(--panel); border-radius: 10px;
  box-shadow: 0 1px 6px rgba(0, 0, 0, .12); }
.status { font-size: 44px; font-weight: 700; color: var(--accent); margin: 0; }
h1 { font-size: 22px; margin: 6px 0 2px; }
h1 small { display: block; font-size: 14px; font-weight: 400; color: var(--muted); margin-top: 4px; }
p { line-height: 1.6; }
.en { color: var(--muted); }
nav { display: flex; gap: 12px; margin-top: 22px; flex-wrap: wrap; }
nav a { display: inline-block; padding: 7px 16px; border-radius: 5px; text-decoration: none; font-size: 14px;
  border: 1px solid var(--accent); color: var(--accent); }
nav a.primary { background: var(--accent); color: #fff; }
"""


def wants_page(request: Request) -> bool:
    """A browser asking for a page: GET/HEAD, Accept names text/html, the path is not an API, tile or asset."""
    if request.method not in ("GET", "HEAD"):
        return False
    path = request.url.path
    if path == "/api" or path.startswith(_NOT_PAGES):
        return False
    return "text/html" in request.headers.get("accept", "").lower()


def error_page(status: int, zh: str, en: str) -> str:
    """The HTML error page: status, heading and message in Chinese and English, links back, no script."""
    head_zh, head_en = PAGE_HEADINGS.get(status) or generic_text(_BY_STATUS.get(status, ""), status)
    e = html.escape
    body_zh = "" if zh.strip() == head_zh else f"<p>{e(zh)}</p>"
    body_en = "" if en.strip().lower() == head_en.lower() else f'<p class="en">{e(en)}</p>'
    return (
        '<!doctype html>\n<html lang="zh-CN">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{status} {e(head_zh)} {e(head_en)} — gisgov</title>\n"
        '<link rel="icon" href="/favicon.ico">\n'
        f"<style>{_PAGE_CSS}</style>\n</head>\n<body>\n"
        "<header><b>基层网格化治理</b><small>gisgov grid governance</small></header>\n"
        f'<main role="main">\n<p class="status">{status}</p>\n'
        f"<h1>{e(head_zh)}<small>{e(head_en)}</small></h1>\n{body_zh}{body_en}\n"
        '<nav><a class="primary" href="/dashboard">返回驾驶舱 Back to the dashboard</a>'
        '<a href="/login">登录 Sign in</a></nav>\n</main>\n</body>\n</html>\n'
    )


def answer(request: Request, response: JSONResponse) -> Response:
    """``response`` (an error body of :func:`error_content`), or the same error as an HTML page when a
    browser asked for a page (:func:`wants_page`). Headers (Retry-After …) are kept."""
    if response.status_code == 401 or not wants_page(request):
        return response
    body = json.loads(bytes(response.body))
    headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
    # the page has no script; a 500 answered outside the security-headers middleware still carries these
    headers |= {"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}
    page = error_page(response.status_code, str(body.get("message_zh", "")), str(body.get("message_en", "")))
    return HTMLResponse(page, status_code=response.status_code, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(NotAuthenticated)
    async def _sign_in_first(request: Request, exc: NotAuthenticated):
        page = (
            request.method == "GET" and not request.url.path.startswith("/api") and request.url.path != "/openapi.json"
        )
        if page:
            nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse("/login?next=" + quote(nxt, safe="/"), status_code=303)
        return error_response(401, str(exc), "NotAuthenticated", headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(PoolTimeout)
    async def _pool_busy(request: Request, exc: PoolTimeout) -> Response:
        return answer(
            request,
            error_response(
                503,
                "服务繁忙，请稍后重试 server busy (no free database connection), retry shortly",
                "DatabaseBusy",
                headers={"Retry-After": "2"},
            ),
        )

    @app.exception_handler(GisgovError)
    async def _domain_error(request: Request, exc: GisgovError) -> Response:
        zh, en = exc.parts()
        details = getattr(exc, "details", None)
        extra = {"details": details if isinstance(details, dict) else {"value": details}} if details else {}
        return answer(request, error_response(exc.status_code, str(exc), type(exc).__name__, zh=zh, en=en, **extra))

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {
                "loc": [x if isinstance(x, int) else str(x) for x in e.get("loc", ())],
                "msg": str(e.get("msg", "invalid")),
                "type": str(e.get("type", "value_error")),
            }
            for e in exc.errors()
        ]
        return answer(request, error_response(422, validation_detail(errors), "InvalidInput", errors=errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        status = exc.status_code
        text = exc.detail if isinstance(exc.detail, str) else None
        if text is None or text in ("Not Found", "Method Not Allowed", "There was an error parsing the body"):
            text = _HTTP_TEXT.get(status, text or f"HTTP {status}")
        return answer(request, error_response(status, text, _HTTP_ERRORS.get(status, "HTTPError"), headers=exc.headers))

    @app.exception_handler(DataError)
    @app.exception_handler(psycopg.DataError)
    async def _data_refused(request: Request, exc: Exception) -> Response:
        orig = getattr(exc, "orig", None) or exc
        first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
        _log.info("value refused by the database on %s %s: %s", request.method, request.url.path, first)
        reason = _QUOTED.sub('"…"', first)[:200]  # the refused value is not echoed back
        if "NUL" in first:
            msg = "参数含空字符 a value contains a NUL byte (0x00), which text cannot hold"
        elif "out of range" in first:
            msg = f"数值超出范围 a number is out of range: {reason}"
        else:
            msg = f"参数值无效 invalid value: {reason}"
        return answer(request, error_response(422, msg, "InvalidInput"))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:
        _log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return answer(request, error_response(500, "内部错误 internal error (logged on the server)", "InternalError"))


# ---- the error answers in the OpenAPI schema ------------------------------------------------------

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_VALIDATION_REF = {"$ref": "#/components/schemas/ValidationErrorBody"}
_WRITE = frozenset({"post", "put", "patch", "delete"})
#: routers whose writes take JSON bodies only (``gisgov.api.json_only``: 415 otherwise)
JSON_ONLY_PREFIXES = ("/api/grids/", "/api/coverage/")

ERROR_TEXT = {
    400: "请求体无法解析 the request body could not be read (e.g. not UTF-8, or a broken form)",
    401: "未登录 not signed in, or the session / token expired",
    403: "无权限 the account's role lacks the permission (or a cookie write without a valid CSRF token)",
    404: "未找到 unknown, or outside the caller's area (the two answer alike)",
    409: "冲突 conflict with the current state (e.g. a plan made from a version that is no longer active)",
    410: "已过期 the edit session expired (reopen it with resume)",
    413: "请求体过大 request body larger than GISGOV_MAX_BODY_MB",
    415: "只接受 JSON writes take Content-Type: application/json",
    422: "参数无效 invalid input: the schema or the app's own checks refuse it (the detail names the field)",
    429: "尝试过于频繁 too many sign-in attempts",
    503: "数据库繁忙或不可用 database busy, unavailable or the statement timed out: retry later",
}
_HEADERS = {
    401: {"WWW-Authenticate": {"description": "Bearer", "required": False, "schema": {"type": "string"}}},
    503: {"Retry-After": {"description": "seconds", "required": False, "schema": {"type": "integer"}}},
}


def error_statuses(method: str, path: str, op: dict, public: bool) -> list[int]:
    """The error statuses an operation can answer (see the README's "Status codes")."""
    params = op.get("parameters") or []
    has_input = bool(params) or "requestBody" in op
    write = method in _WRITE
    out = {503}
    if not public:
        out |= {401, 403}
        if has_input:
            out.add(404)
    if has_input:
        out.add(422)
    if "requestBody" in op:
        out.add(400)
    if write:
        out.add(413)
        if path.startswith(JSON_ONLY_PREFIXES):
            out.add(415)
        if path.startswith("/api/grids/"):
            out.add(409)
    if "/sessions/{" in path:
        out |= {404, 409, 410}
    return sorted(out)


def document_errors(spec: dict, public_paths: frozenset[str]) -> dict:
    """Add the error answers every operation can give to ``spec`` (in place), all with
    :class:`ErrorBody` (422: :class:`ValidationErrorBody`); FastAPI's own ``HTTPValidationError`` goes."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorBody, FieldError, ValidationErrorBody):
        schemas[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas[model.__name__].pop("$defs", None)
    for path, item in spec.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            public = path in public_paths
            statuses = error_statuses(method, path, op, public)
            if path in ("/api/auth/login", "/api/auth/token"):
                statuses = sorted(set(statuses) | {401, 429} | ({403} if path == "/api/auth/login" else set()))
            responses = op["responses"]
            for code in {int(c) for c in responses if c.isdigit() and int(c) >= 400} | set(statuses):
                entry = responses.setdefault(str(code), {})
                if not entry.get("description"):
                    entry["description"] = ERROR_TEXT.get(code, "error")
                ref = _VALIDATION_REF if code == 422 else _ERROR_REF
                content = entry.setdefault("content", {})
                json_part = content.get("application/json") or {}
                schema = json_part.get("schema")
                plain = schema is None or schema.get("$ref", "").endswith(("/HTTPValidationError", "/ErrorBody"))
                if plain:
                    content["application/json"] = {**json_part, "schema": ref}
                if code in _HEADERS:
                    entry.setdefault("headers", {}).update(_HEADERS[code])
    if "HTTPValidationError" not in json.dumps(spec.get("paths", {})):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)  # referenced only by HTTPValidationError
    return spec
