"""The FastAPI application: engine in the lifespan (on ``app.state``), routers, static assets.

Every route goes through sign-in (:func:`gate`) except the few in :data:`PUBLIC_PATHS`; the engine
connects as the app role (never the owner) and the app refuses to start if that role could bypass
row-level security."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from sqlalchemy import Engine

from gisgov import __version__
from gisgov.api import errors
from gisgov.config import Settings, get_settings
from gisgov.api.deps import current_principal
from gisgov.api.headers import SecurityHeaders
from gisgov.db.approle import app_database_url, check_app_login
from gisgov.db.engine import make_engine
from gisgov.plugins import optional_modules

# Router modules; a capability adds its module here. Each exposes `router`.
ROUTER_MODULES = [
    "gisgov.api.routes.auth",
    "gisgov.api.routes.core",
    "gisgov.api.routes.maps",
    "gisgov.api.routes.ingest",
    "gisgov.api.routes.coverage",
    "gisgov.api.routes.grids",
    "gisgov.api.routes.stats",
    "gisgov.api.routes.dashboard",
    "gisgov.api.routes.grid_editor",
    "gisgov.api.routes.admin",
]


# Routes anyone may call: the sign-in page and endpoints, the health probe, the favicon.
PUBLIC_PATHS = frozenset({"/login", "/api/auth/login", "/api/auth/token", "/health", "/favicon.ico"})


async def gate(request: Request) -> None:
    """App-wide dependency: every route but :data:`PUBLIC_PATHS` needs a signed-in principal."""
    route = request.scope.get("route")
    if getattr(route, "path", None) in PUBLIC_PATHS:
        return
    await current_principal(request)


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        own = app.state.engine is None
        if own:
            app.state.engine = make_engine(app_database_url(settings), pool_size=settings.pool_size,
                                           max_overflow=settings.pool_overflow, pool_timeout=settings.pool_timeout_s)
        try:
            check_app_login(app.state.engine)
        except BaseException:
            if own:
                app.state.engine.dispose()
            raise
        try:
            yield
        finally:
            side_engine = getattr(app.state, "side_engine", None)
            if side_engine is not None:
                side_engine.dispose()
                app.state.side_engine = None
            if own:
                app.state.engine.dispose()

    app = FastAPI(
        title="gisgov 基层网格化治理 API",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # served by gisgov.api.routes.core with local assets (no CDN)
        openapi_url=None,  # served below, behind sign-in like every other route
        redoc_url=None,
        dependencies=[Depends(gate)],
    )
    app.state.engine = engine
    app.state.settings = settings
    app.add_middleware(SecurityHeaders, basemap_url=settings.basemap_url)
    errors.install(app)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_schema() -> dict:
        return app.openapi()

    app.openapi_url = "/openapi.json"  # for /docs; the route above is the one that serves it
    for mod in optional_modules(ROUTER_MODULES):
        app.include_router(mod.router)
        if hasattr(mod, "setup"):
            mod.setup(app)
    return app
