"""Special-group services 特殊人群服务 (issue 13, item 3).

- ``GET /api/special/needs``: the configured needs (group → services), circle, walking profile and
  budget, the visit rules (``read_aggregates``).
- ``GET /api/special/beyond?code=&group=&limit=&offset=``: residents of the caller's area whose
  most-needed service lies beyond the circle, named with masked names (``张*``), masked ID and phone,
  building and door: for the responsible grid worker (a grid-bound account: its grid) and the roles
  above it (``read_personal`` + ``read_special_groups``; others 403). Audited ``read_personal``.
- ``GET /api/special/summary``: per community and grid of the caller's area and per group: members,
  beyond the circle, overdue for a visit (``read_aggregates``); roles without ``read_special_groups``
  see small cells suppressed (``"<5"``, ``"≥5"``) with the statistics' statuses.
- ``GET /api/special/visits/overdue?code=&group=``: members overdue for a 走访 visit (never visited
  first); ``read_personal`` + ``read_special_groups``; audited ``read_personal``.
- ``POST /api/special/visits`` ``{"resident_id", "note"}``: record a visit — an event of the
  特殊人群走访 category at the resident's building plus the row naming the resident; audited
  ``event_report`` (detail ``visit``). A resident outside the caller's scope answers 404.

A code outside the caller's node answers 404.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, text

from gisgov.api.answers import cached, model_json
from gisgov.api.deps import DB, audit, client_addr, require
from gisgov.api.routes.coverage import service
from gisgov.api.schemas import special as schemas
from gisgov.api.schemas.answer import KEEP_SHAPE
from gisgov.coverage.service import CoverageService
from gisgov.errors import GisgovError
from gisgov.security import audit as audit_log
from gisgov.security.roles import Perm, Principal
from gisgov.services import store

router = APIRouter(tags=["special 特殊人群服务"])
CODE = r"^([0-9]{9}|[0-9]{12}|[0-9]{15})$"
GROUP = r"^[a-z][a-z0-9_]{0,39}$"
PERSONAL = Depends(require(Perm.read_personal, Perm.read_special_groups))
READ = Depends(require(Perm.read_aggregates))


class VisitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    resident_id: int = Field(..., ge=1, le=2**63 - 1, description="居民 resident id (from the lists)")
    note: str | None = Field(None, max_length=store.MAX_NOTE, description="走访说明 note (no names or numbers)")


def _personal_read(request: Request, conn: Connection, p: Principal, obj: str, count: int) -> None:
    audit_log.record(conn, "read_personal", actor=p, object=obj, client=client_addr(request), detail={"count": count})


@router.get(
    "/api/special/needs",
    response_model=schemas.SpecialNeeds,
    **KEEP_SHAPE,
    summary="特殊人群服务需求 Needs, circle, profile, visit rules",
)
def needs(conn: Connection = DB, svc: CoverageService = Depends(service), p: Principal = READ) -> dict:
    return store.config_for(conn, svc).public(svc.catalog())


@router.get(
    "/api/special/beyond",
    response_model=schemas.BeyondList,
    **KEEP_SHAPE,
    summary="服务圈外的特殊人群 Members beyond the circle of the service they need",
)
def beyond(
    request: Request,
    conn: Connection = DB,
    svc: CoverageService = Depends(service),
    p: Principal = PERSONAL,
    code: str | None = Query(None, pattern=CODE, description="街道/社区/网格编码 area inside your own"),
    group: str | None = Query(None, pattern=GROUP, description="人群 group code (default: every configured)"),
    limit: int = Query(500, ge=1, le=store.MAX_LIST),
    offset: int = Query(0, ge=0, le=10**9),
) -> dict:
    out = store.beyond_list(conn, svc, p, code=code, group=group, limit=limit, offset=offset)
    _personal_read(request, conn, p, f"special_beyond:{out['area'] or 'all'}", len(out["items"]))
    return out


@router.get(
    "/api/special/summary",
    response_model=schemas.SpecialSummary,
    **KEEP_SHAPE,
    summary="特殊人群服务汇总 Members, beyond the circle, overdue visits per unit",
)
def summary(
    request: Request, conn: Connection = DB, svc: CoverageService = Depends(service), p: Principal = READ
) -> Response:
    """Asked for by the dashboard on every unit it shows. Kept per worker (:mod:`gisgov.api.answers`) by role,
    area and data version, and also by the newest visit and event transition the caller can see (visits and
    event states are not counted by the data version) and by the 5-minute slot: who is overdue moves with the
    clock, so an answer is at most 5 minutes behind it (visit intervals are counted in days)."""
    seen = conn.execute(_VISITS_SEEN).one()
    slot = int(time.time() // SUMMARY_SLOT_S)
    return cached(
        request,
        conn,
        p,
        lambda: model_json(
            schemas.SpecialSummary, store.summary(conn, svc, p, k=request.app.state.settings.small_cell_k)
        ),
        variant=(tuple(seen), slot),
    )


#: the special-group summary is recomputed at least this often (overdue visits move with the clock)
SUMMARY_SLOT_S = 300
_VISITS_SEEN = text("SELECT (SELECT max(event_id) FROM special_visit), (SELECT max(id) FROM event_history)")


@router.get(
    "/api/special/visits/overdue",
    response_model=schemas.OverdueList,
    **KEEP_SHAPE,
    summary="走访超期 Members overdue for a visit",
)
def overdue(
    request: Request,
    conn: Connection = DB,
    svc: CoverageService = Depends(service),
    p: Principal = PERSONAL,
    code: str | None = Query(None, pattern=CODE, description="街道/社区/网格编码 area inside your own"),
    group: str | None = Query(None, pattern=GROUP, description="人群 group code (default: every rule)"),
    limit: int = Query(500, ge=1, le=store.MAX_LIST),
    offset: int = Query(0, ge=0, le=10**9),
) -> dict:
    cfg = store.config_for(conn, svc)
    out = store.overdue_list(conn, p, cfg, code=code, group=group, limit=limit, offset=offset)
    _personal_read(request, conn, p, f"special_overdue:{out['area'] or 'all'}", len(out["items"]))
    return out


@router.post(
    "/api/special/visits",
    status_code=201,
    response_model=schemas.VisitRecorded,
    **KEEP_SHAPE,
    summary="登记走访 Record a visit (a 特殊人群走访 event)",
)
def record_visit(
    request: Request,
    body: VisitIn,
    conn: Connection = DB,
    svc: CoverageService = Depends(service),
    p: Principal = PERSONAL,
) -> dict:
    cfg = store.config_for(conn, svc)
    try:
        out = store.record_visit(conn, p, body.resident_id, cfg, note=body.note)
    except GisgovError as exc:
        if exc.status_code in (403, 404):
            audit(
                request,
                "event_report",
                p,
                object=f"resident:{body.resident_id}",
                result="denied",
                detail={"visit": body.resident_id, "status": exc.status_code, "reason": str(exc)[:300]},
            )
        raise
    audit(
        request,
        "event_report",
        p,
        object=f"event:{out['event_id']}",
        conn=conn,
        detail={"visit": body.resident_id, "category": cfg.visit_category},
    )
    return out
