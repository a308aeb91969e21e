"""Events 事件 API and the report / list page (issue 13, item 1).

- ``POST /api/events``: report (上报) at a point: lon/lat in WGS84 or CGCS2000 (the same at this
  precision; a phone's ``navigator.geolocation`` gives WGS84), or GCJ-02 (AMap/Tencent) with
  ``"crs": "gcj02"`` (converted). Grid, community and street come from the point.
- ``GET /api/events``: the events in scope with filters and paging (roles with ``read_personal``);
  ``status`` is one of the machine's states (repeat the parameter for several).
- ``GET /api/events/{id}``: one event with its history (same roles).
- ``POST /api/events/{id}/transition``: ``{to, version, note, department}``; 403 role, 409 wrong state
  or stale version, 404 outside the scope; audited (``event_transition``), refusals too.
- ``GET /api/events/stats?community=|grid=``: statistics (every signed-in role: counts only).
- ``GET /api/events/geojson``: open events clustered by grid (counts at the grid's label point).
- ``GET /api/events/catalog``: categories, departments, states and the transition table.
- ``GET /events``: the mobile report form + event list + map page (``web/events``).
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import Connection

from gisgov.api.answers import cached, events_seen, model_json
from gisgov.api.deps import DB, audit, current_principal, in_scope_or_404, require
from gisgov.api.pages import LeafletPage
from gisgov.api.schemas import events as schemas
from gisgov.api.schemas.answer import KEEP_SHAPE
from gisgov.errors import GisgovError, InvalidInput
from gisgov.events import machine, stats, store
from gisgov.events.catalog import load_catalog
from gisgov.security.roles import ROLE_LABELS, Perm, Principal

router = APIRouter()
PAGE = LeafletPage("events", "事件 events")
TAG = "events 事件"


class ReportBody(BaseModel):
    lon: float = Field(..., ge=-180, le=180, allow_inf_nan=False, description="经度 longitude (degrees)")
    lat: float = Field(..., ge=-90, le=90, allow_inf_nan=False, description="纬度 latitude (degrees)")
    crs: Literal["wgs84", "cgcs2000", "gcj02"] = Field(
        "wgs84", description="wgs84 / cgcs2000 (same at this precision; phone GPS) or gcj02 (AMap/Tencent, converted)"
    )
    category: str = Field(..., max_length=32, description="类别代码 category code (GET /api/events/catalog)")
    description: str = Field(..., min_length=1, max_length=store.MAX_DESCRIPTION)


StateCode = Literal[tuple(s.value for s in machine.State)]  # type: ignore[valid-type]


class TransitionBody(BaseModel):
    to: StateCode = Field(..., description="目标状态 target state (GET /api/events/catalog: states, transitions)")
    version: int = Field(
        ..., ge=1, le=2**31 - 1, description="版本 the event's version as last read (optimistic concurrency)"
    )
    note: str | None = Field(None, max_length=store.MAX_NOTE, description="说明 note (required to reject or escalate)")
    department: str | None = Field(None, max_length=32, description="处置部门 department code (required to dispatch)")


@router.get(
    "/events",
    response_class=HTMLResponse,
    tags=["maps"],
    summary="事件上报与列表 Event report form (phone), list and map",
    responses={200: {"description": "页面 the HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}},
)
def events_page(request: Request) -> HTMLResponse:
    return PAGE.response(request.app.state.settings)


@router.get(
    "/api/events/catalog",
    response_model=schemas.EventCatalog,
    **KEEP_SHAPE,
    tags=[TAG],
    summary="事件类别、部门、状态与流转 Categories, departments, states, transitions",
)
def catalog(p: Principal = Depends(require(Perm.read_aggregates))) -> dict:
    cat = load_catalog()
    return cat.public() | {
        "states": [
            {"code": s.value, "label": machine.STATE_LABELS[s], "terminal": s in machine.TERMINAL}
            for s in machine.State
        ],
        "transitions": [
            {"from": f.value, "to": t.value, "roles": sorted(r.value for r in roles)}
            for (f, t), roles in machine.TRANSITIONS.items()
        ],
        "reporters": sorted(r.value for r in machine.REPORTERS),
        "role": p.role.value,
        "role_label": ROLE_LABELS[p.role],
        "can_report": machine.can_report(p.role),
        "can_list": p.can(Perm.read_personal),
    }


@router.post(
    "/api/events",
    status_code=201,
    response_model=schemas.Event,
    **KEEP_SHAPE,
    tags=[TAG],
    summary="上报事件 Report an event at a point",
)
def report(
    body: ReportBody, request: Request, conn: Connection = DB, p: Principal = Depends(current_principal)
) -> dict:
    lon, lat = body.lon, body.lat
    if body.crs == "gcj02":
        from gisgov.ingest.gcj02 import gcj02_to_wgs84

        x, y = gcj02_to_wgs84([lon], [lat])
        lon, lat = float(x[0]), float(y[0])
    try:
        ev = store.report(conn, p, lon=lon, lat=lat, category=body.category, description=body.description)
    except GisgovError as exc:
        if exc.status_code == 403:
            audit(request, "event_report", p, result="denied", detail={"reason": str(exc)[:200]})
        raise
    audit(
        request,
        "event_report",
        p,
        object=f"event:{ev['id']}",
        conn=conn,
        detail={"category": ev["category"], "grid": ev["grid_code"], "community": ev["community_code"]},
    )
    return ev


@router.get(
    "/api/events",
    response_model=schemas.EventPage,
    **KEEP_SHAPE,
    tags=[TAG],
    summary="事件列表 Events in scope (filters, paging)",
)
def list_events(
    conn: Connection = DB,
    p: Principal = Depends(require(Perm.read_personal)),
    status: list[StateCode] | None = Query(None, description="状态 states (repeat the parameter for several)"),
    category: str | None = Query(None, max_length=32),
    grid: str | None = Query(None, pattern=r"^[0-9]{15}$"),
    community: str | None = Query(None, pattern=r"^[0-9]{12}$"),
    overdue: bool | None = Query(None, description="true: open and past the deadline; false: not overdue"),
    date_from: date | None = Query(None, alias="from", description="上报日期起 reported on or after (YYYY-MM-DD)"),
    date_to: date | None = Query(None, alias="to", description="上报日期止 reported on or before (YYYY-MM-DD)"),
    limit: int = Query(100, ge=1, le=store.MAX_PAGE),
    offset: int = Query(0, ge=0, le=10_000_000),
) -> dict:
    states = list(status) if status else None
    if date_from and date_to and date_to < date_from:
        raise InvalidInput(f"日期区间无效 'to' ({date_to}) is before 'from' ({date_from})")
    return store.list_events(
        conn,
        p,
        status=states,
        category=category,
        grid=grid,
        community=community,
        overdue=overdue,
        date_from=date_from,
        date_to=date_to,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/api/events/stats",
    response_model=schemas.EventStats,
    **KEEP_SHAPE,
    tags=[TAG],
    summary="事件统计 Statistics per grid / community (counts only)",
)
def event_stats(
    request: Request,
    conn: Connection = DB,
    p: Principal = Depends(require(Perm.read_aggregates)),
    community: str | None = Query(None, pattern=r"^[0-9]{12}$"),
    grid: str | None = Query(None, pattern=r"^[0-9]{15}$"),
) -> Response:
    """Kept per worker (:mod:`gisgov.api.answers`) until an event is reported or changes state, at most a
    minute (deadlines pass with the clock)."""
    if community and grid:
        raise InvalidInput("community 与 grid 只能给一个 give community or grid, not both")
    if community or grid:
        in_scope_or_404(p, community or grid, "社区/网格 community/grid")
    return cached(
        request,
        conn,
        p,
        lambda: model_json(schemas.EventStats, stats.event_stats(conn, community=community, grid=grid)),
        variant=events_seen(conn),
    )


@router.get(
    "/api/events/geojson",
    response_model=schemas.OpenEvents,
    **KEEP_SHAPE,
    tags=[TAG],
    summary="未结事件按网格聚合 Open events clustered by grid (GeoJSON)",
)
def open_events_geojson(
    request: Request, conn: Connection = DB, p: Principal = Depends(require(Perm.read_aggregates))
) -> Response:
    return cached(
        request, conn, p, lambda: model_json(schemas.OpenEvents, store.open_by_grid(conn)), variant=events_seen(conn)
    )


@router.get(
    "/api/events/{event_id}",
    response_model=schemas.Event,
    **KEEP_SHAPE,
    tags=[TAG],
    summary="事件详情与流转记录 One event with its history",
)
def get_event(
    event_id: int = Path(..., ge=1, le=2**63 - 1),
    conn: Connection = DB,
    p: Principal = Depends(require(Perm.read_personal)),
) -> dict:
    return store.get(conn, p, event_id)


@router.post(
    "/api/events/{event_id}/transition",
    response_model=schemas.Event,
    **KEEP_SHAPE,
    tags=[TAG],
    summary="事件流转 Move an event to the next state (role, scope, version checked)",
)
def transition(
    body: TransitionBody,
    request: Request,
    event_id: int = Path(..., ge=1, le=2**63 - 1),
    conn: Connection = DB,
    p: Principal = Depends(current_principal),
) -> dict:
    obj = f"event:{event_id}"
    try:
        ev = store.transition(conn, p, event_id, body.to, body.version, note=body.note, department=body.department)
    except GisgovError as exc:
        if exc.status_code in (403, 404, 409):
            audit(
                request,
                "event_transition",
                p,
                object=obj,
                result="denied",
                detail={"to": body.to, "version": body.version, "status": exc.status_code, "reason": str(exc)[:300]},
            )
        raise
    audit(
        request,
        "event_transition",
        p,
        object=obj,
        conn=conn,
        detail={"from": ev["from"], "to": ev["status"], "version": ev["version"], "department": ev["department"]},
    )
    return ev


def setup(app: FastAPI) -> None:
    """Serve ``web/events`` (the page's own JS/CSS) at /static/events."""
    PAGE.mount(app)
