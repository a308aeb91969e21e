"""/api/grids: validate, feasibility, propose, repair, plans (versions, activation, diff, code table),
edit sessions for live checking in the browser, and the plan map.

Who may do what (scope = the caller's area; a community outside it answers 404, not 403):

- reading plans, codes, diffs, maps, checks and feasibility: ``read_aggregates``;
- proposing, repairing, edit sessions and saving drafts: ``edit_plans``;
- activating a plan: ``activate_plans`` (audited ``plan_activate``; saves ``plan_save``; moves ``plan_edit``).

An edit session belongs to the account that opened it (another account's session id answers 404).
Writes are POSTs with JSON bodies only (:func:`gisgov.api.json_only.json_only`). Special-group counts
per grid are left out for roles that may not read special groups (planners, viewers).
"""

from __future__ import annotations

import csv
import io
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import Connection

from gisgov.api.deps import DB, audit, in_scope_or_404, require
from gisgov.api.json_only import json_only
from gisgov.errors import GisgovError, InvalidInput, NotFound
from gisgov.gridding import plans, service
from gisgov.security.roles import Perm, Principal

router = APIRouter(prefix="/api/grids", tags=["grids 网格划分"], dependencies=[Depends(json_only)])

READ = Depends(require(Perm.read_aggregates))
EDIT = Depends(require(Perm.edit_plans))
ACTIVATE = Depends(require(Perm.activate_plans))


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
    save: bool = Field(False, description="Store as a new draft version (author: the signed-in account).")
    note: str | None = Field(None, max_length=500)


class RepairBody(BaseModel):
    community: str
    plan: int | None = None
    save: bool = Field(False, description="Store as a new draft version (author: the signed-in account).")
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


class SaveBody(BaseModel):
    note: str | None = Field(None, max_length=500, description="Note stored with the draft.")


def _r(rules: Rules | None) -> dict | None:
    return rules.model_dump(exclude_none=True) if rules else None


def _community(p: Principal, code: str) -> str:
    in_scope_or_404(p, code, "社区 community")
    return code


def _author(p: Principal) -> str:
    return p.username


def aggregate_view(out: Any, p: Principal) -> Any:
    """Leave out special-group counts (``groups`` of a grid row) for roles without read_special_groups."""
    if p.exact_special_groups:
        return out
    if isinstance(out, dict):
        drop = "groups" in out and isinstance(out["groups"], dict) and "households" in out
        return {k: aggregate_view(v, p) for k, v in out.items() if not (drop and k == "groups")}
    if isinstance(out, list):
        return [aggregate_view(v, p) for v in out]
    return out


@router.post("/validate", summary="校验 Check a plan (stored or not): counts, compactness, every rule break located")
def validate(body: ValidateBody, conn: Connection = DB, p: Principal = READ) -> dict:
    _community(p, body.community)
    return aggregate_view(service.check(conn, body.community, version=body.plan, grids=body.grids,
                                        assignments=body.assignments, rules=_r(body.rules)), p)


@router.post("/feasibility", summary="可行性 Can any plan obey the rules? Which units prevent it?")
def feasibility(community: str = Query(...), conn: Connection = DB, rules: Rules | None = None,
                p: Principal = READ) -> dict:
    _community(p, community)
    return aggregate_view(service.feasibility(conn, community, rules=_r(rules)), p)


def _saved(request: Request, conn: Connection, p: Principal, community: str, out: dict, how: str) -> None:
    if out.get("version") is not None:
        audit(request, "plan_save", p, object=f"{community}/v{out['version']}", detail={"via": how}, conn=conn)


@router.post("/propose", summary="划分 Draft a plan (exact CP-SAT or heuristic, chosen automatically)")
def propose(body: ProposeBody, request: Request, conn: Connection = DB, p: Principal = EDIT) -> dict:
    _community(p, body.community)
    out = service.propose_plan(conn, body.community, rules=_r(body.rules), lock=body.lock, method=body.method,
                               seed=body.seed, time_limit_s=body.time_limit_s, closest=body.closest, save=body.save,
                               author=_author(p), note=body.note)
    if body.save:
        _saved(request, conn, p, body.community, out, "propose")
    return aggregate_view(out, p)


@router.post("/repair", summary="修复 Fix a plan's rule breaks moving as few buildings as possible")
def repair(body: RepairBody, request: Request, conn: Connection = DB, p: Principal = EDIT) -> dict:
    _community(p, body.community)
    out = service.repair_plan(conn, body.community, version=body.plan, save=body.save, author=_author(p),
                              time_limit_s=body.time_limit_s)
    if body.save:
        _saved(request, conn, p, body.community, out, "repair")
    return aggregate_view(out, p)


@router.get("/plans/{community}", summary="版本 Plan versions of a community")
def list_plans(community: str, conn: Connection = DB, p: Principal = READ) -> list[dict]:
    from gisgov.gridding.io import list_plans as lp

    _community(p, community)
    return aggregate_view(lp(conn, community), p)


@router.get("/plans/{community}/{version}", summary="A plan as GeoJSON with statistics and rule breaks")
def get_plan(community: str, version: int, conn: Connection = DB, p: Principal = READ) -> dict:
    _community(p, community)
    return aggregate_view(service.stored_plan_geojson(conn, community, version), p)


@router.post("/plans/{community}/{version}/activate", summary="启用 Activate a plan (atomic; codes renumbered W→E N→S)")
def activate(community: str, version: int, body: ActivateBody, request: Request, conn: Connection = DB,
             p: Principal = ACTIVATE) -> dict:
    _community(p, community)
    obj = f"{community}/v{version}"
    try:
        out = plans.activate(conn, community, version, force=body.force)
    except GisgovError as exc:
        if not isinstance(exc, NotFound):
            audit(request, "plan_activate", p, object=obj, result="failed",
                  detail={"force": body.force, "error": type(exc).__name__})
        raise
    audit(request, "plan_activate", p, object=obj, conn=conn,
          detail={"force": body.force, "previous": out.get("previous"), "buildings": out.get("buildings")})
    return out


@router.get("/plans/{community}/{version}/codes", summary="编码表 Code table of a plan (JSON or ?format=csv)")
def codes(community: str, version: int, format: Literal["json", "csv"] = "json", conn: Connection = DB,
          p: Principal = READ):
    _community(p, community)
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
def diff(community: str, a: int = Query(...), b: int = Query(...), conn: Connection = DB, p: Principal = READ) -> dict:
    _community(p, community)
    return aggregate_view(plans.diff(conn, community, a, b), p)


@router.get("/map/{community}", response_class=HTMLResponse, summary="地图 Map of a plan (default: active)")
def plan_map(community: str, plan: int | None = None, conn: Connection = DB, p: Principal = READ) -> HTMLResponse:
    from gisgov.maps.grid_plan_map import plan_map_html

    _community(p, community)
    fc = aggregate_view(service.stored_plan_geojson(conn, community, plan), p)
    return HTMLResponse(plan_map_html(fc, service._rules(conn, community, None), title=f"社区 {community} 网格方案"))


# --- edit sessions: the browser moves buildings/compounds and gets the two grids re-checked -------

@dataclass
class EditSession:
    owner: int  # app_user id of the account that opened it
    editor: Any  # gisgov.gridding.incremental.PlanEditor


_SESSIONS: OrderedDict[str, EditSession] = OrderedDict()
_LOCK = threading.Lock()
MAX_SESSIONS = 32


@router.post("/sessions", summary="编辑 Open an edit session on a plan (for incremental checks)")
def open_session(body: SessionBody, conn: Connection = DB, p: Principal = EDIT) -> dict:
    from gisgov.gridding.incremental import PlanEditor
    from gisgov.gridding.io import load_context, load_plan

    _community(p, body.community)
    ctx = load_context(conn, body.community)
    if body.assignments is not None:
        plan = service.plan_from_geojson(ctx, None, body.assignments)
    else:
        plan, _ = load_plan(conn, ctx, body.plan)
    ed = PlanEditor(ctx, plan)
    sid = uuid.uuid4().hex
    with _LOCK:
        _SESSIONS[sid] = EditSession(p.user_id, ed)
        while len(_SESSIONS) > MAX_SESSIONS:
            _SESSIONS.popitem(last=False)
    return {"session": sid, "community": body.community, "grids": list(ed.codes)}


def edit_session(sid: str, p: Principal):
    """The editor of session ``sid`` if ``p`` opened it (and its community is still in p's area); else 404."""
    with _LOCK:
        s = _SESSIONS.get(sid)
    if s is None or s.owner != p.user_id or not p.covers(s.editor.ctx.code):
        raise NotFound(f"编辑会话不存在 edit session {sid} not found (expired?)")
    return s.editor


@router.post("/sessions/{sid}/move", summary="移动 Move a building or compound to another grid; re-check both grids")
def move(sid: str, body: MoveBody, request: Request, p: Principal = EDIT) -> dict:
    if (body.building is None) == (body.compound is None):
        raise InvalidInput("give exactly one of building or compound")
    ed = edit_session(sid, p)
    out = ed.move(body.to, building=body.building, compound=body.compound)
    audit(request, "plan_edit", p, object=ed.ctx.code,
          detail={"session": sid, "to": body.to, "building": body.building, "compound": body.compound})
    return aggregate_view(out, p)


@router.get("/sessions/{sid}", summary="The session's plan fully validated")
def session_report(sid: str, p: Principal = READ) -> dict:
    from gisgov.gridding.validate import public

    return aggregate_view(public(edit_session(sid, p).report()), p)


@router.post("/sessions/{sid}/save", summary="Save the session's plan as a new draft version")
def session_save(sid: str, request: Request, body: SaveBody, conn: Connection = DB, p: Principal = EDIT) -> dict:
    from gisgov.gridding.io import save_plan

    ed = edit_session(sid, p)
    version = save_plan(conn, ed.ctx, ed.plan(), author=_author(p), note=body.note or "edited", method="manual")
    audit(request, "plan_save", p, object=f"{ed.ctx.code}/v{version}", detail={"via": "session", "session": sid},
          conn=conn)
    return {"version": version}
