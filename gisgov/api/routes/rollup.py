"""Province roll-up 省级汇总 in the app: read-only routes over the tables ``gisgov rollup load`` fills
(:mod:`gisgov.rollup.view`), and the ``/province`` page (``web/province``).

- ``GET /api/rollup/cities``: one row per loaded city (figures, shares, export time, stale marker) and the
  province totals (exact sums; a sum over a suppressed figure is a lower bound ``"≥N"``).
- ``GET /api/rollup/units?level=street|community[&city=<code>]``: the streets or communities of one city (or
  of all), with their figures and shares, and the sums over them.
- ``GET /api/rollup/features?level=city|street|community[&city=<code>]``: the outlines the cities exported
  (WGS84 GeoJSON), with headline counts; a city's outline is the union of its streets'.

Who: the roll-up spans cities, so it is for accounts bound to the top of the hierarchy only (scope ``''``,
the whole-city accounts, i.e. admin) holding ``read_aggregates``. Any other account gets **403** (rule
``out_of_scope``), like the city-wide imports: the roll-up is not a node with a code one could probe (the
404-for-outside rule hides objects by code; here there is nothing to hide, the route and the fact that a
province view exists are public in the API description), and 403 tells the user to ask a province account.
The page itself is served to every signed-in account with ``read_aggregates`` and shows that refusal.

Aggregates only: the tables have no column for a person (migration 0016)."""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Connection

from gisgov.api.deps import DB, require
from gisgov.api.pages import LeafletPage
from gisgov.api.schemas.geojson import GeoJSONResponse, geojson_ok
from gisgov.api.schemas.rollup import ProvinceView, RollupFeatures, RollupUnits
from gisgov.errors import Forbidden
from gisgov.rollup import view
from gisgov.security.roles import Perm, Principal

router = APIRouter(tags=["rollup"])
PAGE = LeafletPage("province", "省级汇总 province roll-up")
GEOJSON = "application/geo+json"
_CITY = Query(
    None, pattern=r"^[0-9]{2,12}$", description="城市代码 one city's code (2–12 digits); omitted = every city"
)
_REFUSED: dict[int | str, dict[str, Any]] = {
    403: {"description": "仅限全市（省级）账号 accounts bound to the top of the hierarchy only"}
}


async def province_reader(p: Principal = Depends(require(Perm.read_aggregates))) -> Principal:
    """Dependency: a principal with ``read_aggregates`` bound to the top of the hierarchy (scope '')."""
    if p.scope_code:
        raise Forbidden(
            f"无权限 not allowed: 省级汇总跨多个城市，仅限全市（省级）账号 the province roll-up spans cities: "
            f"accounts bound to the top of the hierarchy only (your scope {p.scope_code}) (rule: out_of_scope)"
        )
    return p


@router.get(
    "/api/rollup/cities",
    summary="省级汇总 Province view: each city's exported figures and the province totals",
    response_model=ProvinceView,
    responses=_REFUSED,
)
def rollup_cities(
    stale_hours: int = Query(
        view.STALE_AFTER_H, ge=1, le=8760, description="过期阈值（小时）mark exports older than this as stale"
    ),
    p: Principal = Depends(province_reader),
    conn: Connection = DB,
) -> dict[str, Any]:
    """Per city: figures as its export carries them (special groups suppressed as the aggregate roles see
    them), shares, export time, age and ``stale``. Province: exact sums, shares recomputed from the sums."""
    return view.province(conn, stale_hours=stale_hours)


@router.get(
    "/api/rollup/units",
    summary="省级汇总：街道或社区 Streets or communities of the loaded cities",
    response_model=RollupUnits,
    responses={**_REFUSED, 404: {"description": "no roll-up loaded for that city"}},
)
def rollup_units(
    level: Literal["street", "community"] = Query("street", description="层级 street | community"),
    city: str | None = _CITY,
    p: Principal = Depends(province_reader),
    conn: Connection = DB,
) -> dict[str, Any]:
    return view.units(conn, level, city)


@router.get(
    "/api/rollup/features",
    summary="省级汇总范围 Outlines of the loaded cities, streets or communities (WGS84 GeoJSON)",
    response_class=GeoJSONResponse,
    responses={
        **geojson_ok(RollupFeatures, "汇总范围 GeoJSON outlines"),
        **_REFUSED,
        404: {"description": "no roll-up loaded for that city"},
        422: {},
    },
)
def rollup_features(
    level: Literal["city", "street", "community"] = Query("city", description="层级 city | street | community"),
    city: str | None = _CITY,
    p: Principal = Depends(province_reader),
    conn: Connection = DB,
) -> Response:
    doc = view.features(conn, level, city)
    return Response(json.dumps(doc, ensure_ascii=False, separators=(",", ":")), media_type=GEOJSON)


@router.get(
    "/province",
    response_class=HTMLResponse,
    tags=["maps"],
    summary="省级汇总 Province page: per-city table, province totals, stale exports, map of the cities",
)
def province_page(request: Request, p: Principal = Depends(require(Perm.read_aggregates))) -> HTMLResponse:
    return PAGE.response(request.app.state.settings)


def setup(app: FastAPI) -> None:
    """Serve ``web/province`` (the page's own JS/CSS) at /static/province."""
    PAGE.mount(app)
