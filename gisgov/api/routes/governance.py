"""Staff 一格三员 and compound rules API (issue 13, items 2 and 4).

Staff (grids of the active plans in the caller's own node; a grid-bound account: its grid):

- ``GET /api/staff?code=``: per grid counts by role, gaps (缺网格长 / 缺专职网格员), households,
  caseload (households per 专职网格员) and its flag; the people (role, name, masked phone) only for
  roles with ``read_personal`` (audited ``read_personal``), counts only for the others.
- ``GET /api/staff/gaps?code=&geometry=point|polygon``: grids with a gap or an over-ceiling caseload as
  GeoJSON (label point or polygon, WGS84) for the map.
- ``POST /api/staff``, ``PATCH /api/staff/{id}``, ``DELETE /api/staff/{id}``: assign, edit, remove
  (管理员 admin and 社区工作者 community_staff in their area; audited ``staff_edit``).
- ``GET /api/staff/template``: the XLSX template; ``POST /api/staff/import`` (multipart ``file``,
  ``mode`` replace|append, ``dry_run``): all or nothing; 422 with ``rows`` (row, column, rule) when
  any row is wrong; audited ``import``.

Compounds (the caller's area; a grid-bound account sees its community):

- ``GET /api/compounds/rules``: the configured rules and thresholds.
- ``GET /api/compounds/check?code=``: breaches and per-community figures (property-mode shares, 老旧小区
  ratio); ``GET /api/compounds/breaches?code=``: the breaching compounds as GeoJSON polygons.
- ``GET /api/compounds/{code}`` and ``PATCH /api/compounds/{code}`` (``version`` + changed fields of
  has_party_org, has_service_point, property_mode, year_built; stale version 409; audited
  ``compound_edit``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection

from gisgov.api.answers import cached, model_json
from gisgov.api.deps import DB, audit, client_addr, require
from gisgov.api.errors import error_response
from gisgov.api.schemas import governance as schemas
from gisgov.api.schemas.answer import KEEP_SHAPE
from gisgov.errors import GisgovError, InvalidInput
from gisgov.governance import store, xlsx
from gisgov.governance.compounds import load_rules
from gisgov.governance.settings import get_governance_settings
from gisgov.security import audit as audit_log
from gisgov.security.roles import Perm, Principal

router = APIRouter()
STAFF_TAG = "staff 网格员"
COMPOUND_TAG = "compounds 小区"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CODE = r"^([0-9]{9}|[0-9]{12}|[0-9]{15})$"
_CHUNK = 1 << 16


def _ceiling() -> float:
    return get_governance_settings().staff_max_caseload


def _vault(request: Request):
    from gisgov.security.pii import Vault

    return Vault.from_settings(request.app.state.settings)


def _denied(request: Request, action: str, p: Principal, obj: str | None, exc: GisgovError, detail: dict) -> None:
    if exc.status_code in (403, 404, 409):
        audit(
            request,
            action,
            p,
            object=obj,
            result="denied",
            detail=detail | {"status": exc.status_code, "reason": str(exc)[:300]},
        )


# ---------------------------------------------------------------- staff


class StaffIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grid: str = Field(..., pattern=r"^[0-9]{15}$", description="网格编码 grid code (active plan)")
    role: str = Field(..., max_length=20, description="角色 网格长 / 专职网格员 / 兼职网格员 / 网格指导员 / 信息员")
    name: str = Field(..., min_length=1, max_length=50, description="姓名 name")
    phone: str | None = Field(None, max_length=20, description="手机号 phone (stored encrypted, answered masked)")


class StaffPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grid: str | None = Field(None, pattern=r"^[0-9]{15}$", description="移到另一网格 move to another grid")
    role: str | None = Field(None, max_length=20)
    name: str | None = Field(None, min_length=1, max_length=50)
    phone: str | None = Field(None, max_length=20, description="新手机号 new phone; empty string removes it")


@router.get(
    "/api/staff",
    response_model=schemas.StaffOverview,
    **KEEP_SHAPE,
    tags=[STAFF_TAG],
    summary="网格员配备与工作量 Staff per grid: gaps, caseload (names by role)",
)
def list_staff(
    request: Request,
    conn: Connection = DB,
    p: Principal = Depends(require(Perm.read_aggregates)),
    code: str | None = Query(None, pattern=CODE, description="街道/社区/网格编码 street/community/grid code"),
    problems: bool = Query(False, description="只列有缺口或超负荷的网格 only grids with a gap or over the ceiling"),
) -> dict:
    out = store.staff_overview(conn, p, code=code, ceiling=_ceiling(), only_problems=problems)
    if out["names_shown"]:
        audit_log.record(
            conn,
            "read_personal",
            actor=p,
            object=f"grid_staff:{out['area'] or 'all'}",
            client=client_addr(request),
            detail={"count": out["summary"]["staff"]},
        )
    return out


@router.get(
    "/api/staff/gaps",
    response_model=schemas.StaffGaps,
    **KEEP_SHAPE,
    tags=[STAFF_TAG],
    summary="网格员缺口地图 Grids with staff gaps or overload (GeoJSON)",
)
def staff_gaps(
    request: Request,
    conn: Connection = DB,
    p: Principal = Depends(require(Perm.read_aggregates)),
    code: str | None = Query(None, pattern=CODE),
    geometry: Literal["point", "polygon"] = Query("point", description="标注点 label point or polygon"),
) -> Response:
    """Kept per worker by role, area and data version (:mod:`gisgov.api.answers`; staff, grids and residents
    all move it)."""
    ceiling = _ceiling()
    return cached(
        request,
        conn,
        p,
        lambda: model_json(
            schemas.StaffGaps, store.gaps_geojson(conn, p, code=code, ceiling=ceiling, geometry=geometry)
        ),
        variant=ceiling,
    )


@router.get(
    "/api/staff/template",
    tags=[STAFF_TAG],
    summary="网格员导入模板 XLSX template (网格编码, 角色, 姓名, 手机号)",
    response_class=Response,
    responses={
        200: {
            "description": "导入模板 the XLSX template",
            "content": {XLSX_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
def staff_template(p: Principal = Depends(require(Perm.read_aggregates))) -> Response:
    return Response(
        xlsx.template_bytes(),
        media_type=XLSX_TYPE,
        headers={"Content-Disposition": "attachment; filename*=UTF-8''staff-template.xlsx"},
    )


@router.post(
    "/api/staff",
    status_code=201,
    response_model=schemas.StaffMember,
    **KEEP_SHAPE,
    tags=[STAFF_TAG],
    summary="配备网格员 Assign a staff member to a grid",
)
def add_staff(
    body: StaffIn, request: Request, conn: Connection = DB, p: Principal = Depends(require(Perm.read_aggregates))
) -> dict:
    try:
        row = store.add_staff(
            conn, p, _vault(request), grid_code=body.grid, role=body.role, name=body.name, phone=body.phone
        )
    except GisgovError as exc:
        _denied(request, "staff_edit", p, f"grid:{body.grid}", exc, {"op": "add"})
        raise
    audit(
        request,
        "staff_edit",
        p,
        object=f"grid_staff:{row['id']}",
        conn=conn,
        detail={"op": "add", "grid": row["grid_code"], "role": row["role"]},
    )
    return row


@router.patch(
    "/api/staff/{staff_id}",
    response_model=schemas.StaffMember,
    **KEEP_SHAPE,
    tags=[STAFF_TAG],
    summary="修改网格员 Edit a staff member",
)
def edit_staff(
    body: StaffPatch,
    request: Request,
    staff_id: int = PathParam(..., ge=1, le=2**63 - 1),
    conn: Connection = DB,
    p: Principal = Depends(require(Perm.read_aggregates)),
) -> dict:
    obj = f"grid_staff:{staff_id}"
    try:
        row, changed = store.edit_staff(
            conn,
            p,
            _vault(request),
            staff_id,
            role=body.role,
            name=body.name,
            phone=body.phone or None,
            clear_phone=body.phone == "",
            grid_code=body.grid,
        )
    except GisgovError as exc:
        _denied(request, "staff_edit", p, obj, exc, {"op": "edit"})
        raise
    audit(
        request,
        "staff_edit",
        p,
        object=obj,
        conn=conn,
        detail={"op": "edit", "grid": row["grid_code"], "changed": changed},
    )
    return row | {"changed": sorted(changed)}


@router.delete(
    "/api/staff/{staff_id}",
    response_model=schemas.StaffRemoved,
    **KEEP_SHAPE,
    tags=[STAFF_TAG],
    summary="移除网格员 Remove a staff member",
)
def remove_staff(
    request: Request,
    staff_id: int = PathParam(..., ge=1, le=2**63 - 1),
    conn: Connection = DB,
    p: Principal = Depends(require(Perm.read_aggregates)),
) -> dict:
    obj = f"grid_staff:{staff_id}"
    try:
        out = store.remove_staff(conn, p, staff_id)
    except GisgovError as exc:
        _denied(request, "staff_edit", p, obj, exc, {"op": "remove"})
        raise
    audit(
        request,
        "staff_edit",
        p,
        object=obj,
        conn=conn,
        detail={"op": "remove", "grid": out["grid_code"], "role": out["role"]},
    )
    return out


def _save(upload: UploadFile) -> tuple[Path, Path]:
    from gisgov.ingest.settings import get_ingest_settings
    from gisgov.ingest.uploads import UploadRejected, safe_filename

    limit = int(get_ingest_settings().max_upload_mb * 1e6)
    name = safe_filename(upload.filename, "staff.xlsx")
    tmp = Path(tempfile.mkdtemp(prefix="gisgov-staff-"))
    dest = tmp / name
    size = 0
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # a roster: private
        with os.fdopen(fd, "wb") as f:
            while chunk := upload.file.read(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise UploadRejected(
                        name, "upload_too_large", f"> {limit / 1e6:g} MB (GISGOV_INGEST_MAX_UPLOAD_MB)", 413
                    )
                f.write(chunk)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp, dest


@router.post(
    "/api/staff/import",
    response_model=schemas.StaffImport,
    **KEEP_SHAPE,
    tags=[STAFF_TAG],
    summary="导入网格员 Import staff from the XLSX template (all or nothing)",
    responses={422: {"description": "refused: missing headers, or row errors (then ``rows``: row, column, rule)"}},
)
def import_staff(
    request: Request,
    conn: Connection = DB,
    p: Principal = Depends(require(Perm.import_data)),
    file: UploadFile = File(..., description="XLSX: 网格编码, 角色, 姓名, 手机号"),
    mode: Literal["replace", "append"] = Form(
        "replace", description="replace: the file's grids get exactly the file's rows; append: add"
    ),
    dry_run: bool = Form(False, description="只检查不写入 check only"),
):
    s = get_governance_settings()
    tmp, path = _save(file)
    try:
        records = xlsx.read_records(path, path.name)
        out = store.import_staff(
            conn,
            p,
            _vault(request),
            records,
            mode=mode,
            dry_run=dry_run,
            ceiling=s.staff_max_caseload,
            max_rows=s.staff_import_max_rows,
        )
    except store.ImportRejected as exc:
        audit(
            request,
            "import",
            p,
            object="grid_staff",
            result="failed",
            detail={"file": path.name, "errors": len(exc.rows), "first": exc.rows[0]["rule"]},
        )
        return error_response(422, str(exc), "ImportRejected", rows=exc.rows)
    except GisgovError as exc:
        audit(
            request,
            "import",
            p,
            object="grid_staff",
            result="denied" if exc.status_code in (403, 404) else "failed",
            detail={"file": path.name, "reason": str(exc)[:300]},
        )
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not dry_run:
        audit(
            request,
            "import",
            p,
            object="grid_staff",
            conn=conn,
            detail={
                "file": path.name,
                "mode": mode,
                "rows": out["rows"],
                "grids": out["grids"],
                "removed": out["removed"],
            },
        )
    return out


# ---------------------------------------------------------------- compounds


class CompoundPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(..., ge=1, le=2**31 - 1, description="版本 the compound's version as last read")
    # omitted = unchanged; null is refused (only property_mode can be cleared), so the schema says bool/int
    has_party_org: bool = Field(None, description="已成立党组织 has a party organisation")  # type: ignore[assignment]
    has_service_point: bool = Field(None, description="已设党群服务点 has a service point")  # type: ignore[assignment]
    property_mode: Literal["物业公司", "业主自治", "社区兜底", ""] | None = Field(
        None, description="物业模式 property mode; empty string clears it (no property management)"
    )
    year_built: int = Field(None, ge=1900, le=2100, description="建成年份 year built")  # type: ignore[assignment]


@router.get(
    "/api/compounds/rules",
    response_model=schemas.CompoundRulesAnswer,
    **KEEP_SHAPE,
    tags=[COMPOUND_TAG],
    summary="小区治理规则 The configured compound rules",
)
def compound_rules(p: Principal = Depends(require(Perm.read_aggregates))) -> dict:
    return load_rules().public()


@router.get(
    "/api/compounds/check",
    response_model=schemas.CompoundCheck,
    **KEEP_SHAPE,
    tags=[COMPOUND_TAG],
    summary="小区规则检查 Breaches, property-mode shares and 老旧小区 ratio per community",
)
def compound_check(
    conn: Connection = DB,
    p: Principal = Depends(require(Perm.read_aggregates)),
    code: str | None = Query(
        None, pattern=r"^([0-9]{9}|[0-9]{12})$", description="街道/社区编码 street/community code"
    ),
) -> dict:
    return store.compound_check(conn, p, code=code)


@router.get(
    "/api/compounds/breaches",
    response_model=schemas.CompoundBreaches,
    **KEEP_SHAPE,
    tags=[COMPOUND_TAG],
    summary="违规小区地图 Compounds breaking a rule (GeoJSON)",
)
def compound_breaches(
    request: Request,
    conn: Connection = DB,
    p: Principal = Depends(require(Perm.read_aggregates)),
    code: str | None = Query(None, pattern=r"^([0-9]{9}|[0-9]{12})$"),
) -> Response:
    """Kept per worker by role, area, data version and the rules in force (:mod:`gisgov.api.answers`)."""
    return cached(
        request,
        conn,
        p,
        lambda: model_json(schemas.CompoundBreaches, store.breaches_geojson(conn, p, code=code)),
        variant=repr(load_rules()),
    )


@router.get(
    "/api/compounds/{code}",
    response_model=schemas.Compound,
    **KEEP_SHAPE,
    tags=[COMPOUND_TAG],
    summary="小区治理属性 One compound's governance attributes",
)
def get_compound(
    code: str = PathParam(..., pattern=r"^[0-9]{16}$"),
    conn: Connection = DB,
    p: Principal = Depends(require(Perm.read_aggregates)),
) -> dict:
    return store.get_compound(conn, p, code)


@router.patch(
    "/api/compounds/{code}",
    response_model=schemas.Compound,
    **KEEP_SHAPE,
    tags=[COMPOUND_TAG],
    summary="修改小区治理属性 Edit party organisation, service point, property mode, year (version checked)",
)
def edit_compound(
    body: CompoundPatch,
    request: Request,
    code: str = PathParam(..., pattern=r"^[0-9]{16}$"),
    conn: Connection = DB,
    p: Principal = Depends(require(Perm.read_aggregates)),
) -> dict:
    changes = body.model_dump(exclude_unset=True, exclude={"version"})
    if "property_mode" in changes and changes["property_mode"] == "":
        changes["property_mode"] = None
    for k in ("has_party_org", "has_service_point", "year_built"):
        if k in changes and changes[k] is None:
            raise InvalidInput(f"{k} 不能为 null {k} cannot be null")
    obj = f"compound:{code}"
    try:
        out, diff = store.edit_compound(conn, p, code, body.version, changes)
    except GisgovError as exc:
        _denied(request, "compound_edit", p, obj, exc, {"version": body.version, "fields": sorted(changes)})
        raise
    if diff:
        audit(request, "compound_edit", p, object=obj, conn=conn, detail={"changes": diff, "version": out["version"]})
    return out | {"changed": sorted(diff)}
