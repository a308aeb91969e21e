"""Drill-down statistics 统计下钻 for the leaders' dashboard: ``/api/stats`` (whole city) and
``/api/stats/{level}/{code}`` (street, community, grid, compound), each with the same indicators for
every direct child; ``…/features`` gives the unit's outline and its children's polygons.

Who sees what: every figure counts only the caller's area (the node the account is bound to; the
database's row-level security limits the personal-data tables as well); a unit outside it answers
404 like an unknown code, children outside it are not listed, and a unit that only overlaps the area
(the city for a street account, the street for a community account) is counted over its part inside
and marked ``area.limited``. Roles without ``read_special_groups`` (planner, viewer; ``Principal.exact_special_groups``) get special-group
counts with small cells suppressed (``"<5"``, complementary ``"≥5"``; :mod:`gisgov.security.suppress`);
roles with it get exact numbers, and on a grid its staff (``staff_list``: role, name, masked phone —
never a clear phone).

Aggregates only otherwise: no resident's name, ID number or phone. All database work goes through
the ``db`` dependency (one transaction per request, scoped to the caller).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import Connection

from gisgov.api.answers import cached, model_json
from gisgov.api.deps import DB, current_principal, in_scope_or_404
from gisgov.api.schemas.geojson import GeoJSONResponse, geojson_ok
from gisgov.api.schemas.stats import UnitFeatures, UnitStats
from gisgov.coverage.catalog import CATALOG_FILE, Catalog, load_catalog
from gisgov.errors import NotFound
from gisgov.security.roles import Perm, Principal
from gisgov.stats import service
from gisgov.stats.circles import DEFAULT_PROFILE
from gisgov.stats.units import CITY, LEVEL_LABELS, check_code, check_level

router = APIRouter(tags=["stats"])
GEOJSON = "application/geo+json"
_PROFILE = Query(
    DEFAULT_PROFILE, description="步行方式 walking profile of the service-circle figures (standard | elderly)"
)
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


def _options(request: Request, p: Principal) -> dict:
    exact = p.exact_special_groups
    return {
        "scope": p.scope_code,
        "staff_names": p.can(Perm.read_personal),
        "small_cell_k": None if exact else request.app.state.settings.small_cell_k,
    }


def _check(p: Principal, level: str, code: str) -> None:
    """404 outside the caller's area, worded exactly like an unknown code (nothing to probe)."""
    check_code(level, code)
    zh, en = LEVEL_LABELS[level]
    try:
        in_scope_or_404(p, code, f"{zh} {en.lower()}")
    except NotFound:
        raise NotFound(f"未找到{zh} {en.lower()} not found: {level} {code}") from None


@router.get(
    "/api/stats",
    summary="全市统计 Whole-city indicators and each street's",
    response_model=UnitStats,
    response_model_exclude_unset=True,
)
def city_stats(
    request: Request, profile: str = _PROFILE, p: Principal = Depends(current_principal), conn: Connection = DB
) -> Response:
    """户数 households, 人数 residents, 楼栋 buildings, 小区 compounds and 老旧小区率, age bands
    (0–14, 15–59, 60+, 80+), 特殊人群 per group, 网格 grids and 网格员 staff per role, and (when
    computed) the 15-minute circle shares; the same block for every street in ``children`` (only the
    streets of the caller's area)."""
    return cached(
        request,
        conn,
        p,
        lambda: model_json(
            UnitStats,
            service.unit_stats(
                conn, CITY, None, catalog=circle_catalog(request), profile=profile, **_options(request, p)
            ),
        ),
    )


@router.get(
    "/api/stats/features",
    summary="全市下级范围 Street polygons (WGS84 GeoJSON)",
    response_class=GeoJSONResponse,
    responses=geojson_ok(UnitFeatures, "街道范围 GeoJSON street polygons"),
)
def city_features(request: Request, p: Principal = Depends(current_principal), conn: Connection = DB) -> Response:
    return cached(
        request,
        conn,
        p,
        lambda: Response(service.unit_features(conn, CITY, None, scope=p.scope_code), media_type=GEOJSON),
    )


@router.get(
    "/api/stats/{level}/{code}",
    summary="单元统计 Indicators of one unit and of each direct child",
    response_model=UnitStats,
    response_model_exclude_unset=True,
    responses={
        404: {"description": "unknown level or code, or outside the caller's area"},
        422: {"description": "malformed code"},
    },
)
def unit_stats(
    request: Request,
    level: str,
    code: str,
    profile: str = _PROFILE,
    p: Principal = Depends(current_principal),
    conn: Connection = DB,
) -> Response:
    """``level``: street | community | grid | compound. Children: street → communities, community →
    its current grids (or its compounds when it has no grids), grid → compounds (the part of each
    compound inside the grid, ``partial``), compound → none. ``children.rest`` sums buildings in no child."""
    check_level(level)
    _check(p, level, code)
    return cached(
        request,
        conn,
        p,
        lambda: model_json(
            UnitStats,
            service.unit_stats(
                conn, level, code, catalog=circle_catalog(request), profile=profile, **_options(request, p)
            ),
        ),
    )


@router.get(
    "/api/stats/{level}/{code}/features",
    summary="单元及下级范围 Unit outline and children polygons",
    response_class=GeoJSONResponse,
    responses={**geojson_ok(UnitFeatures, "单元及下级 GeoJSON outline and children"), 404: {}, 422: {}},
)
def unit_features(
    request: Request, level: str, code: str, p: Principal = Depends(current_principal), conn: Connection = DB
) -> Response:
    """GeoJSON FeatureCollection (RFC 7946, WGS84): ``role: unit`` (the outline) and ``role: child``
    features with ``level``, ``code`` and ``name`` (current grids only, never draft plans)."""
    check_level(level)
    _check(p, level, code)
    return cached(
        request,
        conn,
        p,
        lambda: Response(service.unit_features(conn, level, code, scope=p.scope_code), media_type=GEOJSON),
    )
