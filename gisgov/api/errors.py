"""Map domain errors to HTTP responses in one place."""

from __future__ import annotations

from fastapi import FastAPI, Request
from urllib.parse import quote

from fastapi.responses import JSONResponse, RedirectResponse

from sqlalchemy.exc import TimeoutError as PoolTimeout

from gisgov.errors import GisgovError, NotAuthenticated


def install(app: FastAPI) -> None:
    @app.exception_handler(NotAuthenticated)
    async def _sign_in_first(request: Request, exc: NotAuthenticated):
        page = request.method == "GET" and not request.url.path.startswith("/api") and request.url.path != "/openapi.json"
        if page:
            nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse("/login?next=" + quote(nxt, safe="/"), status_code=303)
        return JSONResponse(status_code=401, content={"detail": str(exc), "error": "NotAuthenticated"},
                            headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(PoolTimeout)
    async def _pool_busy(request: Request, exc: PoolTimeout) -> JSONResponse:
        return JSONResponse(status_code=503, headers={"Retry-After": "2"},
                            content={"detail": "服务繁忙，请稍后重试 server busy (no free database connection), retry shortly",
                                     "error": "DatabaseBusy"})

    @app.exception_handler(GisgovError)
    async def _domain_error(request: Request, exc: GisgovError) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"detail": str(exc), "error": type(exc).__name__})
