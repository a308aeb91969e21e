"""Drill-down statistics 统计下钻 for the leaders' dashboard: ``/api/stats`` (whole city) and
``/api/stats/{level}/{code}`` (street, community, grid, compound), each with the same indicators for
every direct child; ``…/features`` gives the unit's outline and its children's polygons.

Aggregates only (counts and shares): no name, ID number or phone of any resident or staff member.
All database work goes through the ``db`` dependency (one transaction per request).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import Connection

from gisgov.api.deps import DB
from gisgov.coverage.catalog import CATALOG_FILE, Catalog, load_catalog
from gisgov.stats import service
from gisgov.stats.circles import DEFAULT_PROFILE
from gisgov.stats.units import CITY, check_level

router = APIRouter(tags=["stats"])
GEOJSON = "application/geo+json"
_PROFILE = Query(DEFAULT_PROFILE, description="步行方式 walking profile of the service-circle figures (standard | elderly)")
_cache: dict[Path, tuple[float, Catalog]] = {}


def circle_catalog(request: Request) -> Catalog | None:
    """The service-circle catalog (re-read when the file changes); ``None`` when there is none."""
    path = Path(request.app.state.settings.layers_dir) / CATALOG_FILE
    try:
        stamp = path.stat().st_mtime
    except OSError:
        return None
    hit = _cache.get(path)
    if hit is None or hit[0] != stamp:
        hit = _cache[path] = (stamp, load_catalog(path))
    return hit[1]


@router.get("/api/stats", summary="全市统计 Whole-city indicators and each street's")
def city_stats(request: Request, profile: str = _PROFILE, conn: Connection = DB) -> dict:
    """户数 households, 人数 residents, 楼栋 buildings, 小区 compounds and 老旧小区率, age bands
    (0–14, 15–59, 60+, 80+), 特殊人群 per group, 网格 grids and 网格员 staff per role, and (when
    computed) the 15-minute circle shares; the same block for every street in ``children``."""
    return service.unit_stats(conn, CITY, None, catalog=circle_catalog(request), profile=profile)


@router.get("/api/stats/features", summary="全市下级范围 Street polygons (WGS84 GeoJSON)",
            response_class=Response, responses={200: {"content": {GEOJSON: {}}}})
def city_features(conn: Connection = DB) -> Response:
    return Response(service.unit_features(conn, CITY, None), media_type=GEOJSON)


@router.get("/api/stats/{level}/{code}", summary="单元统计 Indicators of one unit and of each direct child",
            responses={404: {"description": "unknown level or code"}, 422: {"description": "malformed code"}})
def unit_stats(request: Request, level: str, code: str, profile: str = _PROFILE,
               conn: Connection = DB) -> dict:
    """``level``: street | community | grid | compound. Children: street → communities, community →
    its current grids (or its compounds when it has no grids), grid → compounds (the part of each
    compound inside the grid, ``partial``), compound → none. ``children.rest`` sums buildings in no child."""
    check_level(level)
    return service.unit_stats(conn, level, code, catalog=circle_catalog(request), profile=profile)


@router.get("/api/stats/{level}/{code}/features", summary="单元及下级范围 Unit outline and children polygons",
            response_class=Response, responses={200: {"content": {GEOJSON: {}}}, 404: {}, 422: {}})
def unit_features(level: str, code: str, conn: Connection = DB) -> Response:
    """GeoJSON FeatureCollection (RFC 7946, WGS84): ``role: unit`` (the outline) and ``role: child``
    features with ``level``, ``code`` and ``name`` (current grids only, never draft plans)."""
    check_level(level)
    return Response(service.unit_features(conn, level, code), media_type=GEOJSON)
