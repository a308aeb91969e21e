"""Import and export over HTTP: the same rules as `gisgov load` / `gisgov export`, for signed-in users.

* ``POST /api/import`` (multipart; needs ``import_data``: admin, community staff): small files answer
  with the report (200 loaded / dry-run, 422 rejected); files above ``GISGOV_INGEST_SYNC_LIMIT_MB``
  run as a background job (202 with the job URL). Uploads above ``GISGOV_INGEST_MAX_UPLOAD_MB`` get
  413 (counted while the upload is stored). File types the importer does not read get 415; empty
  files, files whose content does not match their type, broken or unsafe zips get 422; zips that
  expand beyond ``GISGOV_INGEST_MAX_UNZIPPED_MB`` or by more than ``GISGOV_INGEST_MAX_ZIP_RATIO``
  get 413 — all before the file is read, with ``{"detail", "error"}`` naming the file and the rule.
  Shapefiles are uploaded zipped and read in place (nothing is extracted). The load runs with the
  caller's database scope (row-level security) and may only add records inside the caller's area
  (rule ``out_of_scope``; road networks and OSM extracts are city-wide: whole-city accounts only).
  Every import is audited once.
* ``GET /api/import/{job}``: status, progress and report — for the job's owner (or an admin); 404
  for everybody else.
* ``GET /api/export?level=&format=&community=``: a file of the caller's area (``read_aggregates``);
  ``level=resident`` needs ``export_personal``, runs under the caller's database scope and is
  audited with its row count. ID numbers and phones are always masked here (no character of the ID
  at all, as the birth year is exported); clear values never leave through the web app. Heavy
  exports (resident XLSX, or more than ``GISGOV_EXPORT_SYNC_ROWS`` records) answer 202 with a job:
  ``GET /api/export/jobs/{job}`` (owner or admin) shows its progress, ``GET
  /api/export/jobs/{job}/file`` (owner only) downloads the file until it expires.
* ``GET /api/template/residents``: the roster template (居民名册模板.xlsx).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, BackgroundTasks, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy import Connection
from starlette.background import BackgroundTask

from gisgov.api.deps import DB, audit, client_addr, current_principal, require
from gisgov.api.errors import ErrorBody, error_content
from gisgov.api.links import route_link
from gisgov.api.schemas.ingest import ExportJob, ImportJob, ImportReport, JobAccepted
from gisgov.errors import Conflict, Forbidden, GisgovError, NotFound, StorageFull
from gisgov.ingest import export_jobs, jobs
from gisgov.ingest.diskspace import DISK_FULL, storage_full
from gisgov.ingest.export import FORMATS, PERSONAL_LEVELS, count_level, export_level, write_roster_template
from gisgov.ingest.levels import ALL_LEVELS
from gisgov.ingest.loader import UsageError
from gisgov.ingest.settings import get_ingest_settings
from gisgov.ingest.uploads import UploadRejected, check_file, check_name, safe_filename
from gisgov.security import audit as _audit
from gisgov.security.roles import Perm, Principal

ExportLevel = Literal[ALL_LEVELS]  # type: ignore[valid-type]
ExportFormat = Literal[tuple(FORMATS)]  # type: ignore[valid-type]

router = APIRouter(tags=["import/export 导入导出"])
_CHUNK = 1 << 20
_MEDIA = {
    "gpkg": "application/geopackage+sqlite3",
    "geojson": "application/geo+json",
    "shp": "application/zip",
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
CITY_WIDE_LEVELS = ("road", "osm")


class NotReady(GisgovError):
    status_code = 409


class Expired(GisgovError):
    status_code = 410


def _err(description: str) -> dict:
    return {"model": ErrorBody, "description": description}


_AUTH = {401: _err("未登录 not signed in"), 403: _err("无权限 the role lacks the permission")}


def _vault(request: Request):
    from gisgov.security.pii import Vault

    return Vault.from_settings(request.app.state.settings)


def _save_upload(upload: UploadFile, limit_bytes: int, name: str | None = None) -> tuple[Path, Path, int]:
    """Stream the upload into a private folder, refusing it (413) as soon as it passes ``limit_bytes``
    (the app-wide body limit stops it earlier; this check holds whatever stands in front)."""
    name = name or safe_filename(upload.filename)
    tmp = Path(tempfile.mkdtemp(prefix="gisgov-import-"))  # 0700
    dest = tmp / name
    size = 0
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # uploads may hold rosters
        with os.fdopen(fd, "wb") as f:
            while chunk := upload.file.read(_CHUNK):
                size += len(chunk)
                if size > limit_bytes:
                    raise UploadRejected(
                        name, "upload_too_large", f"> {limit_bytes / 1e6:g} MB (GISGOV_INGEST_MAX_UPLOAD_MB)", 413
                    )
                f.write(chunk)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp, dest, size


def _summary(job_id: str, level: str, name: str, rep) -> tuple[str, dict]:
    d = {"job": job_id, "level": level, "file": name}
    if rep is None:
        return "error", d
    d.update(
        status=rep.status,
        written=rep.counts.get("written"),
        read=rep.counts.get("read"),
        rejected=sum(1 for i in rep.issues if i.action == "rejected"),
    )
    return ("ok" if rep.ok else "failed"), d


@router.post(
    "/api/import",
    summary="导入 Upload a file and load it (validated, all or nothing)",
    response_model=ImportReport,
    responses={
        200: {"description": "loaded, or dry-run: the report"},
        202: {"model": JobAccepted, "description": "large file: a background job; poll status_url"},
        **_AUTH,
        413: _err(
            "upload larger than GISGOV_INGEST_MAX_UPLOAD_MB, or a zip expanding beyond "
            "GISGOV_INGEST_MAX_UNZIPPED_MB / GISGOV_INGEST_MAX_ZIP_RATIO / GISGOV_INGEST_MAX_ZIP_MEMBERS"
        ),
        415: _err("file type not imported (GeoJSON, GeoPackage, zipped Shapefile, FlatGeobuf, CSV, XLSX, .osm.pbf)"),
        422: _err(
            "refused: bad option, empty or broken file, unsafe zip; or rejected records: then the body also "
            "carries the report (status, counts, issues)"
        ),
    },
)
def import_file(
    request: Request,
    background: BackgroundTasks,
    file: UploadFile = File(
        ..., description="GeoJSON, GeoPackage, zipped Shapefile, FlatGeobuf, CSV, XLSX or .osm.pbf"
    ),
    level: str = Form(..., description="street|community|grid|compound|building|facility|road|resident|osm"),
    crs: str | None = Form(None, description="EPSG code, gcj02 or bd09 when the file has no CRS or lies"),
    layer: str | None = Form(None),
    map: list[str] | None = Form(None, description="field=column, repeatable"),
    repair: bool = Form(False),
    dry_run: bool = Form(False),
    region: str | None = Form(None, description="auto or minlon,minlat,maxlon,maxlat"),
    encoding: str | None = Form(None),
    update: bool = Form(
        False,
        description="更新 records whose code already exists replace it (versioned, audited, all or nothing); "
        "otherwise such codes are rejected (rule code_exists)",
    ),
    header_row: int | None = Form(
        None, ge=1, description="居民名册表头行 rosters: the spreadsheet row (1-based) holding the column names"
    ),
    p: Principal = Depends(require(Perm.import_data)),
):
    """Small files: the report in the response (200 loaded or dry-run, 422 rejected). Large files:
    202 with ``{"job": id, "status_url": ...}``; poll it for progress and the report."""
    name = safe_filename(file.filename)
    try:
        if level not in (*ALL_LEVELS, "osm"):
            raise UsageError(f"未知层级 unknown level {level!r}; choose one of {', '.join((*ALL_LEVELS, 'osm'))}")
        if update and level in ("road", "resident", "osm"):
            raise UsageError(
                f"该层级不能更新 update applies to street, community, grid, compound, building and facility, not {level}"
            )
        if level in CITY_WIDE_LEVELS and p.scope_code:
            raise Forbidden(
                f"无权限 not allowed: {level} 导入覆盖全市，仅限全市账号 imports of the road network / OSM "
                f"are city-wide: whole-city accounts only (rule: out_of_scope)"
            )
        check_name(name, level)
        s = get_ingest_settings()
        tmp, path, size = _save_upload(file, int(s.max_upload_mb * 1e6), name)
        try:
            check_file(path, name, s)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    except Exception as exc:
        audit(
            request,
            "import",
            p,
            object=name,
            result="denied" if isinstance(exc, Forbidden) else "failed",
            detail={"level": level, "file": name, "error": str(getattr(exc, "detail", exc))[:300]},
        )
        raise
    base = request.app.state.engine
    engine = jobs.scoped_engine(base, p.db_scope)
    options = {
        "crs": crs,
        "layer": layer,
        "map": map or [],
        "repair": repair,
        "dry_run": dry_run,
        "region": region,
        "encoding": encoding,
        "update": update,
        "header_row": header_row,
        "size": size,
    }
    try:
        jobs.cleanup_uploads(base, request.app.state.settings.home_abs)
        job_id = jobs.create(engine, path.name, level, options, owner=p)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        audit(request, "import", p, object=name, result="error", detail={"level": level, "file": name})
        raise
    status_url = route_link(request, "import_status", job_id=job_id)  # from configuration, not the Host header
    try:
        vault = _vault(request)
        if size > s.sync_limit_mb * 1e6:
            # the upload waits in GISGOV_HOME/imports/<job> (not /tmp) so a job whose process dies can be retried
            tmp = jobs.keep_upload(request.app.state.settings.home_abs, job_id, tmp)
            path = tmp / path.name
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        jobs.finish(engine, job_id, error=f"导入失败 import failed ({type(exc).__name__})")
        raise
    if size > s.sync_limit_mb * 1e6:
        background.add_task(
            _run_background, base, engine, job_id, path, level, options, path.name, vault, tmp, p, client_addr(request)
        )
        return JSONResponse(
            {"job": job_id, "status": "queued", "status_url": status_url},
            status_code=202,
            headers={"Location": status_url},
        )
    rep = None
    try:
        rep = jobs.run(engine, job_id, path, level, options, path.name, vault, cleanup=tmp, area=p.area_prefix, actor=p)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        result, detail = _summary(job_id, level, path.name, rep)
        audit(request, "import", p, object=f"import_job:{job_id}", result=result, detail=detail)
    body = {"job": job_id, "status_url": status_url, **rep.to_dict(jobs.MAX_REPORT_ISSUES)}
    if rep.ok:
        return JSONResponse(body)
    return JSONResponse(error_content(422, _rejected_detail(rep), "ImportRejected", extra=body), status_code=422)


def _rejected_detail(rep) -> str:
    bad = rep.rejected
    first = bad[0] if bad else None
    what = f"{first.record}: [{first.rule}] {first.message}"[:300] if first else ""
    return (
        f"导入被拒绝，未写入任何数据 import rejected, nothing written: {rep.file}: {len(bad)} 条问题 "
        f"problem(s); 第一条 first: {what}"
    )


def _run_background(base, engine, job_id, path, level, options, name, vault, tmp, p: Principal, client) -> None:
    rep = None
    try:
        rep = jobs.run(engine, job_id, path, level, options, name, vault, cleanup=tmp, area=p.area_prefix, actor=p)
    except Exception:  # already recorded in import_job.error (status failed)
        logging.getLogger("gisgov.import").exception("import job %s failed", job_id)
    finally:
        result, detail = _summary(job_id, level, name, rep)
        _audit.record(
            base, "import", actor=p, object=f"import_job:{job_id}", result=result, client=client, detail=detail
        )


@router.get(
    "/api/import/{job_id}",
    name="import_status",
    summary="导入进度 Status, progress and report of an import",
    response_model=ImportJob,
    response_model_exclude_unset=True,
    responses={401: _AUTH[401], 404: _err("no such job, or not yours")},
)
def import_status(
    job_id: str, request: Request, conn: Connection = DB, p: Principal = Depends(current_principal)
) -> dict:
    job = jobs.get(conn, job_id, owner=p)
    if job is None:
        raise NotFound(f"未找到导入任务 no import job {job_id[:60]!r}")
    job["retryable"] = (
        job["status"] == "failed" and jobs.kept_upload(request.app.state.settings.home_abs, job) is not None
    )
    return job


@router.post(
    "/api/import/{job_id}/retry",
    summary="重试导入 Run a failed background import again (its process stopped before it finished)",
    response_model=JobAccepted,
    status_code=202,
    responses={
        401: _AUTH[401],
        403: _AUTH[403],
        404: _err("no such job, or not yours"),
        409: _err("the job is not failed, or its upload is gone (only imports whose process stopped keep it)"),
    },
)
def import_retry(
    job_id: str,
    request: Request,
    background: BackgroundTasks,
    conn: Connection = DB,
    p: Principal = Depends(require(Perm.import_data)),
) -> JSONResponse:
    """A new job with the same file and options; the old job stays failed (its status names the new one
    in the audit log)."""
    job = jobs.get(conn, job_id, owner=p)
    if job is None:
        raise NotFound(f"未找到导入任务 no import job {job_id[:60]!r}")
    home = request.app.state.settings.home_abs
    kept = jobs.kept_upload(home, job) if job["status"] == "failed" else None
    if kept is None:
        raise Conflict(
            f"该导入不能重试：状态为 {job['status']}，或上传文件已不在 import {job_id} cannot be retried: it is "
            f"{job['status']}, or its upload is gone (only background imports whose process stopped keep it; "
            "upload the file again)"
        )
    base = request.app.state.engine
    engine = jobs.scoped_engine(base, p.db_scope)
    options = dict(job["options"] or {})
    new_id = jobs.create(engine, kept.name, job["level"], options, owner=p)
    try:
        folder = jobs.keep_upload(home, new_id, kept.parent)
        vault = _vault(request)
    except BaseException as exc:
        jobs.finish(engine, new_id, error=f"导入失败 import failed ({type(exc).__name__})")
        raise
    audit(request, "import_retry", p, object=f"import_job:{job_id}", conn=conn, detail={"retry": new_id})
    status_url = route_link(request, "import_status", job_id=new_id)
    background.add_task(
        _run_background,
        base,
        engine,
        new_id,
        folder / kept.name,
        job["level"],
        options,
        kept.name,
        vault,
        folder,
        p,
        client_addr(request),
    )
    return JSONResponse(
        {"job": new_id, "status": "queued", "status_url": status_url}, status_code=202, headers={"Location": status_url}
    )


_zip_private = export_jobs.zip_private


@router.get(
    "/api/export",
    summary="导出 Export one level of your area as a file (PII masked)",
    responses={
        200: {"description": "the file (GeoJSON, GeoPackage, zipped Shapefile, CSV or XLSX)"},
        202: {
            "model": JobAccepted,
            "description": "heavy export (resident XLSX, or more than GISGOV_EXPORT_SYNC_ROWS "
            "records): a background job; poll status_url",
        },
        **_AUTH,
        404: _err("community outside your area"),
        422: _err("unknown level/format, bad community code, or the data does not fit the format"),
        507: _err("磁盘空间不足 disk full on the server: nothing was written (StorageFull)"),
    },
)
def export(
    request: Request,
    level: ExportLevel = Query(..., description="street|community|grid|compound|building|facility|road|resident"),
    format: ExportFormat = Query("geojson", description="gpkg|geojson|shp|csv|xlsx"),
    community: str | None = Query(None, pattern=r"^[0-9]{12}$", description="12-digit community code"),
    encoding: Literal["gbk", "utf-8"] = Query(
        "gbk", description="Shapefile 文字编码 text encoding (shp only): gbk (default) or utf-8; named in the .cpg"
    ),
    p: Principal = Depends(require(Perm.read_aggregates)),
):
    if format not in FORMATS:
        raise UsageError(f"未知格式 unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    if level not in ALL_LEVELS:
        raise UsageError(f"未知层级 unknown level {level!r}; choose one of {', '.join(ALL_LEVELS)}")
    if community is not None and not (len(community) == 12 and community.isdigit()):
        raise UsageError(f"社区编码须为十二位数字 community expects a 12-digit community code, got {community!r}")
    personal = level in PERSONAL_LEVELS
    obj = f"{level}{':' + community if community else ''}"
    if personal and not p.can(Perm.export_personal):
        audit(request, "export", p, object=obj, result="denied", detail={"level": level, "format": format})
        raise Forbidden(f"无权限 not allowed for role {p.role.value} ({p.label}): needs export_personal")
    if community is not None and not p.contains(community):
        if personal:
            audit(request, "export", p, object=obj, result="denied", detail={"level": level, "format": format})
        raise NotFound(f"未找到 社区 community not found: {community}")
    engine = jobs.scoped_engine(request.app.state.engine, p.db_scope)
    settings = request.app.state.settings
    total = count_level(engine, level, community=community, area=p.area_prefix)
    if (personal and format == "xlsx") or total > settings.export_sync_rows:
        return _export_job(request, engine, p, level, format, community, obj, total)
    tmp = Path(tempfile.mkdtemp(prefix="gisgov-export-"))  # 0700; resident files inside are 0600
    name = f"{level}{'_' + community if community else ''}.{FORMATS[format]}"
    try:
        n = export_level(
            engine,
            level,
            format,
            tmp / name,
            community=community,
            allow_pii=False,
            area=p.area_prefix,
            encoding=encoding,
        )
        out = tmp / name
        if format == "shp":
            out = tmp / f"{Path(name).stem}.zip"
            _zip_private(out, [f for f in sorted(tmp.glob(f"{Path(name).stem}.*")) if f != out])
    except BaseException as exc:
        full = isinstance(exc, StorageFull) or storage_full(exc, tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        audit(
            request,
            "export",
            p,
            object=obj,
            result="failed" if isinstance(exc, UsageError) else "error",
            detail={"level": level, "format": format, "error": "disk full" if full else str(exc)[:300]},
        )
        if full and not isinstance(exc, StorageFull):
            raise StorageFull(DISK_FULL) from exc
        raise
    audit(
        request,
        "export",
        p,
        object=obj,
        detail={"level": level, "format": format, "community": community, "rows": n, "area": p.area_prefix or "*"},
    )
    return FileResponse(
        out,
        media_type=_MEDIA[format],
        filename=out.name,
        background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True),
    )


def _export_job(
    request: Request, engine, p: Principal, level: str, fmt: str, community: str | None, obj: str, total: int
) -> JSONResponse:
    s = get_ingest_settings()
    settings = request.app.state.settings
    base = request.app.state.engine
    export_jobs.cleanup(base, settings.home_abs, s.export_stale_hours)
    job_id = export_jobs.create(base, p, level, fmt, {"community": community, "area": p.area_prefix or "*"}, total)
    status_url = route_link(request, "export_status", job_id=job_id)
    client = client_addr(request)

    def on_finish(rows, error):
        detail = {"level": level, "format": fmt, "community": community, "job": job_id, "area": p.area_prefix or "*"}
        if error is None:
            _audit.record(base, "export", actor=p, object=obj, client=client, detail={**detail, "rows": rows})
        else:
            _audit.record(
                base,
                "export",
                actor=p,
                object=obj,
                result="error",
                client=client,
                detail={**detail, "error": error[:300]},
            )

    export_jobs.start(
        engine,
        job_id,
        settings.home_abs,
        level,
        fmt,
        community=community,
        area=p.area_prefix,
        keep_hours=s.export_keep_hours,
        workers=s.export_workers,
        on_finish=on_finish,
    )
    return JSONResponse(
        {"job": job_id, "status": "queued", "status_url": status_url, "total": total},
        status_code=202,
        headers={"Location": status_url},
    )


def _job_view(request: Request, job: dict) -> dict:
    out = {
        k: job[k]
        for k in (
            "id",
            "owner",
            "level",
            "format",
            "status",
            "done",
            "total",
            "rows",
            "error",
            "created",
            "finished",
            "expires",
        )
    }
    out["community"] = (job.get("options") or {}).get("community")
    out["file_url"] = None
    if job["status"] == "done":
        out["expired"] = bool(job["expired"]) or not job["file"]
        if not out["expired"]:
            out["file_url"] = route_link(request, "export_file", job_id=job["id"])
    return out


@router.get(
    "/api/export/jobs/{job_id}",
    name="export_status",
    summary="导出进度 Status and download link of an export job",
    response_model=ExportJob,
    response_model_exclude_unset=True,
    responses={401: _AUTH[401], 404: _err("no such job, or not yours")},
)
def export_status(
    request: Request, job_id: str, conn: Connection = DB, p: Principal = Depends(current_principal)
) -> dict:
    job = export_jobs.get(conn, job_id, p)
    if job is None:
        raise NotFound(f"未找到导出任务 no export job {job_id[:60]!r}")
    return _job_view(request, job)


@router.get(
    "/api/export/jobs/{job_id}/file",
    name="export_file",
    summary="下载导出文件 Download an export job's file",
    responses={
        200: {"description": "the file"},
        401: _AUTH[401],
        404: _err("no such job, or not yours (only the owner downloads)"),
        409: _err("the export is not finished (or failed)"),
        410: _err("the file has expired and was deleted (GISGOV_INGEST_EXPORT_KEEP_HOURS)"),
    },
)
def export_file(request: Request, job_id: str, conn: Connection = DB, p: Principal = Depends(current_principal)):
    job = export_jobs.get(conn, job_id, p, owner_only=True)
    if job is None:
        raise NotFound(f"未找到导出任务 no export job {job_id[:60]!r}")
    if job["status"] != "done":
        raise NotReady(
            f"导出尚未完成 export {job_id} is {job['status']}" + (f": {job['error']}" if job["error"] else "")
        )
    path = None if job["expired"] else export_jobs.file_path(request.app.state.settings.home_abs, job)
    if path is None:
        raise Expired(f"导出文件已过期删除，请重新导出 the file of export {job_id} has expired; export again")
    return FileResponse(path, media_type=_MEDIA[job["format"]], filename=path.name)


@router.get("/api/template/residents", summary="居民名册模板 Roster template (xlsx, Chinese headers)")
def roster_template():
    tmp = Path(tempfile.mkdtemp(prefix="gisgov-template-"))
    out = write_roster_template(tmp / "居民名册模板.xlsx")
    return FileResponse(
        out,
        media_type=_MEDIA["xlsx"],
        filename=out.name,
        background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True),
    )
