"""Map domain errors to HTTP responses in one place."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from gisgov.errors import GisgovError


def install(app: FastAPI) -> None:
    @app.exception_handler(GisgovError)
    async def _domain_error(request: Request, exc: GisgovError) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"detail": str(exc), "error": type(exc).__name__})
