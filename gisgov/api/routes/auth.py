"""Sign-in and sign-out: the /login page, cookie sessions for pages, bearer tokens for API clients.

- ``POST /api/auth/login`` (JSON ``{username, password}``) sets the HttpOnly, SameSite=Strict
  session cookie and a readable CSRF cookie the pages echo in ``X-CSRF-Token``.
- ``POST /api/auth/token`` (OAuth2 password form) returns a bearer token.
- ``POST /api/auth/logout`` ends the session; ``GET /api/auth/me`` says who is signed in.
Every attempt is audited; attempts per client address are rate limited (``GISGOV_LOGIN_RATE_PER_MINUTE``)
and accounts lock after repeated failures (``GISGOV_LOGIN_MAX_FAILURES``).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque

from anyio import to_thread
from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from gisgov.api.deps import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    check_same_origin,
    client_addr,
    current_principal,
    side_engine,
)
from gisgov.api.pages import LeafletPage
from gisgov.api.schemas.auth import SignedIn, SignedOut, TokenOut
from gisgov.errors import GisgovError
from gisgov.security import accounts, audit
from gisgov.security.roles import Principal

router = APIRouter(tags=["auth 登录"])
PAGE = LeafletPage("login", "登录 sign-in")


class TooManyAttempts(GisgovError):
    status_code = 429


class _RateLimit:
    """Sliding one-minute window of attempts per client address (per process)."""

    def __init__(self) -> None:
        self._hits: dict[str, deque] = defaultdict(deque)
        self._lock = threading.Lock()

    def hit(self, key: str, limit: int) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._hits) > 10_000:  # forget addresses whose window has passed (bounded memory)
                for k in [k for k, q in self._hits.items() if not q or now - q[-1] > 60]:
                    del self._hits[k]
            q = self._hits[key]
            while q and now - q[0] > 60:
                q.popleft()
            if len(q) >= limit:
                return False
            q.append(now)
            return True


class Credentials(BaseModel):
    username: str = Field(min_length=1, max_length=64, description="用户名 user name")
    password: str = Field(min_length=1, max_length=256, description="密码 password")


def _sign_in(request: Request, username: str, password: str, kind: str) -> accounts.Issued:
    settings = request.app.state.settings
    client = client_addr(request)
    if not request.app.state.login_limit.hit(client or "?", settings.login_rate_per_minute):
        audit.record(
            side_engine(request),
            "login",
            actor=username,
            result="denied",
            client=client,
            detail={"reason": "rate_limited", "kind": kind},
        )
        raise TooManyAttempts("尝试过于频繁，请稍后再试 too many sign-in attempts, wait a minute")
    engine = request.app.state.engine
    with engine.begin() as conn:
        try:
            issued = accounts.sign_in(conn, settings, username, password, kind=kind, client=client)
        except accounts.SignInFailed as exc:
            failure = exc
        else:
            failure = None
    if failure is not None:
        audit.record(
            side_engine(request),
            "login",
            actor=username,
            result="failed",
            client=client,
            detail={"reason": failure.reason, "kind": kind},
        )
        raise failure
    audit.record(side_engine(request), "login", actor=issued.principal, client=client, detail={"kind": kind})
    return issued


@router.get("/login", include_in_schema=False)
def login_page(request: Request) -> HTMLResponse:
    s = request.app.state.settings
    return HTMLResponse(PAGE.render(s.web_dir, basemap_url=None, basemap_attribution=""))


@router.post(
    "/api/auth/login",
    summary="登录 Sign in (page session cookie)",
    response_model=SignedIn,
    responses={401: {"description": "wrong credentials or locked"}, 429: {"description": "rate limited"}},
)
async def login(request: Request, body: Credentials) -> JSONResponse:
    check_same_origin(request)
    issued = await to_thread.run_sync(_sign_in, request, body.username, body.password, "cookie")
    settings = request.app.state.settings
    secure = settings.origin.startswith("https://")
    resp = JSONResponse(issued.principal.public())
    resp.set_cookie(
        SESSION_COOKIE,
        issued.token,
        max_age=issued.max_age_s,
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/",
    )
    resp.set_cookie(
        CSRF_COOKIE,
        issued.csrf or "",
        max_age=issued.max_age_s,
        httponly=False,
        samesite="strict",
        secure=secure,
        path="/",
    )
    return resp


@router.post(
    "/api/auth/token",
    summary="令牌 Bearer token for API clients (OAuth2 password form)",
    response_model=TokenOut,
    responses={401: {"description": "wrong credentials or locked"}, 429: {"description": "rate limited"}},
)
async def token(
    request: Request,
    username: str = Form(..., min_length=1, max_length=64),
    password: str = Form(..., min_length=1, max_length=256),
) -> TokenOut:
    issued = await to_thread.run_sync(_sign_in, request, username, password, "bearer")
    return TokenOut(access_token=issued.token, expires_in=issued.max_age_s)


def _sign_out(request: Request, p: Principal) -> None:
    engine = request.app.state.engine
    with engine.begin() as conn:
        accounts.sign_out(conn, p)
    audit.record(side_engine(request), "logout", actor=p, client=client_addr(request))


@router.post("/api/auth/logout", summary="退出 Sign out (ends this session or token)", response_model=SignedOut)
async def logout(request: Request, p: Principal = Depends(current_principal)) -> JSONResponse:
    await to_thread.run_sync(_sign_out, request, p)
    resp = JSONResponse({"signed_out": True})
    resp.delete_cookie(SESSION_COOKIE, path="/")
    resp.delete_cookie(CSRF_COOKIE, path="/")
    return resp


@router.get("/api/auth/me", summary="当前用户 Who is signed in", response_model=SignedIn)
def me(p: Principal = Depends(current_principal)) -> dict:
    return p.public()


def setup(app: FastAPI) -> None:
    app.state.login_limit = _RateLimit()
    PAGE.mount(app)
