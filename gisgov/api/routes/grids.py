"""/api/grids: validate, feasibility, propose, repair, plans (versions, activation, diff, code table),
edit sessions for live checking in the browser, and the plan map."""

from __future__ import annotations

import csv
import io
import threading
import uuid
from collections import OrderedDict
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import Connection

from gisgov.api.deps import DB
from gisgov.errors import InvalidInput, NotFound
from gisgov.gridding import plans, service

router = APIRouter(prefix="/api/grids", tags=["grids 网格划分"])


class Rules(BaseModel):
    min_households: int | None = Field(None, description="Households per grid, minimum (default 300).")
    max_households: int | None = Field(None, description="Households per grid, maximum (default 500).")
    max_people: int | None = Field(None, description="People per grid, maximum (default 1000).")
    tolerance_m: float | None = Field(None, description="Gaps/overlaps narrower than this (m) are ignored.")


class ValidateBody(BaseModel):
    community: str
    plan: int | None = Field(None, description="Stored plan version (when neither grids nor assignments are given; default active).")
    grids: dict[str, Any] | None = Field(None, description="GeoJSON FeatureCollection of grid polygons (lon/lat), property `code`.")
    assignments: dict[str, str | None] | None = Field(None, description="building code → grid code")
    rules: Rules | None = None


class ProposeBody(BaseModel):
    community: str
    rules: Rules | None = None
    lock: list[str] = Field(default_factory=list, description="Grid codes of the active plan kept as they are.")
    method: Literal["auto", "exact", "heuristic"] = "auto"
    seed: int = 0
    time_limit_s: float = Field(10.0, gt=0, le=600)
    closest: bool = Field(False, description="When no plan obeys the rules, return the closest plan.")
    save: bool = Field(False, description="Store as a new draft version.")
    author: str | None = None
    note: str | None = None


class RepairBody(BaseModel):
    community: str
    plan: int | None = None
    save: bool = False
    author: str | None = None
    time_limit_s: float = Field(5.0, gt=0, le=600)


class ActivateBody(BaseModel):
    force: bool = False


class SessionBody(BaseModel):
    community: str
    plan: int | None = None
    assignments: dict[str, str | None] | None = None


class MoveBody(BaseModel):
    to: str = Field(..., description="Target grid code.")
    building: str | None = None
    compound: str | None = None


def _r(rules: Rules | None) -> dict | None:
    return rules.model_dump(exclude_none=True) if rules else None


@router.post("/validate", summary="校验 Check a plan (stored or not): counts, compactness, every rule break located")
def validate(body: ValidateBody, conn: Connection = DB) -> dict:
    return service.check(conn, body.community, version=body.plan, grids=body.grids, assignments=body.assignments,
                         rules=_r(body.rules))


@router.post("/feasibility", summary="可行性 Can any plan obey the rules? Which units prevent it?")
def feasibility(community: str = Query(...), conn: Connection = DB, rules: Rules | None = None) -> dict:
    return service.feasibility(conn, community, rules=_r(rules))


@router.post("/propose", summary="划分 Draft a plan (exact CP-SAT or heuristic, chosen automatically)")
def propose(body: ProposeBody, conn: Connection = DB) -> dict:
    return service.propose_plan(conn, body.community, rules=_r(body.rules), lock=body.lock, method=body.method,
                                seed=body.seed, time_limit_s=body.time_limit_s, closest=body.closest, save=body.save,
                                author=body.author, note=body.note)


@router.post("/repair", summary="修复 Fix a plan's rule breaks moving as few buildings as possible")
def repair(body: RepairBody, conn: Connection = DB) -> dict:
    return service.repair_plan(conn, body.community, version=body.plan, save=body.save, author=body.author,
                               time_limit_s=body.time_limit_s)


@router.get("/plans/{community}", summary="版本 Plan versions of a community")
def list_plans(community: str, conn: Connection = DB) -> list[dict]:
    from gisgov.gridding.io import list_plans as lp

    return lp(conn, community)


@router.get("/plans/{community}/{version}", summary="A plan as GeoJSON with statistics and rule breaks")
def get_plan(community: str, version: int, conn: Connection = DB) -> dict:
    return service.stored_plan_geojson(conn, community, version)


@router.post("/plans/{community}/{version}/activate", summary="启用 Activate a plan (atomic; codes renumbered W→E N→S)")
def activate(community: str, version: int, body: ActivateBody | None = None, conn: Connection = DB) -> dict:
    return plans.activate(conn, community, version, force=bool(body and body.force))


@router.get("/plans/{community}/{version}/codes", summary="编码表 Code table of a plan (JSON or ?format=csv)")
def codes(community: str, version: int, format: Literal["json", "csv"] = "json", conn: Connection = DB):
    rows = plans.code_table(conn, community, version)
    if format == "json":
        return rows
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["code", "name", "level", "households", "buildings", "area_m2", "community",
                                        "version", "status"], extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return Response("\ufeff" + buf.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="grids_{community}_v{version}.csv"'})


@router.get("/diff/{community}", summary="对比 What changed between two versions")
def diff(community: str, a: int = Query(...), b: int = Query(...), conn: Connection = DB) -> dict:
    return plans.diff(conn, community, a, b)


@router.get("/map/{community}", response_class=HTMLResponse, summary="地图 Map of a plan (default: active)")
def plan_map(community: str, plan: int | None = None, conn: Connection = DB) -> HTMLResponse:
    from gisgov.maps.grid_plan_map import plan_map_html

    fc = service.stored_plan_geojson(conn, community, plan)
    return HTMLResponse(plan_map_html(fc, service._rules(conn, community, None), title=f"社区 {community} 网格方案"))


# --- edit sessions: the browser moves buildings/compounds and gets the two grids re-checked -------

_SESSIONS: OrderedDict[str, Any] = OrderedDict()
_LOCK = threading.Lock()
MAX_SESSIONS = 32


@router.post("/sessions", summary="编辑 Open an edit session on a plan (for incremental checks)")
def open_session(body: SessionBody, conn: Connection = DB) -> dict:
    from gisgov.gridding.incremental import PlanEditor
    from gisgov.gridding.io import load_context, load_plan

    ctx = load_context(conn, body.community)
    if body.assignments is not None:
        plan = service.plan_from_geojson(ctx, None, body.assignments)
    else:
        plan, _ = load_plan(conn, ctx, body.plan)
    ed = PlanEditor(ctx, plan)
    sid = uuid.uuid4().hex
    with _LOCK:
        _SESSIONS[sid] = ed
        while len(_SESSIONS) > MAX_SESSIONS:
            _SESSIONS.popitem(last=False)
    return {"session": sid, "community": body.community, "grids": list(ed.codes)}


def edit_session(sid: str):
    with _LOCK:
        ed = _SESSIONS.get(sid)
    if ed is None:
        raise NotFound(f"edit session {sid} not found (expired?)")
    return ed


@router.post("/sessions/{sid}/move", summary="移动 Move a building or compound to another grid; re-check both grids")
def move(sid: str, body: MoveBody) -> dict:
    if (body.building is None) == (body.compound is None):
        raise InvalidInput("give exactly one of building or compound")
    return edit_session(sid).move(body.to, building=body.building, compound=body.compound)


@router.get("/sessions/{sid}", summary="The session's plan fully validated")
def session_report(sid: str) -> dict:
    from gisgov.gridding.validate import public

    return public(edit_session(sid).report())


@router.post("/sessions/{sid}/save", summary="Save the session's plan as a new draft version")
def session_save(sid: str, author: str | None = None, conn: Connection = DB) -> dict:
    from gisgov.gridding.io import save_plan

    ed = edit_session(sid)
    return {"version": save_plan(conn, ed.ctx, ed.plan(), author=author, note="edited", method="manual")}
