"""/api/grids: validate, feasibility, propose, repair, plans (versions, activation, diff, code table),
edit sessions for live checking in the browser, and the plan map.

Who may do what (scope = the caller's area; a community outside it answers 404, not 403):

- reading plans, codes, diffs, maps, checks and feasibility: ``read_aggregates``;
- proposing, repairing, edit sessions and saving drafts: ``edit_plans``;
- activating a plan: ``activate_plans`` (audited ``plan_activate``; saves ``plan_save``; moves ``plan_edit``).

An edit session belongs to the account that opened it (another account's session id answers 404). It
is stored in PostgreSQL (:mod:`gisgov.gridding.sessions`): it survives restarts, works with several
workers and is never evicted; untouched for ``GISGOV_EDIT_SESSION_IDLE_HOURS`` it answers 410 Gone
(reopen it with ``{"resume": "<id>"}`` to keep its moves). A move or save may send the session
``revision`` the client last saw; a different stored revision (another tab) answers 409.

Conflicting edits: every saved draft records ``parent_version`` (the active version its work started
from). Activating a plan whose parent is no longer the active version answers 409 with ``conflict``:
the active version, when and by whom it was activated, how many buildings differ, a link to the diff;
the draft stays. ``{"rebase": true}`` activates it anyway (after looking).

Budgets: ``time_limit_s`` of propose and repair is capped at ``GISGOV_SOLVER_MAX_S`` (the answer's
``time_limit_s`` is the time actually allowed); ``lock`` and ``assignments`` lists hold at most
``GISGOV_MAX_LIST_ITEMS`` entries (422 beyond).

Writes are POSTs with JSON bodies only (:func:`gisgov.api.json_only.json_only`). Special-group counts
per grid are left out for roles that may not read special groups (planners, viewers).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection

from gisgov.api.deps import DB, audit, in_scope_or_404, require
from gisgov.api.errors import error_response
from gisgov.api.json_only import json_only
from gisgov.api.schemas import grids as schemas
from gisgov.api.schemas.answer import KEEP_SHAPE, JobAccepted
from gisgov.config import Settings
from gisgov.errors import GisgovError, InvalidInput, NotFound
from gisgov.gridding import plans, service, sessions
from gisgov.security.roles import Perm, Principal

router = APIRouter(prefix="/api/grids", tags=["grids 网格划分"], dependencies=[Depends(json_only)])

READ = Depends(require(Perm.read_aggregates))
EDIT = Depends(require(Perm.edit_plans))
ACTIVATE = Depends(require(Perm.activate_plans))

#: defaults of the request budgets, for the schema's descriptions (the configured values apply)
MAX_LIST_ITEMS = Settings.model_fields["max_list_items"].default
SOLVER_MAX_S = Settings.model_fields["solver_max_s"].default
_LIST_NOTE = f" At most GISGOV_MAX_LIST_ITEMS entries (default {MAX_LIST_ITEMS}); more answers 422."
_CAP_NOTE = (
    f" Capped at GISGOV_SOLVER_MAX_S (default {SOLVER_MAX_S:g} s); the answer's time_limit_s is the "
    "time actually allowed."
)
#: plan versions are 32-bit in the database; a larger number names no plan (422, never echoed in a 404)
MAX_VERSION = 2**31 - 1
VERSION = Path(..., ge=1, le=MAX_VERSION, description="方案版本 plan version")
CONFLICT = {
    409: {
        "description": "冲突 conflict: the plan was made from a version that is no longer active "
        "(body: detail, error, conflict), or it is already active / breaks rules"
    }
}
SESSION = {
    404: {"description": "no such session, or another account's"},
    410: {"description": "会话已过期 the session expired (idle) or was closed: open a new one"},
}


class Rules(BaseModel):
    min_households: int | None = Field(None, description="Households per grid, minimum (default 300).")
    max_households: int | None = Field(None, description="Households per grid, maximum (default 500).")
    max_people: int | None = Field(None, description="People per grid, maximum (default 1000).")
    tolerance_m: float | None = Field(None, description="Gaps/overlaps narrower than this (m) are ignored.")


class ValidateBody(BaseModel):
    community: str
    plan: int | None = Field(
        None,
        ge=1,
        le=MAX_VERSION,
        description="Stored plan version (when neither grids nor assignments are given; default active).",
    )
    grids: dict[str, Any] | None = Field(
        None, description="GeoJSON FeatureCollection of grid polygons (lon/lat), property `code`."
    )
    assignments: dict[str, str | None] | None = Field(None, description="building code → grid code." + _LIST_NOTE)
    rules: Rules | None = None


class ProposeBody(BaseModel):
    community: str
    rules: Rules | None = None
    lock: list[str] = Field(
        default_factory=list, description="Grid codes of the active plan kept as they are." + _LIST_NOTE
    )
    method: Literal["auto", "exact", "heuristic"] = "auto"
    seed: int = 0
    time_limit_s: float = Field(10.0, gt=0, le=600, description="Solver time (s)." + _CAP_NOTE)
    closest: bool = Field(False, description="When no plan obeys the rules, return the closest plan.")
    save: bool = Field(False, description="Store as a new draft version (author: the signed-in account).")
    note: str | None = Field(None, max_length=500)
    background: bool = Field(
        False,
        description="Run as a background job: 202 with the job's URL (GET /api/jobs/{id}); "
        "the result is always saved as a draft.",
    )


class RepairBody(BaseModel):
    community: str
    plan: int | None = Field(
        None, ge=1, le=MAX_VERSION, description="方案版本 plan version (default: the active plan)."
    )
    save: bool = Field(False, description="Store as a new draft version (author: the signed-in account).")
    background: bool = Field(
        False, description="Run as a background job (202; GET /api/jobs/{id}); the result is always saved as a draft."
    )
    time_limit_s: float = Field(5.0, gt=0, le=600, description="Solver time (s)." + _CAP_NOTE)


class ActivateBody(BaseModel):
    force: bool = Field(False, description="Activate even with rule breaks.")
    rebase: bool = Field(
        False,
        description="Activate even though another version was activated after this plan "
        "was made (answered 409 without it); the plan's parent becomes the "
        "current active version.",
    )


class SessionBody(BaseModel):
    community: str
    plan: int | None = Field(
        None, ge=1, le=MAX_VERSION, description="Stored plan version to edit (default: the active plan)."
    )
    assignments: dict[str, str | None] | None = Field(None, description="building code → grid code." + _LIST_NOTE)
    resume: str | None = Field(
        None,
        max_length=64,
        description="Id of an earlier (e.g. expired) session of yours: "
        "the new session continues its moves; it is closed.",
    )


class MoveBody(BaseModel):
    """Exactly one of ``building`` or ``compound`` (the schema says so with ``oneOf``)."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["building"]}, {"required": ["compound"]}]})

    to: str = Field(..., description="Target grid code.")
    building: str = Field(None, description="Building code to move (or give compound).")  # type: ignore[assignment]
    compound: str = Field(None, description="Compound code to move, all its buildings (or give building).")  # type: ignore[assignment]
    revision: int | None = Field(
        None,
        description="The session revision this client last saw; another stored "
        "revision (e.g. moves from another tab) answers 409.",
    )


class EditBody(BaseModel):
    """One boundary edit of an edit session (what each ``op`` reads is listed per field)."""

    model_config = ConfigDict(extra="forbid")

    op: Literal["assign", "draw", "reshape", "split", "merge", "delete", "restore"] = Field(
        ...,
        description="assign: paint/lasso units into `grid`; draw: a new grid from a polygon; reshape: `grid`'s new "
        "outline; split: cut `grid` along a line; merge: `other` into `grid`; delete: an empty `grid`; restore: "
        "undo/redo (`state`).",
    )
    revision: int | None = Field(None, description="As for a move: another stored revision answers 409.")
    grid: str | None = Field(
        None,
        max_length=64,
        description="assign: target grid; reshape/split: the grid; merge: the grid kept; delete: the grid removed.",
    )
    other: str | None = Field(None, max_length=64, description="merge: the grid absorbed into `grid` (then removed).")
    buildings: list[str] | None = Field(None, description="assign: building codes to move." + _LIST_NOTE)
    compounds: list[str] | None = Field(
        None, description="assign: compound codes to move (all their buildings)." + _LIST_NOTE
    )
    geometry: dict[str, Any] | None = Field(
        None,
        description="GeoJSON geometry, WGS84 [lon, lat]: a Polygon (draw, reshape, assign lasso) or a LineString "
        "(split). A unit is inside when its point is; outlines are rebuilt from the units' territory cells.",
    )
    state: dict[str, Any] | None = Field(
        None,
        description='restore: {"codes": [grid codes in order], "assignments": {building code or "compound:<code>": '
        "grid code or null}} (the `undo` of an earlier answer).",
    )


class DeleteBody(BaseModel):
    """The body of a draft's deletion (writes take JSON bodies: send ``{}``)."""

    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(None, max_length=500, description="Why (kept in the audit log).")


class SaveBody(BaseModel):
    note: str | None = Field(None, max_length=500, description="Note stored with the draft.")
    revision: int | None = Field(None, description="As for a move: 409 when the session changed elsewhere.")
    rebase: bool = Field(
        False,
        description="Save even though another version was activated since the session was "
        "opened (the draft's parent becomes the active version); without it "
        "such a save answers 409 with what changed and nothing is saved.",
    )


def _r(rules: Rules | None) -> dict | None:
    return rules.model_dump(exclude_none=True) if rules else None


def _community(p: Principal, code: str) -> str:
    in_scope_or_404(p, code, "社区 community")
    return code


def _author(p: Principal) -> str:
    return p.username


def _bounded(request: Request, name: str, items) -> None:
    """Refuse lists (or mappings) longer than GISGOV_MAX_LIST_ITEMS (422)."""
    limit = request.app.state.settings.max_list_items
    if items is not None and len(items) > limit:
        raise InvalidInput(f"列表过长 {name}: {len(items)} entries, at most {limit} (GISGOV_MAX_LIST_ITEMS)")


def _time_limit(request: Request, asked: float) -> float:
    """The solver time a request gets: what it asked for, at most GISGOV_SOLVER_MAX_S."""
    return min(float(asked), float(request.app.state.settings.solver_max_s))


def _with_limit(out: dict, asked: float, allowed: float) -> dict:
    out["time_limit_s"] = allowed
    if allowed < asked:
        out["time_limit_requested_s"] = asked
    return out


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


@router.post(
    "/validate",
    response_model=schemas.CheckAnswer,
    **KEEP_SHAPE,
    summary="校验 Check a plan (stored or not): counts, compactness, every rule break located",
)
def validate(body: ValidateBody, request: Request, conn: Connection = DB, p: Principal = READ) -> dict:
    _community(p, body.community)
    _bounded(request, "assignments", body.assignments)
    return aggregate_view(
        service.check(
            conn,
            body.community,
            version=body.plan,
            grids=body.grids,
            assignments=body.assignments,
            rules=_r(body.rules),
        ),
        p,
    )


@router.post(
    "/feasibility",
    response_model=schemas.FeasibilityAnswer,
    **KEEP_SHAPE,
    summary="可行性 Can any plan obey the rules? Which units prevent it?",
)
def feasibility(
    community: str = Query(...), conn: Connection = DB, rules: Rules | None = None, p: Principal = READ
) -> dict:
    _community(p, community)
    return aggregate_view(service.feasibility(conn, community, rules=_r(rules)), p)


def _saved(request: Request, conn: Connection, p: Principal, community: str, out: dict, how: str) -> None:
    if out.get("version") is not None:
        audit(request, "plan_save", p, object=f"{community}/v{out['version']}", detail={"via": how}, conn=conn)


def _background(request: Request, p: Principal, kind: str, community: str, params: dict, work) -> JSONResponse:
    """Start ``work(conn) -> dict`` as an analysis job under the caller's scope; 202 with its URL."""
    from gisgov.ingest.jobs import scoped_engine
    from gisgov.jobs import analysis

    base = request.app.state.engine
    job = analysis.create(base, p, kind, {"community": community, **params})

    def done(conn: Connection) -> dict:
        out = work(conn)
        if out.get("version") is not None:
            from gisgov.security import audit as _audit

            _audit.record(
                conn,
                "plan_save",
                actor=p,
                object=f"{community}/v{out['version']}",
                client=request.client.host if request.client else None,
                detail={"via": f"{kind} job", "job": job},
            )
        return aggregate_view(out, p)

    analysis.start(base, scoped_engine(base, p.db_scope), job, request.app.state.settings.analysis_timeout_s, done)
    url = f"/api/jobs/{job}"
    return JSONResponse(
        status_code=202, content={"job": job, "status": "queued", "status_url": url}, headers={"Location": url}
    )


JOB_ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {"model": JobAccepted, "description": "后台任务 background job started (background: true): poll status_url"}
}


@router.post(
    "/propose",
    response_model=schemas.ProposeAnswer,
    **KEEP_SHAPE,
    summary="划分 Draft a plan (exact CP-SAT or heuristic, chosen automatically)",
    responses=JOB_ACCEPTED,
)
def propose(body: ProposeBody, request: Request, conn: Connection = DB, p: Principal = EDIT):
    _community(p, body.community)
    _bounded(request, "lock", body.lock)
    limit = _time_limit(request, body.time_limit_s)
    if body.background:

        def work(c: Connection) -> dict:
            return _with_limit(
                service.propose_plan(
                    c,
                    body.community,
                    rules=_r(body.rules),
                    lock=body.lock,
                    method=body.method,
                    seed=body.seed,
                    time_limit_s=limit,
                    closest=body.closest,
                    save=True,
                    author=_author(p),
                    note=body.note,
                ).to_dict(),
                body.time_limit_s,
                limit,
            )

        return _background(
            request, p, "grid_propose", body.community, {"method": body.method, "time_limit_s": limit}, work
        )
    out = service.propose_plan(
        conn,
        body.community,
        rules=_r(body.rules),
        lock=body.lock,
        method=body.method,
        seed=body.seed,
        time_limit_s=limit,
        closest=body.closest,
        save=body.save,
        author=_author(p),
        note=body.note,
    ).to_dict()
    if body.save:
        _saved(request, conn, p, body.community, out, "propose")
    return aggregate_view(_with_limit(out, body.time_limit_s, limit), p)


@router.post(
    "/repair",
    response_model=schemas.RepairAnswer,
    **KEEP_SHAPE,
    summary="修复 Fix a plan's rule breaks moving as few buildings as possible",
    responses=JOB_ACCEPTED,
)
def repair(body: RepairBody, request: Request, conn: Connection = DB, p: Principal = EDIT):
    _community(p, body.community)
    limit = _time_limit(request, body.time_limit_s)
    if body.background:

        def work(c: Connection) -> dict:
            return _with_limit(
                service.repair_plan(
                    c, body.community, version=body.plan, save=True, author=_author(p), time_limit_s=limit
                ).to_dict(),
                body.time_limit_s,
                limit,
            )

        return _background(request, p, "grid_repair", body.community, {"plan": body.plan, "time_limit_s": limit}, work)
    out = service.repair_plan(
        conn, body.community, version=body.plan, save=body.save, author=_author(p), time_limit_s=limit
    ).to_dict()
    if body.save:
        _saved(request, conn, p, body.community, out, "repair")
    return aggregate_view(_with_limit(out, body.time_limit_s, limit), p)


@router.get(
    "/plans/{community}",
    response_model=list[schemas.PlanVersion],
    **KEEP_SHAPE,
    summary="版本 Plan versions of a community (with parent_version)",
)
def list_plans(community: str, conn: Connection = DB, p: Principal = READ) -> list[dict]:
    # not kept by the answer cache: saving a draft does not move the data version (migration 0020)
    from gisgov.gridding.io import list_plans as lp

    _community(p, community)
    return aggregate_view(lp(conn, community), p)


@router.get(
    "/plans/{community}/{version}",
    response_model=schemas.StoredPlanAnswer,
    **KEEP_SHAPE,
    summary="方案 A plan as GeoJSON with statistics and rule breaks",
)
def get_plan(community: str, version: int = VERSION, conn: Connection = DB, p: Principal = READ) -> dict:
    _community(p, community)
    return aggregate_view(service.stored_plan_geojson(conn, community, version).to_dict(), p)


@router.delete(
    "/plans/{community}/{version}",
    response_model=schemas.PlanDeleted,
    **KEEP_SHAPE,
    responses={409: {"description": "不是草稿 the version is active or archived: only drafts can be deleted"}},
    summary="删除草稿 Delete a draft version (the active and archived versions stay: 409)",
)
def delete_plan(
    community: str,
    body: DeleteBody,
    request: Request,
    version: int = VERSION,
    conn: Connection = DB,
    p: Principal = EDIT,
) -> dict[str, Any]:
    from gisgov.gridding.io import delete_draft

    _community(p, community)
    obj = f"{community}/v{version}"
    try:
        delete_draft(conn, community, version)
    except GisgovError as exc:
        if not isinstance(exc, NotFound):
            audit(request, "plan_delete", p, object=obj, result="failed", detail={"error": type(exc).__name__})
        raise
    audit(request, "plan_delete", p, object=obj, conn=conn, detail={"note": body.note} if body.note else None)
    return {"community": community, "version": version, "deleted": True}


@router.get(
    "/plans/{community}/{version}/export",
    response_class=Response,
    summary="导出方案 A plan's grids as a GeoPackage or a zipped Shapefile (EPSG:4490, UTF-8)",
    responses={
        200: {
            "description": "方案文件 the plan's grids (code, name, households, people, status): a GeoPackage, or a "
            "zip holding a Shapefile (.shp, .shx, .dbf, .prj, .cpg = UTF-8)",
            "content": {
                "application/geopackage+sqlite3": {"schema": {"type": "string", "format": "binary"}},
                "application/zip": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
def export_plan(
    community: str,
    version: int = VERSION,
    format: Literal["gpkg", "shp"] = Query("gpkg", description="gpkg (GeoPackage) or shp (zipped Shapefile)"),
    conn: Connection = DB,
    p: Principal = READ,
) -> Response:
    from gisgov.gridding.io import EXPORT_FORMATS, export_filename
    from gisgov.gridding.io import export_plan as export

    _community(p, community)
    data = export(conn, community, version, format)
    return Response(
        data,
        media_type=EXPORT_FORMATS[format][2],
        headers={"Content-Disposition": f'attachment; filename="{export_filename(community, version, format)}"'},
    )


@router.post(
    "/plans/{community}/{version}/activate",
    response_model=schemas.ActivateAnswer,
    **KEEP_SHAPE,
    responses=CONFLICT,
    summary="启用 Activate a plan (atomic; codes renumbered W→E N→S; 409 if made from a version no longer active)",
)
def activate(
    community: str,
    body: ActivateBody,
    request: Request,
    version: int = VERSION,
    conn: Connection = DB,
    p: Principal = ACTIVATE,
):
    _community(p, community)
    obj = f"{community}/v{version}"
    opts = {"force": body.force, "rebase": body.rebase}
    try:
        out = plans.activate(conn, community, version, force=body.force, rebase=body.rebase)
    except plans.ParentConflict as exc:
        # nothing was written: the transaction only held the community's lock
        audit(
            request,
            "plan_activate",
            p,
            object=obj,
            result="failed",
            detail={
                **opts,
                "error": "PlanConflict",
                "parent_version": exc.info["parent_version"],
                "active_version": exc.info["active_version"],
            },
        )
        return error_response(409, str(exc), "PlanConflict", conflict=exc.info)
    except GisgovError as exc:
        if not isinstance(exc, NotFound):
            audit(
                request, "plan_activate", p, object=obj, result="failed", detail={**opts, "error": type(exc).__name__}
            )
        raise
    audit(
        request,
        "plan_activate",
        p,
        object=obj,
        conn=conn,
        detail={
            **opts,
            "previous": out.get("previous"),
            "buildings": out.get("buildings"),
            "rebased": out.get("rebased"),
        },
    )
    return out


@router.get(
    "/plans/{community}/{version}/codes",
    response_model=list[schemas.CodeRow],
    **KEEP_SHAPE,
    summary="编码表 Code table of a plan (JSON or ?format=csv)",
    responses={
        200: {
            "description": "编码表 the code table: JSON rows, or with ?format=csv a UTF-8 CSV file (with BOM)",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    },
)
def codes(
    community: str,
    version: int = VERSION,
    format: Literal["json", "csv"] = "json",
    conn: Connection = DB,
    p: Principal = READ,
):
    _community(p, community)
    from gisgov.gridding.code_table import code_table_csv, code_table_filename

    rows = plans.code_table(conn, community, version)
    if format == "json":
        return rows
    return Response(
        code_table_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{code_table_filename(community, version)}"'},
    )


@router.get(
    "/diff/{community}",
    response_model=schemas.DiffAnswer,
    **KEEP_SHAPE,
    summary="对比 What changed between two versions",
)
def diff(
    community: str,
    a: int = Query(..., ge=1, le=MAX_VERSION, description="原版本 version a"),
    b: int = Query(..., ge=1, le=MAX_VERSION, description="新版本 version b"),
    conn: Connection = DB,
    p: Principal = READ,
) -> dict:
    _community(p, community)
    return aggregate_view(plans.diff(conn, community, a, b), p)


@router.get(
    "/map/{community}",
    response_class=HTMLResponse,
    summary="地图 Map of a plan (default: active)",
    responses={200: {"description": "地图页面 an HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}},
)
def plan_map(
    community: str,
    plan: int | None = Query(None, ge=1, le=MAX_VERSION, description="方案版本 plan version (default: active)"),
    conn: Connection = DB,
    p: Principal = READ,
) -> HTMLResponse:
    from gisgov.maps.plan_page import plan_map_page

    _community(p, community)
    return HTMLResponse(plan_map_page(conn, community, plan, view=lambda fc: aggregate_view(fc, p)))


# --- edit sessions: the browser moves buildings/compounds and gets the two grids re-checked -------
# stored in PostgreSQL (gisgov.gridding.sessions); see the module's docstring


def edit_session(
    conn: Connection, request: Request, sid: str, p: Principal, *, lock: bool = False, live: bool = True
) -> sessions.Session:
    """Session ``sid`` if ``p`` opened it and its community is still in p's area (else 404); 410 if it
    expired or was closed (with ``live``)."""
    return sessions.get(
        conn,
        sid,
        owner_id=p.user_id,
        covers=p.covers,
        lock=lock,
        live=live,
        idle_hours=request.app.state.settings.edit_session_idle_hours,
    )


def _opened(s_id: str, community: str, ed, base: int | None, revision: int, request: Request) -> dict:
    return {
        "session": s_id,
        "community": community,
        "grids": list(ed.codes),
        "revision": revision,
        "base_version": base,
        "idle_hours": request.app.state.settings.edit_session_idle_hours,
    }


@router.post(
    "/sessions",
    response_model=schemas.SessionOpened,
    **KEEP_SHAPE,
    responses=SESSION,
    summary="编辑 Open an edit session on a plan (for incremental checks), or resume an expired one",
)
def open_session(body: SessionBody, request: Request, conn: Connection = DB, p: Principal = EDIT) -> dict:
    from gisgov.gridding.io import active_version, load_context, load_plan, started_on

    _community(p, body.community)
    _bounded(request, "assignments", body.assignments)
    sessions.purge(conn, p.user_id, request.app.state.settings.edit_session_idle_hours)
    if body.resume is not None:
        old = edit_session(conn, request, body.resume, p, lock=True, live=False)
        if old.community != body.community:
            raise InvalidInput(
                f"编辑会话不属于该社区 session {body.resume} is of community {old.community}, not {body.community}"
            )
        new = edit_session(conn, request, sessions.resume(conn, old), p)
        ed = sessions.editor(conn, new)
        return {**_opened(new.id, body.community, ed, new.base_version, new.revision, request), "resumed": old.id}
    ctx = load_context(conn, body.community)
    if body.assignments is not None:
        base = active_version(conn, body.community)
        plan = service.plan_from_geojson(ctx, None, body.assignments)
    else:
        base = started_on(conn, body.community, body.plan)
        plan, _ = load_plan(conn, ctx, body.plan)
    sid, ed = sessions.open_session(conn, ctx, plan, owner_id=p.user_id, base_version=base)
    return _opened(sid, body.community, ed, base, 0, request)


@router.post(
    "/sessions/{sid}/move",
    response_model=schemas.MoveAnswer,
    **KEEP_SHAPE,
    responses={**SESSION, 409: {"description": "the session changed elsewhere"}},
    summary="移动 Move a building or compound to another grid; re-check both grids",
)
def move(sid: str, body: MoveBody, request: Request, conn: Connection = DB, p: Principal = EDIT) -> dict:
    if (body.building is None) == (body.compound is None):
        raise InvalidInput("楼栋与小区只能给出其一 give exactly one of building or compound")
    s = edit_session(conn, request, sid, p, lock=True)
    sessions.check_revision(s, body.revision)
    out = sessions.move(conn, s, body.to, building=body.building, compound=body.compound)
    audit(
        request,
        "plan_edit",
        p,
        object=s.community,
        conn=conn,
        detail={
            "session": s.id,
            "to": body.to,
            "building": body.building,
            "compound": body.compound,
            "revision": out["revision"],
        },
    )
    return aggregate_view(out, p)


EDIT_RESPONSES: dict[int | str, dict[str, Any]] = {k: v for k, v in SESSION.items()}  # noqa: C416  (widens the key type)
EDIT_RESPONSES[400] = {"description": "编辑被拒绝 the edit is refused (a rule named in the message)"}
EDIT_RESPONSES[409] = {"description": "the session changed elsewhere"}


@router.post(
    "/sessions/{sid}/edit",
    response_model=schemas.EditAnswer,
    **KEEP_SHAPE,
    responses=EDIT_RESPONSES,
    summary="编辑边界 Draw, reshape, split, merge, delete or paint grids; undo/redo with restore",
)
def edit(sid: str, body: EditBody, request: Request, conn: Connection = DB, p: Principal = EDIT) -> dict[str, Any]:
    from gisgov.gridding.shapes import vertex_count

    _bounded(request, "buildings", body.buildings)
    _bounded(request, "compounds", body.compounds)
    if body.state is not None:
        for part in ("codes", "assignments"):
            items = body.state.get(part)
            _bounded(request, f"state.{part}", items if isinstance(items, list | dict) else None)
    limit = request.app.state.settings.max_vertices
    n = vertex_count(body.geometry)
    if n > limit:
        raise InvalidInput(f"顶点过多 geometry: {n} vertices, at most {limit} (GISGOV_MAX_VERTICES)")
    s = edit_session(conn, request, sid, p, lock=True)
    sessions.check_revision(s, body.revision)
    out = sessions.edit(
        conn,
        s,
        body.op,
        grid=body.grid,
        other=body.other,
        buildings=body.buildings,
        compounds=body.compounds,
        geometry=body.geometry,
        state=body.state,
    )
    audit(
        request,
        "plan_edit",
        p,
        object=s.community,
        conn=conn,
        detail={
            "session": s.id,
            "op": body.op,
            "grid": body.grid,
            "other": body.other,
            "added": out["added"],
            "removed": out["removed"],
            "moved": out["moved"],
            "revision": out["revision"],
        },
    )
    answer: dict[str, Any] = aggregate_view(out, p)
    return answer


@router.get(
    "/sessions/{sid}",
    response_model=schemas.SessionReport,
    **KEEP_SHAPE,
    responses=SESSION,
    summary="会话校验 The session's plan fully validated",
)
def session_report(sid: str, request: Request, conn: Connection = DB, p: Principal = READ) -> dict:
    from gisgov.gridding.validate import public

    s = edit_session(conn, request, sid, p)
    out = public(sessions.editor(conn, s).report())
    sessions.touch(conn, s)
    out["session"] = {"id": s.id, "revision": s.revision, "base_version": s.base_version}
    return aggregate_view(out, p)


@router.post(
    "/sessions/{sid}/save",
    response_model=schemas.SessionSaved,
    **KEEP_SHAPE,
    responses={
        **SESSION,
        409: {
            "description": "the session changed elsewhere, or another "
            "version was activated since it was opened (body: detail, error, conflict; nothing saved; confirm with rebase)"
        },
    },
    summary="Save the session's plan as a new draft version (parent: the version the session started from)",
)
def session_save(sid: str, request: Request, body: SaveBody, conn: Connection = DB, p: Principal = EDIT):
    from gisgov.gridding.io import plan_row, save_plan

    s = edit_session(conn, request, sid, p, lock=True)
    sessions.check_revision(s, body.revision)
    current = plan_row(conn, s.community, None)
    active = current["version"] if current else None
    parent = s.base_version
    if active != parent:
        info = plans.conflict_info(conn, s.community, None, parent, current)
        if not body.rebase:
            # saving on top of a version that is no longer current: nothing saved, the session (and its
            # moves) stays as it is; the planner looks at what changed and confirms with {"rebase": true}
            audit(
                request,
                "plan_save",
                p,
                object=s.community,
                result="failed",
                detail={
                    "via": "session",
                    "session": s.id,
                    "error": "PlanConflict",
                    "parent_version": parent,
                    "active_version": active,
                },
            )
            return error_response(409, plans.conflict_message(info, saving=True), "PlanConflict", conflict=info)
        parent = active
    ed = sessions.editor(conn, s)
    version = save_plan(
        conn, ed.ctx, ed.plan(), author=_author(p), note=body.note or "edited", method="manual", parent_version=parent
    )
    sessions.touch(conn, s)
    audit(
        request,
        "plan_save",
        p,
        object=f"{s.community}/v{version}",
        conn=conn,
        detail={
            "via": "session",
            "session": s.id,
            "revision": s.revision,
            "parent_version": parent,
            "rebased_from": s.base_version if parent != s.base_version else None,
        },
    )
    out = {"version": version, "parent_version": parent, "revision": s.revision, "conflict": None}
    if parent != s.base_version:
        out["rebased"] = {"from": s.base_version, "to": parent}
    return out
