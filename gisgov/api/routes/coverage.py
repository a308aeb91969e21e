"""Service circles 便民服务圈: summary, service areas, gaps, siting, what-if, the map page.

The walking graph lives in memory on ``app.state.coverage`` (a
:class:`gisgov.coverage.service.CoverageService`), built on the first request and rebuilt only
when road_edge / building / gate data change. All database work goes through ``db``.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import Connection

from gisgov.api.deps import DB
from gisgov.coverage.service import CoverageService
from gisgov.errors import InvalidInput

router = APIRouter(tags=["coverage"])
GEOJSON = "application/geo+json"


def service(request: Request) -> CoverageService:
    svc = getattr(request.app.state, "coverage", None)
    if svc is None:
        svc = request.app.state.coverage = CoverageService()
    return svc


def _geojson(gdf) -> Response:
    return Response(gdf.to_crs(4326).to_json(drop_id=True, na="null"), media_type=GEOJSON)


@router.get("/api/coverage/catalog", summary="生活圈目录 Circles, profiles, categories, requirement sets")
def coverage_catalog(svc: CoverageService = Depends(service)) -> dict:
    cat = svc.catalog()
    return {
        "circles": [c.__dict__ for c in cat.circles],
        "profiles": [p.__dict__ for p in cat.profiles],
        "budgets": cat.budgets().astype(object).where(cat.budgets().notna(), None).to_dict("records"),
        "categories": [{"code": c.code, "name_zh": c.name_zh, "name_en": c.name_en,
                        "select": [{"category": s.category, "kinds": list(s.kinds)} for s in c.select]}
                       for c in cat.categories],
        "standards": [{"code": s.code, "name_zh": s.name_zh, "name_en": s.name_en, "applies_to": s.applies_to,
                       "tiers": {t: list(cs) for t, cs in s.tiers}, "source": s.source} for s in cat.standards],
        "distance_cap_m": cat.distance_cap_m,
    }


@router.get("/api/coverage/summary", summary="覆盖率 Coverage of one street / community / grid / compound")
def summary(level: Literal["street", "community", "grid", "compound"] = Query(..., description="Level of the area."),
            code: str = Query(..., description="Its code."),
            profile: str | None = Query(None, description="Walking profile (default: all)."),
            conn: Connection = DB, svc: CoverageService = Depends(service)) -> dict:
    """Share of buildings, households and residents within each circle for every category and
    profile, complete circles per requirement set, special groups beyond their circle."""
    return svc.summary(conn, level, code, profile)


@router.get("/api/coverage/areas", summary="服务圈 Service area of a category (or one facility) as GeoJSON")
def service_areas(category: str = Query(...), circle: str = Query("c15"), profile: str = Query("standard"),
                  facility_id: int | None = Query(None, description="One facility instead of the whole category."),
                  conn: Connection = DB, svc: CoverageService = Depends(service)) -> Response:
    """Reachable street parts (partial edges included) and access legs within the budget,
    buffered by the catalog's area width and dissolved; buildings beyond the budget are cut out."""
    return _geojson(svc.service_area(conn, category, circle, profile, facility_id))


@router.get("/api/coverage/gaps", summary="服务盲区 Gap areas: buildings beyond the circle, grouped")
def gaps(category: str = Query(...), circle: str = Query("c15"), profile: str = Query("standard"),
         level: str | None = Query(None), code: str | None = Query(None),
         conn: Connection = DB, svc: CoverageService = Depends(service)) -> Response:
    return _geojson(svc.gaps(conn, category, circle, profile, level, code))


class SiteRequest(BaseModel):
    category: str
    k: int | None = Field(3, ge=1, description="Number of new sites (maximal covering); null with fewest=true.")
    fewest: bool = Field(False, description="Set covering: fewest sites covering all coverable buildings.")
    circle: str = "c15"
    profile: str = "standard"
    level: str | None = None
    code: str | None = None
    candidates: Literal["buildings", "nodes"] = "buildings"
    points: list[tuple[float, float]] | None = Field(None, description="Candidate sites [lon, lat] (e.g. vacant parcels).")


@router.post("/api/coverage/site", summary="选址 Best new sites (MCLP) or fewest sites (LSCP)")
def site(req: SiteRequest, conn: Connection = DB, svc: CoverageService = Depends(service)) -> dict:
    return svc.site(conn, req.category, k=None if req.fewest else (req.k or 3), circle=req.circle, profile=req.profile,
                    level=req.level, code=req.code, candidates=req.candidates, points=req.points)


class WhatIfRequest(BaseModel):
    category: str
    op: Literal["add", "move", "remove"]
    facility_id: int | None = None
    lon: float | None = None
    lat: float | None = None
    commit: bool = Field(False, description="Write the edit and update the stored results.")
    level: str | None = None
    code: str | None = None
    name: str | None = Field(None, description="Name of an added facility (commit).")
    kind: str | None = Field(None, description="facility.kind of an added facility, e.g. 社区卫生服务站 (commit).")


@router.post("/api/coverage/whatif", summary="假设 Add / move / remove one facility and see the change")
def whatif(req: WhatIfRequest, conn: Connection = DB, svc: CoverageService = Depends(service)) -> dict:
    return svc.whatif(conn, req.category, req.op, facility_id=req.facility_id, lon=req.lon, lat=req.lat,
                      commit=req.commit, level=req.level, code=req.code, name=req.name, kind=req.kind)


@router.post("/api/coverage/compute", summary="计算 Compute and store coverage (all or some categories)")
def compute(category: list[str] | None = Query(None), conn: Connection = DB,
            svc: CoverageService = Depends(service)) -> dict:
    r = svc.compute(conn, category)
    return {"run_id": r.run_id, "method": r.method, "buildings": r.buildings, "facilities": r.facilities,
            "categories": r.categories, "rows_written": r.rows_written, "seconds": r.seconds, "snap": r.snap,
            "components": r.components.to_dict("records")}


@router.get("/coverage/map", response_class=HTMLResponse, tags=["maps"],
            summary="服务圈地图 Map of one category: facilities, service area, buildings by distance, gaps, sites")
def coverage_map(request: Request, category: str = Query(...), circle: str = Query("c15"),
                 profile: str = Query("standard"), sites: int = Query(3, ge=0, le=20),
                 level: str | None = Query(None), code: str | None = Query(None),
                 conn: Connection = DB, svc: CoverageService = Depends(service)) -> HTMLResponse:
    from gisgov.coverage.mapping import coverage_map_html
    from gisgov.maps.assets import require_assets

    require_assets(request.app.state.settings.web_dir)
    if (level is None) != (code is None):
        raise InvalidInput("level and code go together (rule: area_pair)")
    return HTMLResponse(coverage_map_html(svc, conn, category, circle, profile, sites=sites, level=level, code=code))


def setup(app: FastAPI) -> None:
    """The in-memory coverage service (graph built lazily on the first request)."""
    app.state.coverage = CoverageService()
