"""Service circles 便民服务圈: summary, service areas, gaps, siting, what-if, the map page.

The walking graph lives in memory on ``app.state.coverage`` (a
:class:`gisgov.coverage.service.CoverageService` made in the app's lifespan), built on the first request
and rebuilt only when road_edge / building / gate data change. Reads (summary, areas, gaps, sites, the
map) run concurrently; filling the caches, computing and committed edits hold the service alone. All database work goes through ``db``.

Access: reading (catalog, summary, areas, gaps, map) needs ``read_aggregates``; siting, what-if and
compute need ``run_analyses`` (a committed what-if is audited ``facility_edit``, compute ``analysis``).
The model is shared by every caller, so each route widens its transaction to the whole city
(:func:`gisgov.api.deps.system_scope`) before the service loads it, and limits what it returns to the
caller's area: a unit outside it answers 404; areas, gaps, sites and map layers are cut to the area.
Special-group figures reach roles without ``read_special_groups`` (and units beyond an account's own
node) only with small cells suppressed, with the same statuses as the statistics (one decision over
the caller's area, :mod:`gisgov.stats.privacy`). No route returns a per-person row.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import Connection, text

from gisgov.api.answers import cached, model_json
from gisgov.api.deps import DB, audit, require, system_scope
from gisgov.api.json_only import json_only
from gisgov.api.schemas.coverage import (
    CommunityFigures,
    ComputeOut,
    CoverageCatalog,
    CoverageSummary,
    SiteResult,
    WhatIfResult,
)
from gisgov.api.schemas.geojson import FeatureCollection, GeoJSONResponse, geojson_ok
from gisgov.config import Settings
from gisgov.coverage import cache as coverage_cache
from gisgov.coverage import store
from gisgov.coverage.cache import CoverageCache, Entry, Key
from gisgov.coverage.figures import group_figures
from gisgov.coverage.service import CoverageService, ScopedCoverage
from gisgov.coverage.siting import check_points
from gisgov.coverage.whatif import check_lonlat
from gisgov.crs import GEOJSON_PRECISION, WGS84
from gisgov.errors import GisgovError, InvalidInput, NotFound
from gisgov.security import suppress
from gisgov.security.roles import Perm, Principal
from gisgov.stats import privacy
from gisgov.stats import queries as stats_queries

router = APIRouter(tags=["coverage"], dependencies=[Depends(json_only)])
GEOJSON = "application/geo+json"
READ = Depends(require(Perm.read_aggregates))
ANALYSE = Depends(require(Perm.run_analyses))


_made = threading.Lock()


def service(request: Request) -> CoverageService:
    """The app's coverage service, made in its lifespan (``app.state.coverage``); an app used without its
    lifespan (a test client outside ``with``) gets one made here, once."""
    svc = getattr(request.app.state, "coverage", None)
    if svc is None:
        with _made:
            svc = getattr(request.app.state, "coverage", None)
            if svc is None:
                svc = request.app.state.coverage = CoverageService()
    return svc


def _geojson(gdf) -> Response:
    return GeoJSONResponse(gdf.to_crs(WGS84).to_json(drop_id=True, na="null"))


def _unit_in_area(p: Principal, level: str | None, code: str | None) -> None:
    """A unit asked for must lie inside the caller's area (ancestors excluded): 404 otherwise."""
    if (level is None) != (code is None):
        raise InvalidInput("层级与编码须同时给出 level and code go together (rule: area_pair)")
    if code is not None and not p.contains(str(code)):
        raise NotFound(f"未找到 {level} not found: {code} (rule: area_has_buildings)")


def _atom_beyond(svc: CoverageService, conn: Connection, area: str) -> tuple[pd.DataFrame, dict]:
    """Each catalog rule's members and beyond counts per finest cell (community, grid, compound) of
    the buildings in ``area``: long frame (atom key, group_code, category, profile, circle,
    residents, beyond) and atom key → (community, grid, compound)."""
    with svc.reading(conn):  # one consistent snapshot of the shared model, read alongside other readers
        t, cat = svc.table(conn), svc.catalog()
        b, groups = svc.model.buildings, svc.groups
        b = b[svc.scope_mask(area)]
    parts = [b[c].astype("string").fillna("") for c in ("community", "grid", "compound")]
    atom = parts[0] + "|" + parts[1] + "|" + parts[2]
    keys = {k: tuple(k.split("|")) for k in atom.unique()}
    frame = pd.DataFrame({"id": b["id"].to_numpy(), "atom": atom.to_numpy(dtype=object)})
    return group_figures(frame, groups, t, cat, levels=("atom",)), keys


def special_groups_view(
    conn: Connection, svc: CoverageService, p: Principal, level: str, code: str, rows: list[dict], k: int
) -> list[dict]:
    """Special-group figures as a caller may see them. Roles with ``exact_special_groups`` see exact
    counts of units within their own node. Everyone else sees them as the statistics show them:
    the statuses are decided once over the caller's whole area (:mod:`gisgov.stats.privacy`), so a
    group's members (``residents``) look exactly as on ``/api/stats`` for the same unit, and the
    ``beyond`` counts are protected as sub-counts of those totals over every split of the area
    (``"<k"`` small, ``"≥k"`` complementary, ``None`` left out); ``suppressed`` names the fields
    not shown exactly."""
    if p.exact_special_groups and str(code).startswith(p.scope_code):
        return rows
    if not rows:
        return []
    area = p.area_prefix
    rules = {(r["group_code"], r["category"], r["profile"], r["circle"]) for r in rows}
    group_codes = sorted({g for g, *_ in rules})
    u = privacy.build(stats_queries.cells(conn, stats_queries.area_of(conn, area)), group_codes, k)
    cell = privacy.unit_cell(u, level, code)
    figs, atoms = _atom_beyond(svc, conn, area)
    beyond: dict[str, dict[str, dict]] = {g: {} for g in group_codes}
    for r in figs.itertuples(index=False):
        if (r.group_code, r.category, r.profile, r.circle) in rules:
            rk = "|".join((r.category, r.profile, r.circle))
            beyond[r.group_code].setdefault(rk, {})[atoms[r.code]] = int(r.beyond)
    shown = privacy.unit_cells(u)
    out = []
    for g in group_codes:
        total = privacy.group_values(u, g).get(cell, 0)
        t_status = u.lookup(g, cell) or suppress.HIDDEN
        try:
            b_status = privacy.beyond_statuses(u, g, beyond[g], shown)
        except ValueError:  # the model and the database out of step: show no beyond count
            b_status = {}
        for r in rows:
            if r["group_code"] != g:
                continue
            rk = "|".join((r["category"], r["profile"], r["circle"]))
            b = sum(beyond[g].get(rk, {}).get(a, 0) for a in cell)
            st = b_status.get(rk, {}).get(cell, suppress.HIDDEN) if cell else suppress.SHOWN
            out.append(
                {
                    **r,
                    "residents": suppress.label(total, t_status, k),
                    "beyond": suppress.label(b, st, k),
                    "suppressed": [f for f, s in (("residents", t_status), ("beyond", st)) if s != suppress.SHOWN],
                }
            )
    return out


@router.get(
    "/api/coverage/catalog",
    summary="生活圈目录 Circles, profiles, categories, requirement sets",
    response_model=CoverageCatalog,
    response_model_exclude_unset=True,
)
def coverage_catalog(
    request: Request, conn: Connection = DB, svc: CoverageService = Depends(service), p: Principal = READ
) -> Response:
    """The catalog; each category says how many facilities of it the data hold (``no_facility``: none, so
    its coverage is missing data — 无此类设施数据 — not a gap). Kept per worker by catalog and data version
    (:mod:`gisgov.api.answers`): every dashboard asks for it."""
    cat = svc.catalog()
    return cached(
        request, conn, p, lambda: model_json(CoverageCatalog, _catalog_doc(conn, svc, cat)), variant=cat.checksum
    )


def _catalog_doc(conn: Connection, svc: CoverageService, cat: Any) -> dict:
    system_scope(conn)  # "in the data" means the whole city's facility table
    counts = svc.facility_counts_stored(conn)
    return {
        "circles": [c.__dict__ for c in cat.circles],
        "profiles": [p.__dict__ for p in cat.profiles],
        "budgets": cat.budgets().astype(object).where(cat.budgets().notna(), None).to_dict("records"),
        "categories": [
            {
                "code": c.code,
                "name_zh": c.name_zh,
                "name_en": c.name_en,
                "select": [{"category": s.category, "kinds": list(s.kinds)} for s in c.select],
                "facilities": counts.get(c.code, 0),
                "no_facility": counts.get(c.code, 0) == 0,
            }
            for c in cat.categories
        ],
        "standards": [
            {
                "code": s.code,
                "name_zh": s.name_zh,
                "name_en": s.name_en,
                "applies_to": s.applies_to,
                "tiers": {t: list(cs) for t, cs in s.tiers},
                "source": s.source,
            }
            for s in cat.standards
        ],
        "distance_cap_m": cat.distance_cap_m,
    }


@router.get(
    "/api/coverage/summary",
    summary="覆盖率 Coverage of one street / community / grid / compound",
    response_model=CoverageSummary,
    response_model_exclude_unset=True,
)
def summary(
    request: Request,
    level: Literal["street", "community", "grid", "compound"] = Query(..., description="Level of the area."),
    code: str = Query(..., description="Its code (inside your area)."),
    profile: str | None = Query(None, description="Walking profile (default: all)."),
    conn: Connection = DB,
    svc: CoverageService = Depends(service),
    p: Principal = READ,
) -> dict:
    """Share of buildings, households and residents within each circle for every category and
    profile, complete circles per requirement set, special groups beyond their circle."""
    _unit_in_area(p, level, code)
    system_scope(conn)  # the shared model is loaded from the whole city whoever asks
    out = svc.summary(conn, level, code, profile)
    out["special_groups"] = special_groups_view(
        conn, svc, p, level, code, out["special_groups"], request.app.state.settings.small_cell_k
    )
    return out


def new_cache(settings: Settings) -> CoverageCache:
    """A cache of service areas and gaps (:mod:`gisgov.coverage.cache`), kept in files under
    ``<GISGOV_HOME>/cache/coverage`` when the home folder exists (so a restarted server reads them)."""
    home = settings.home_abs
    return CoverageCache(home / "cache" / "coverage" if home.is_dir() else None)


def page_cache(request: Request) -> CoverageCache:
    """The app's cache of service areas and gaps (made in :func:`setup`, or here for an app without it)."""
    c = getattr(request.app.state, "coverage_cache", None)
    if c is None:
        with _made:
            c = getattr(request.app.state, "coverage_cache", None)
            if c is None:
                c = request.app.state.coverage_cache = new_cache(request.app.state.settings)
    return c


def setup(app: FastAPI) -> None:
    """Make the app's coverage cache (``app.state.coverage_cache``)."""
    app.state.coverage_cache = new_cache(app.state.settings)


CACHE = Depends(page_cache)
TOLERANCE = Query(
    0.0,
    ge=0,
    le=50,
    description="显示简化（米）simplify the geometry for display by this many metres (0: exact, as computed)",
)


def _key(conn: Connection, svc: CoverageService, cache: CoverageCache, category: str, circle: str, profile: str) -> Key:
    """(run key, category, circle, profile) of the current computation run (the transaction must see the
    whole city: ``system_scope`` first); unknown names answer 4xx before any work."""
    cat = svc.catalog()
    code = cat.category(category).code
    cat.budget_m(circle, profile)
    return (cache.run_key(conn, cat.checksum), code, circle, profile)


def _entry(conn: Connection, svc: CoverageService, cache: CoverageCache, key: Key) -> Entry:
    """The cached entry of ``key`` (computed from the walking model on first use)."""
    return cache.entry(key, lambda: coverage_cache.build_entry(svc, conn, key))


def _clip(conn: Connection, cache: CoverageCache, e: Entry, scope: str) -> Any:
    return cache.answer((e.key[0], "clip", scope), lambda: (coverage_cache.scope_polygon(conn, e, scope),))[0]


@dataclass
class Choice:
    """What the routes answering from the per-run cache share: the request's transaction (widened to the whole
    city: the shared model is loaded from it whoever asks), the service, the cache, the caller's area and the
    key (run, category, circle, profile)."""

    conn: Connection
    svc: CoverageService
    cache: CoverageCache
    scope: str
    circle: str
    profile: str
    key: Key

    def entry(self) -> Entry:
        return _entry(self.conn, self.svc, self.cache, self.key)

    def clip(self, e: Entry) -> Any:
        return _clip(self.conn, self.cache, e, self.scope)

    def answer(self, what: tuple[Any, ...], make: Any) -> Any:
        """``make()``'s answer for ``what`` under this key, cached (and kept in files) per computation run."""
        return self.cache.answer((*self.key, *what), make, persist=True)


def choice(
    category: str = Query(...),
    circle: str = Query("c15"),
    profile: str = Query("standard"),
    conn: Connection = DB,
    svc: CoverageService = Depends(service),
    cache: CoverageCache = CACHE,
    p: Principal = READ,
) -> Choice:
    """The category, circle and profile asked for (unknown names answer 4xx before any work)."""
    system_scope(conn)
    return Choice(conn, svc, cache, p.area_prefix, circle, profile, _key(conn, svc, cache, category, circle, profile))


CHOICE = Depends(choice)


@router.get(
    "/api/coverage/areas",
    summary="服务圈 Service area of a category (or one facility) as GeoJSON",
    response_class=GeoJSONResponse,
    responses=geojson_ok(FeatureCollection, "服务圈 GeoJSON service areas (WGS84)"),
)
def service_areas(
    facility_id: int | None = Query(None, description="One facility instead of the whole category."),
    tolerance_m: float = TOLERANCE,
    c: Choice = CHOICE,
) -> Response:
    """Reachable street parts (partial edges included) and access legs within the budget,
    buffered by the catalog's area width and dissolved; buildings beyond the budget are cut out.
    Cut to the caller's area; ``buildings_in`` counts the area's buildings. The whole category's area
    is cached per computation run (:mod:`gisgov.coverage.cache`); one facility's is computed."""
    if facility_id is not None:
        return _geojson(c.svc.service_area(c.conn, c.key[1], c.circle, c.profile, facility_id, scope=c.scope))

    def make() -> str:
        e = c.entry()
        return coverage_cache.geojson_text(coverage_cache.area_frame(e, c.clip(e), c.scope, tolerance_m), tolerance_m)

    return GeoJSONResponse(c.answer(("areas", c.scope, tolerance_m), make))


@router.get(
    "/api/coverage/gaps",
    summary="服务盲区 Gap areas: buildings beyond the circle, grouped",
    response_class=GeoJSONResponse,
    responses=geojson_ok(FeatureCollection, "服务盲区 GeoJSON gap areas (WGS84)"),
)
def gaps(
    level: str | None = Query(None),
    code: str | None = Query(None),
    tolerance_m: float = TOLERANCE,
    c: Choice = CHOICE,
    p: Principal = READ,
) -> Response:
    """Gap areas of the caller's area (or of one street / community in it: cached per computation run;
    a grid or compound: computed)."""
    _unit_in_area(p, level, code)
    if level not in (None, "street", "community"):
        return _geojson(c.svc.gaps(c.conn, c.key[1], c.circle, c.profile, level, code, scope=c.scope))

    def make() -> str:
        e = c.entry()
        within = e.scope_mask(c.scope)
        if level is not None:
            within = within & (e.community == code if level == "community" else e.scope_mask(str(code)))
            if not within.any():
                raise NotFound(f"{level} {code!r} has no buildings (rule: area_has_buildings)")
        frame = coverage_cache.gaps_frame(e, c.clip(e), c.scope, within, tolerance_m)
        return coverage_cache.geojson_text(frame, tolerance_m)

    return GeoJSONResponse(c.answer(("gaps", c.scope, level, code, tolerance_m), make))


BUILDINGS_SQL = """
SELECT b.id, ST_AsGeoJSON(ST_Transform(coalesce(b.geom, b.pos), 4326), :prec) AS g
FROM building b WHERE b.community_code LIKE :scope || '%' ORDER BY b.id
"""


@router.get(
    "/api/coverage/buildings",
    summary="按步行距离的楼栋 Buildings of your area by walking distance class (within / near / beyond)",
    response_class=GeoJSONResponse,
    responses=geojson_ok(FeatureCollection, "楼栋 GeoJSON buildings with their distance class (WGS84)"),
)
def buildings_by_distance(c: Choice = CHOICE) -> Response:
    """Each building of the caller's area (footprint, or point without one) with ``cls``: ``within`` the
    circle's walking distance, ``near`` (up to 1.5 × that distance) or ``beyond`` (farther or unreachable)
    and ``distance_m`` (rounded). Cached per computation run."""

    def make() -> str:
        classes = coverage_cache.building_classes(c.entry(), c.scope)
        feats = []
        for bid, g in c.conn.execute(text(BUILDINGS_SQL), {"scope": c.scope, "prec": GEOJSON_PRECISION}).all():
            cls = classes.get(int(bid))
            if cls is None or g is None:
                continue
            k, d = cls
            props = {"id": int(bid), "cls": coverage_cache.DISTANCE_CLASSES[k], "distance_m": d}
            feats.append(f'{{"type":"Feature","properties":{json.dumps(props)},"geometry":{g}}}')
        return '{"type":"FeatureCollection","features":[' + ",".join(feats) + "]}"

    return GeoJSONResponse(c.answer(("buildings", c.scope), make))


@router.get(
    "/api/coverage/facilities",
    summary="类别设施 Facilities of a category that can serve your area (points)",
    response_class=GeoJSONResponse,
    responses=geojson_ok(FeatureCollection, "设施 GeoJSON facilities (WGS84)"),
)
def category_facilities(c: Choice = CHOICE) -> Response:
    """The category's facilities inside the caller's area widened by the circle's walking distance
    (all of them for a city-wide account): id, name, kind. Cached per computation run."""

    def make() -> str:
        e = c.entry()
        return coverage_cache.geojson_text(coverage_cache.facilities_frame(e, c.clip(e)), 0.0)

    return GeoJSONResponse(c.answer(("facilities", c.scope), make))


NAMES_SQL = """
SELECT c.code, c.name, s.name FROM community c LEFT JOIN street s ON s.code = c.street_code
WHERE c.code LIKE :scope || '%'
"""


@router.get(
    "/api/coverage/communities",
    summary="各社区覆盖 Coverage per community of your area for one category, circle and profile",
    response_model=CommunityFigures,
    response_model_exclude_unset=True,
)
def community_figures(c: Choice = CHOICE) -> dict[str, Any]:
    """Per community of the caller's area: buildings, households and residents within the circle (and
    households beyond), the covered shares and the number of gap areas. Aggregates only; cached per
    computation run."""

    def make() -> dict[str, Any]:
        e = c.entry()
        names = {str(k): (n or str(k), sn or "") for k, n, sn in c.conn.execute(text(NAMES_SQL), {"scope": c.scope})}
        return {
            "category": e.category,
            "name_zh": e.name_zh,
            "name_en": e.name_en,
            "circle": c.circle,
            "profile": c.profile,
            "budget_m": e.budget_m,
            "method": e.method,
            "rows": coverage_cache.community_rows(e, c.scope, names),
        }

    out: dict[str, Any] = c.answer(("communities", c.scope), make)
    return out


INT64_MAX = 2**63 - 1


class SiteRequest(BaseModel):
    category: str = Field(..., max_length=100)
    k: int | None = Field(
        3, ge=1, le=1000, description="Number of new sites (maximal covering); null with fewest=true."
    )
    fewest: bool = Field(False, description="Set covering: fewest sites covering all coverable buildings.")
    circle: str = "c15"
    profile: str = "standard"
    level: str | None = None
    code: str | None = None
    candidates: Literal["buildings", "nodes"] = "buildings"
    points: list[tuple[float, float]] | None = Field(
        None,
        description="Candidate sites [lon, lat] (e.g. vacant parcels): finite, inside GISGOV_REGION_BBOX, "
        "at most GISGOV_MAX_LIST_ITEMS points.",
    )


@router.post(
    "/api/coverage/site",
    summary="选址 Best new sites (MCLP) or fewest sites (LSCP)",
    response_model=SiteResult,
    response_model_exclude_unset=True,
)
def site(
    req: SiteRequest,
    request: Request,
    conn: Connection = DB,
    svc: CoverageService = Depends(service),
    cache: CoverageCache = CACHE,
    p: Principal = ANALYSE,
) -> dict[str, Any]:
    s = request.app.state.settings
    if req.points:
        check_points(req.points, s.region_bbox, s.max_list_items)
    _unit_in_area(p, req.level, req.code)
    system_scope(conn)  # the shared model is loaded from the whole city whoever asks

    def make() -> dict[str, Any]:
        out: dict[str, Any] = svc.site(
            conn,
            req.category,
            k=None if req.fewest else (req.k or 3),
            circle=req.circle,
            profile=req.profile,
            level=req.level,
            code=req.code,
            candidates=req.candidates,
            points=req.points,
            scope=p.area_prefix,
        )
        _name_sites(conn, out["sites"])
        return out

    if req.points:
        return make()  # the caller's own candidates: computed every time
    key = (
        *_key(conn, svc, cache, req.category, req.circle, req.profile),
        "site",
        p.area_prefix,
        req.level,
        req.code,
        None if req.fewest else (req.k or 3),
        req.candidates,
    )
    answer: dict[str, Any] = cache.answer(key, make, persist=True)
    return answer


SITE_COMMUNITY_SQL = """
SELECT c.code, c.name FROM community c
WHERE ST_Intersects(c.geom, ST_SetSRID(ST_MakePoint(:lon, :lat), :srid)) ORDER BY c.code LIMIT 1
"""


def _name_sites(conn: Connection, sites: list[dict[str, Any]]) -> None:
    """Each suggested site gets the code and name of the community it falls in (None outside every one);
    the sites' lon/lat are in the storage CRS (CGCS2000 ≈ WGS84)."""
    srid = store.storage_srid(conn)
    for s in sites:
        row = conn.execute(text(SITE_COMMUNITY_SQL), {"lon": s["lon"], "lat": s["lat"], "srid": srid}).first()
        s["community"], s["community_name"] = (str(row[0]), str(row[1])) if row else (None, None)


class WhatIfRequest(BaseModel):
    category: str = Field(..., max_length=100)
    op: Literal["add", "move", "remove"]
    facility_id: int | None = Field(None, ge=1, le=INT64_MAX)
    lon: float | None = Field(None, description="Longitude (degrees, finite, inside GISGOV_REGION_BBOX).")
    lat: float | None = Field(None, description="Latitude (degrees, finite, inside GISGOV_REGION_BBOX).")
    commit: bool = Field(False, description="Write the edit and update the stored results (audited).")
    level: str | None = None
    code: str | None = None
    name: str | None = Field(None, max_length=200, description="Name of an added facility (commit).")
    kind: str | None = Field(
        None, max_length=100, description="facility.kind of an added facility, e.g. 社区卫生服务站 (commit)."
    )


def _commit_in_area(conn: Connection, p: Principal, req: WhatIfRequest) -> None:
    """A committed edit stays inside the caller's area: the facility and its new position (404 otherwise)."""
    area = p.area_prefix
    if not area:
        return
    if (
        req.op in ("move", "remove")
        and req.facility_id is not None
        and not store.facility_in_area(conn, area, req.facility_id)
    ):
        raise NotFound(f"未找到设施 facility {req.facility_id} not found in your area (rule: facility_exists)")
    if (
        req.op in ("add", "move")
        and req.lon is not None
        and req.lat is not None
        and not store.point_in_area(conn, area, req.lon, req.lat, store.storage_srid(conn))
    ):
        raise NotFound("位置不在您的辖区内 the position is outside your area (rule: position_in_area)")


@router.post(
    "/api/coverage/whatif",
    summary="假设 Add / move / remove one facility and see the change",
    response_model=WhatIfResult,
    response_model_exclude_unset=True,
)
def whatif(
    req: WhatIfRequest,
    request: Request,
    conn: Connection = DB,
    svc: CoverageService = Depends(service),
    p: Principal = ANALYSE,
) -> dict:
    if req.lon is not None or req.lat is not None:
        if req.lon is None or req.lat is None:
            raise InvalidInput("经度与纬度须同时给出 lon and lat go together (rule: position_required)")
        check_lonlat(req.lon, req.lat, request.app.state.settings.region_bbox, what="位置 position lon/lat")
    _unit_in_area(p, req.level, req.code)
    if req.commit:
        _commit_in_area(conn, p, req)
    system_scope(conn)  # the shared model is loaded from the whole city whoever asks
    try:
        out = svc.whatif(
            conn,
            req.category,
            req.op,
            facility_id=req.facility_id,
            lon=req.lon,
            lat=req.lat,
            commit=req.commit,
            level=req.level,
            code=req.code,
            name=req.name,
            kind=req.kind,
            scope=p.area_prefix,
        )
    except GisgovError as exc:
        if req.commit and not isinstance(exc, NotFound):
            audit(
                request,
                "facility_edit",
                p,
                object=f"facility/{req.facility_id}",
                result="failed",
                detail={"op": req.op, "category": req.category, "error": type(exc).__name__},
            )
        raise
    if req.commit:
        page_cache(request).forget_run()  # a committed edit stores a new run
        audit(
            request,
            "facility_edit",
            p,
            object=f"facility/{out.get('facility_id')}",
            conn=conn,
            detail={
                "op": req.op,
                "category": req.category,
                "run_id": out.get("run_id"),
                "categories_updated": out.get("categories_updated"),
                "lon": req.lon,
                "lat": req.lat,
            },
        )
    return out


class ComputeRequest(BaseModel):
    categories: list[str] | None = Field(None, description="Service categories to compute (default: all).")


@router.post(
    "/api/coverage/compute",
    summary="计算 Compute and store coverage (all or some categories)",
    response_model=ComputeOut,
    response_model_exclude_unset=True,
)
def compute(
    request: Request,
    body: ComputeRequest | None = None,
    conn: Connection = DB,
    svc: CoverageService = Depends(service),
    p: Principal = ANALYSE,
) -> dict:
    categories = body.categories if body else None
    system_scope(conn)  # the shared model is loaded from the whole city whoever asks
    r = svc.compute(conn, categories)
    page_cache(request).forget_run()  # the next answers are of the new run
    audit(
        request,
        "analysis",
        p,
        object=f"coverage_run/{r.run_id}",
        conn=conn,
        detail={"categories": categories or "all", "method": r.method, "rows": r.rows_written},
    )
    return {
        "run_id": r.run_id,
        "method": r.method,
        "buildings": r.buildings,
        "facilities": r.facilities,
        "categories": r.categories,
        "rows_written": r.rows_written,
        "seconds": r.seconds,
        "snap": r.snap,
        "components": r.components.to_dict("records"),
    }


@router.get(
    "/coverage/map",
    response_class=HTMLResponse,
    tags=["maps"],
    summary="服务圈地图 Map of one category: facilities, service area, buildings by distance, gaps, sites",
)
def coverage_map(
    request: Request,
    category: str = Query(...),
    circle: str = Query("c15"),
    profile: str = Query("standard"),
    sites: int = Query(3, ge=0, le=20),
    level: str | None = Query(None),
    code: str | None = Query(None),
    conn: Connection = DB,
    svc: CoverageService = Depends(service),
    p: Principal = READ,
) -> HTMLResponse:
    from gisgov.maps.assets import require_assets
    from gisgov.maps.coverage_map import coverage_map_html

    require_assets(request.app.state.settings.web_dir)
    _unit_in_area(p, level, code)
    if sites and not p.can(Perm.run_analyses):
        sites = 0  # suggested sites are an analysis
    system_scope(conn)  # the shared model is loaded from the whole city whoever asks
    view = ScopedCoverage(svc, p.area_prefix) if p.area_prefix else svc
    return HTMLResponse(coverage_map_html(view, conn, category, circle, profile, sites=sites, level=level, code=code))
