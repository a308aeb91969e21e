"""Core API: /health, /api/hierarchy, /api/layers, /api/layers/{level}, /api/{level}/{code},
and the OpenAPI docs at /docs with Swagger UI served by the app (no CDN).

All database work goes through the ``db`` dependency (one connection, one transaction, the
caller's scope set for row-level security). Layers, their columns and who may see them come from
the catalog (``GISGOV_LAYERS_DIR``): an account sees a layer when its role's catalog level reaches
the layer's ``min_role`` and, for personal layers (residents), it holds ``read_personal``
(planners and viewers: 403). Every list holds only the caller's area (see
:mod:`gisgov.api.queries`); an object outside it answers 404, never 403, so codes cannot be probed.
Each read of a personal layer (a page or one resident) writes one ``read_personal`` audit row.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import Connection
from sqlalchemy.exc import InterfaceError, OperationalError

from gisgov.api import queries
from gisgov.api.answers import cached, model_json
from gisgov.api.deps import (
    DB,
    DB_UNSCOPED,
    ReadReplica,
    client_addr,
    current_principal,
    in_scope_or_404,
    optional_principal,
)
from gisgov.api.errors import error_response
from gisgov.api.links import request_link
from gisgov.api.params import MAX_OFFSET, check_page, parse_bbox
from gisgov.api.schemas.core import FeatureDetail, Health, Hierarchy, LayerInfo, LayerPage
from gisgov.api.schemas.geojson import GeoJSONResponse, geojson_ok
from gisgov.layers import Catalog, catalog
from gisgov.maps.assets import asset_url
from gisgov.security import audit as audit_log
from gisgov.security.roles import Principal

router = APIRouter()
_log = logging.getLogger(__name__)
GEOJSON = "application/geo+json"


def get_catalog(request: Request) -> Catalog:
    return catalog(request.app.state.settings.layers_dir)


def audit_personal_read(request: Request, conn: Connection, p: Principal, *, object: str, count: int) -> None:
    """One ``read_personal`` audit row for this request, written on the request's own connection:
    it commits with the read (a read whose transaction fails returned nothing) and never needs a
    second pooled connection while this one is held (no pool exhaustion under load)."""
    audit_log.record(
        conn, "read_personal", actor=p, object=object, client=client_addr(request), detail={"count": count}
    )


@router.get(
    "/health",
    tags=["system"],
    summary="健康检查 Health: database, PostGIS, schema, dataset",
    response_model=Health,
    response_model_exclude_unset=True,
)
def health(request: Request, conn: Connection = DB_UNSCOPED, p: Principal | None = Depends(optional_principal)) -> dict:
    """``{"status": "ok", "postgis": "3.3.2", "schema": "<alembic revision>"}``, plus ``"dataset"`` (its
    label, counts and notes) for a signed-in caller only, and ``"replica"`` when a read replica is configured
    (:func:`replica_health`); 503 when the database cannot be reached."""
    out = queries.health(conn)
    if p is None:
        out.pop("dataset", None)
    replica = getattr(request.app.state, "read_replica", None)
    if replica is not None:
        out["replica"] = replica_health(conn, replica)
    return out


def replica_health(conn: Connection, replica: ReadReplica) -> dict[str, Any]:
    """The read replica beside the primary: ``{"status": "ok", "in_recovery": true, "lag_bytes": n}`` (WAL the
    replica has not replayed yet), or ``{"status": "unreachable"}`` (reads then go to the primary)."""
    from sqlalchemy import text

    from gisgov.db.replica import lsn_int

    if replica.disabled is not None:
        return {"status": "disabled"}
    try:
        with replica.engine.connect() as rc:
            row = rc.execute(text("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text")).one()
    except (OperationalError, InterfaceError):
        return {"status": "unreachable"}
    in_recovery, replayed = bool(row[0]), lsn_int(row[1])
    out: dict[str, Any] = {"status": "ok", "in_recovery": in_recovery}
    if in_recovery and replayed is not None:
        primary = lsn_int(conn.execute(text("SELECT pg_current_wal_lsn()::text")).scalar())
        out["lag_bytes"] = max((primary or 0) - replayed, 0)
    if replica.lag_gate is not None:
        out["lag_gate"] = replica.lag_gate.status()
    return out


@router.get(
    "/api/hierarchy",
    tags=["hierarchy"],
    summary="层级树 Street → community → grid tree with counts",
    response_model=Hierarchy,
    response_model_exclude_unset=True,
)
def hierarchy(request: Request, p: Principal = Depends(current_principal), conn: Connection = DB) -> Response:
    """The streets, communities and grids of the caller's area (and the street above a community),
    each node with ``households`` (户数), ``residents`` (人数) and ``buildings`` (楼栋数) counted
    from the caller's area only."""
    return cached(request, conn, p, lambda: model_json(Hierarchy, queries.hierarchy(conn, queries.Scope.of(p))))


@router.get(
    "/api/layers",
    tags=["layers"],
    summary="图层目录 Layer catalog visible to the requester",
    response_model=list[LayerInfo],
    response_model_exclude_unset=True,
)
def layer_catalog(request: Request, p: Principal = Depends(current_principal)) -> list[dict]:
    return [
        {
            "name": lyr.name,
            "title": lyr.title.model_dump(),
            "geometry": lyr.geometry_kind,
            "parent": lyr.parent.level if lyr.parent else None,
            "style": lyr.style.leaflet(),
            "min_zoom": lyr.min_zoom,
            "counts": bool(lyr.counts),
            "properties": lyr.properties,
            "href": f"/api/layers/{lyr.name}",
        }
        for lyr in get_catalog(request).visible_for(p)
    ]


def _layer_route(max_limit: int):
    """``GET /api/layers/{level}`` with ``limit`` bounded by the app's ``GISGOV_MAX_PAGE_LIMIT`` (so the
    schema states the real bound) and ``offset`` by :data:`MAX_OFFSET`."""

    def layer_features(
        request: Request,
        level: str,
        bbox: str | None = Query(
            None,
            description="minx,miny,maxx,maxy in WGS84 lon/lat degrees (minx<=maxx, "
            "miny<=maxy, lon in [-180, 180], lat in [-90, 90])",
            examples=["117.1,31.7,117.3,31.9"],
        ),
        limit: int | None = Query(
            None,
            ge=1,
            le=max_limit,
            description=f"page size (default GISGOV_PAGE_LIMIT, max GISGOV_MAX_PAGE_LIMIT = {max_limit})",
        ),
        offset: int = Query(0, ge=0, le=MAX_OFFSET, description="features to skip"),
        p: Principal = Depends(current_principal),
        conn: Connection = DB,
    ) -> Response:
        """Features of the caller's area only (``numberMatched`` counts those too)."""
        settings = request.app.state.settings
        cat = get_catalog(request)
        layer = cat.for_principal(level, p)
        box = parse_bbox(bbox)
        limit, offset = check_page(limit, offset, default=settings.page_limit, maximum=settings.max_page_limit)

        def make() -> Response:
            page = queries.layer_page(conn, cat, layer, bbox=box, limit=limit, offset=offset, scope=queries.Scope.of(p))
            if layer.personal:
                audit_personal_read(request, conn, p, object=f"layer:{layer.name}", count=page.number_returned)
            links = [{"rel": "self", "type": GEOJSON, "href": request_link(request)}]
            if page.number_matched is not None and offset + page.number_returned < page.number_matched:
                links.append(
                    {"rel": "next", "type": GEOJSON, "href": request_link(request, offset=offset + limit, limit=limit)}
                )
            if offset > 0:
                links.append(
                    {
                        "rel": "prev",
                        "type": GEOJSON,
                        "href": request_link(request, offset=max(0, offset - limit), limit=limit),
                    }
                )
            body = queries.feature_collection_json(page, links=links, extra={"layer": layer.name})
            return Response(content=body, media_type=GEOJSON)

        if layer.personal:  # read and audited on every request
            return make()
        return cached(request, conn, p, make, variant=id(cat))

    return layer_features


def _detail_route(name: str, code_pattern: str):
    code_param = Path(
        description=f"the {name}'s code (must match {code_pattern})", json_schema_extra={"pattern": code_pattern}
    )  # documented; checked by Layer.check_code

    def feature_detail(
        request: Request, code: str = code_param, p: Principal = Depends(current_principal), conn: Connection = DB
    ) -> Response:
        cat = get_catalog(request)
        layer = cat.for_principal(name, p)
        layer.check_code(code)
        if layer.scope_by == "code":
            in_scope_or_404(p, code, f"{layer.title.zh} {layer.title.en.lower()}")
        scope = queries.Scope.of(p)
        feat = queries.feature(conn, cat, layer, code, scope=scope)
        feat["children"] = queries.children(conn, cat, layer, code, lambda lyr: lyr.allowed(p), scope=scope)
        if layer.personal:
            audit_personal_read(request, conn, p, object=f"{layer.name}:{code}", count=1)
        return Response(content=json.dumps(feat, ensure_ascii=False), media_type=GEOJSON)

    feature_detail.__name__ = f"{name}_detail"
    return feature_detail


@router.get("/docs", include_in_schema=False)
def swagger_docs(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url or "/openapi.json",
        title=f"{request.app.title} — docs",
        swagger_js_url=asset_url("swagger_js"),
        swagger_css_url=asset_url("swagger_css"),
        swagger_favicon_url=asset_url("swagger_favicon"),
        swagger_ui_parameters={"validatorUrl": None},
    )


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    """503 that names no host, port or user (the details go to the server log only)."""
    orig = getattr(exc, "orig", None) or exc
    _log.warning(
        "database unavailable on %s %s: %s",
        request.method,
        request.url.path,
        str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__,
    )
    return error_response(
        503,
        "数据库不可用，请稍后重试 database unavailable, retry shortly",
        "DatabaseUnavailable",
        headers={"Retry-After": "5"},
    )


def setup(app: FastAPI) -> None:
    """One ``GET /api/{level}/{code}`` per catalog layer (explicit paths, so other routers'
    ``/api/...`` routes are never shadowed), and 503 for an unreachable database."""
    settings = app.state.settings
    app.add_api_route(
        "/api/layers/{level}",
        _layer_route(settings.max_page_limit),
        methods=["GET"],
        tags=["layers"],
        summary="图层要素 GeoJSON features of one layer (WGS84 lon/lat), bbox filter and paging",
        response_class=GeoJSONResponse,
        responses={
            **geojson_ok(LayerPage, "GeoJSON FeatureCollection (RFC 7946), paged"),
            403: {"description": "the account may not see this layer"},
            404: {"description": "unknown layer"},
            422: {"description": "bad bbox / limit / offset"},
        },
    )
    cat = catalog(settings.layers_dir)
    for lyr in cat:
        app.add_api_route(
            f"/api/{lyr.name}/{{code}}",
            _detail_route(lyr.name, lyr.code_pattern),
            methods=["GET"],
            tags=["layers"],
            summary=f"{lyr.title.zh} {lyr.title.en}: one feature by code, with its children",
            response_class=GeoJSONResponse,
            responses={
                **geojson_ok(FeatureDetail, "GeoJSON Feature + children summary"),
                403: {"description": "the account may not see this layer"},
                404: {"description": "unknown code, or outside the caller's area"},
                422: {"description": "malformed code"},
            },
        )
    for exc_type in (OperationalError, InterfaceError):
        if exc_type not in app.exception_handlers:
            app.add_exception_handler(exc_type, _database_down)
