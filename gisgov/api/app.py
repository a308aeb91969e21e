"""The FastAPI application: engine in the lifespan (on ``app.state``), routers, static assets."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import Engine

from gisgov import __version__
from gisgov.api import errors
from gisgov.config import Settings, get_settings
from gisgov.db.engine import database_url, make_engine
from gisgov.plugins import optional_modules

# Router modules; a capability adds its module here. Each exposes `router`.
ROUTER_MODULES = [
    "gisgov.api.routes.core",
    "gisgov.api.routes.maps",
    "gisgov.api.routes.ingest",
    "gisgov.api.routes.coverage",
    "gisgov.api.routes.grids",
    "gisgov.api.routes.stats",
    "gisgov.api.routes.dashboard",
    "gisgov.api.routes.grid_editor",
]


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        own = app.state.engine is None
        if own:
            app.state.engine = make_engine(database_url(settings, start=True))
        try:
            yield
        finally:
            if own:
                app.state.engine.dispose()

    app = FastAPI(
        title="gisgov 基层网格化治理 API",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # served by gisgov.api.routes.core with local assets (no CDN)
        redoc_url=None,
    )
    app.state.engine = engine
    app.state.settings = settings
    errors.install(app)
    for mod in optional_modules(ROUTER_MODULES):
        app.include_router(mod.router)
        if hasattr(mod, "setup"):
            mod.setup(app)
    return app
