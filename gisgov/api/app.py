"""The FastAPI application: long-lived state made in the lifespan and held on ``app.state`` (the engine,
the coverage service with its model cache), routers, static assets.

Every route goes through sign-in (:func:`gate`) except the few in :data:`PUBLIC_PATHS`; the engine
connects as the app role (never the owner) and the app refuses to start if that role could bypass
row-level security."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from sqlalchemy import Engine
from starlette.middleware.gzip import GZipMiddleware

from gisgov import __version__
from gisgov.api import budgets, errors
from gisgov.api.deps import ReadReplica, current_principal
from gisgov.api.headers import SecurityHeaders
from gisgov.config import Settings, get_settings
from gisgov.db.approle import app_database_url, check_app_login
from gisgov.db.engine import make_engine
from gisgov.db.replica import LagGate, replica_app_url
from gisgov.plugins import optional_modules

# Router modules; a capability adds its module here. Each exposes `router`.
# gzip: answers smaller than this are sent as they are; level 5 gives most of level 9's ratio on GeoJSON at a
# fraction of the CPU
GZIP_MIN_BYTES = 1024
GZIP_LEVEL = 5

ROUTER_MODULES = [
    "gisgov.api.routes.auth",
    "gisgov.api.routes.core",
    "gisgov.api.routes.maps",
    "gisgov.api.routes.ingest",
    "gisgov.api.routes.coverage",
    "gisgov.api.routes.grids",
    "gisgov.api.routes.jobs",
    "gisgov.api.routes.stats",
    "gisgov.api.routes.dashboard",
    "gisgov.api.routes.grid_editor",
    "gisgov.api.routes.admin",
    "gisgov.api.routes.events",
    "gisgov.api.routes.event_photos",
    "gisgov.api.routes.governance",
    "gisgov.api.routes.governance_page",
    "gisgov.api.routes.special",
    "gisgov.api.routes.tiles",
    "gisgov.api.routes.coverage_page",
    "gisgov.api.routes.context",
    "gisgov.api.routes.rollup",
]


# Routes anyone may call: the sign-in page and endpoints, the health probe, the favicon.
PUBLIC_PATHS = frozenset({"/login", "/api/auth/login", "/api/auth/token", "/health", "/favicon.ico"})


async def gate(request: Request) -> None:
    """App-wide dependency: every route but :data:`PUBLIC_PATHS` needs a signed-in principal; then no
    path or query parameter may hold a NUL byte (422, naming it), whatever the route."""
    route = request.scope.get("route")
    if getattr(route, "path", None) not in PUBLIC_PATHS:
        await current_principal(request)
    errors.check_no_nul(request)


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_TEXT = {"schema": {"type": "string"}}
_GEOJSON = {"schema": {"$ref": "#/components/schemas/FeatureCollection"}}
#: media types of the 200 answer beyond what the route's decorator declares, by operation
MEDIA_TYPES: dict[str, dict[str, dict]] = {
    "GET /api/export": {
        "application/geo+json": _GEOJSON,
        "text/csv": _TEXT,
        XLSX: _BINARY,
        "application/geopackage+sqlite3": _BINARY,
        "application/zip": _BINARY,
    },
    "GET /api/template/residents": {XLSX: _BINARY},
    "GET /api/export/jobs/{job_id}/file": {
        "application/geo+json": _GEOJSON,
        "text/csv": _TEXT,
        XLSX: _BINARY,
        "application/geopackage+sqlite3": _BINARY,
        "application/zip": _BINARY,
    },
    "GET /api/grids/plans/{community}/{version}/codes": {"application/json": {}, "text/csv": _TEXT},
}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "令牌 token from POST /api/auth/token"},
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": "gisgov_session",
        "description": "会话 page session from POST /api/auth/login (writes also need X-CSRF-Token)",
    },
}


def document(spec: dict) -> dict:
    """The schema as the app really answers (in place): sign-in (``security``) on every route but
    :data:`PUBLIC_PATHS`, the error answers of every operation (:func:`gisgov.api.errors.document_errors`),
    the 303 to /login of the pages, and the media types of file answers (:data:`MEDIA_TYPES`)."""
    spec.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    errors.document_errors(spec, PUBLIC_PATHS)
    for path, item in spec.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            if path not in PUBLIC_PATHS:
                op["security"] = [{"bearer": []}, {"session": []}]
                if method == "get" and not path.startswith("/api"):
                    op["responses"].setdefault(
                        "303",
                        {
                            "description": "未登录 not signed in: redirect to /login?next=<this page>",
                            "headers": {"Location": {"required": True, "schema": {"type": "string"}}},
                        },
                    )
            for answer in op["responses"].values():
                for media in (answer.get("content") or {}).values():
                    schema = media.get("schema") or {}
                    if "$ref" in schema and schema.get("type") == "string":
                        schema.pop("type")  # FastAPI's text placeholder beside a documented model (GeoJSON)
            extra = MEDIA_TYPES.get(f"{method.upper()} {path}")
            if extra:
                ok = op["responses"].setdefault("200", {"description": "OK"})
                content = ok.setdefault("content", {})
                if content.get("application/json", {}).get("schema") == {} and "application/json" not in extra:
                    content.pop("application/json")  # FastAPI's placeholder for a route answering files only
                for mt, media in extra.items():
                    content.setdefault(mt, media)
    return spec


def _read_replica(settings: Settings, engine: Engine) -> ReadReplica:
    """The read replica of ``GISGOV_READ_DATABASE_URL``: the app role's login (the main engine's user and
    password) on the replica's host, port and database, with the main engine's pool settings. Its login
    is checked now as the primary's is (an unsafe one refuses to start); a replica that cannot be reached
    now is checked on first contact, and reads go to the primary meanwhile."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    read_engine = make_engine(
        replica_app_url(settings.read_database_url or "", engine.url.render_as_string(hide_password=False)),
        pool_size=settings.pool_size,
        max_overflow=settings.pool_overflow,
        pool_timeout=settings.pool_timeout_s,
        connect_args={"connect_timeout": 5},
    )
    replica = ReadReplica(read_engine)
    if settings.read_max_lag_s > 0 or settings.read_max_lag_bytes is not None:
        replica.lag_gate = LagGate(
            engine,
            read_engine,
            max_lag_s=settings.read_max_lag_s or None,
            max_lag_bytes=settings.read_max_lag_bytes,
        )
    try:
        replica.check()
    except (OperationalError, InterfaceError) as exc:
        replica.failed(exc)
    except BaseException:
        read_engine.dispose()
        raise
    return replica


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        own = app.state.engine is None
        if own:
            app.state.engine = make_engine(
                app_database_url(settings),
                pool_size=settings.pool_size,
                max_overflow=settings.pool_overflow,
                pool_timeout=settings.pool_timeout_s,
            )
        try:
            check_app_login(app.state.engine)
        except BaseException:
            if own:
                app.state.engine.dispose()
            raise
        if settings.read_database_url and getattr(app.state, "read_replica", None) is None:
            app.state.read_replica = _read_replica(settings, app.state.engine)
        if getattr(app.state, "coverage", None) is None:
            from gisgov.coverage.service import CoverageService

            app.state.coverage = CoverageService()  # the walking model, built on its first use
        try:
            yield
        finally:
            replica = getattr(app.state, "read_replica", None)
            if replica is not None:
                replica.engine.dispose()
                app.state.read_replica = None
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

    plain_openapi = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            document(plain_openapi())
        return app.openapi_schema

    app.openapi = openapi

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_schema() -> dict:
        return app.openapi()

    app.openapi_url = "/openapi.json"  # for /docs; the route above is the one that serves it
    for mod in optional_modules(ROUTER_MODULES):
        app.include_router(mod.router)
        if hasattr(mod, "setup"):
            mod.setup(app)
    # last: the request budgets (body size, JSON shape, statement timeout, client gone) wrap everything,
    # and their database handler chains to the ones the routers installed
    budgets.install(app)
    # outermost: JSON, GeoJSON, HTML, CSV and tiles of 1 KiB or more are gzip-compressed for clients that accept it
    # (images, zip files and event streams are left alone: starlette's exclusions); large bodies compress in a
    # worker thread
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MIN_BYTES, compresslevel=GZIP_LEVEL)
    return app
