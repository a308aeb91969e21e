"""Import and export over HTTP: the same rules as `gisgov load` / `gisgov export`, for signed-in users.

* ``POST /api/import`` (multipart; needs ``import_data``: admin, community staff): small files answer
  with the report (200 loaded / dry-run, 422 rejected); files above ``GISGOV_INGEST_SYNC_LIMIT_MB``
  run as a background job (202 with the job URL). Uploads above ``GISGOV_INGEST_MAX_UPLOAD_MB`` get
  413. Shapefiles are uploaded zipped. The load runs with the caller's database scope (row-level
  security) and may only add records inside the caller's area (rule ``out_of_scope``; road networks
  and OSM extracts are city-wide: whole-city accounts only). Every import is audited once.
* ``GET /api/import/{job}``: status, progress and report — for the job's owner (or an admin); 404
  for everybody else.
* ``GET /api/export?level=&format=&community=``: a file of the caller's area (``read_aggregates``);
  ``level=resident`` needs ``export_personal``, runs under the caller's database scope and is
  audited with its row count. ID numbers and phones are always masked here (no character of the ID
  at all, as the birth year is exported); clear values never leave through the web app.
* ``GET /api/template/residents``: the roster template (居民名册模板.xlsx).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from fastapi import APIRouter, BackgroundTasks, Depends, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from starlette.background import BackgroundTask
from sqlalchemy import Connection

from gisgov.api.deps import DB, audit, client_addr, current_principal, require
from gisgov.api.links import route_link
from gisgov.errors import Forbidden, NotFound
from gisgov.ingest import jobs
from gisgov.ingest.export import FORMATS, PERSONAL_LEVELS, export_level, write_roster_template
from gisgov.ingest.levels import ALL_LEVELS
from gisgov.ingest.loader import UsageError
from gisgov.ingest.settings import get_ingest_settings
from gisgov.security import audit as _audit
from gisgov.security.roles import Perm, Principal

router = APIRouter(tags=["import/export 导入导出"])
_CHUNK = 1 << 20
_MEDIA = {"gpkg": "application/geopackage+sqlite3", "geojson": "application/geo+json", "shp": "application/zip",
          "csv": "text/csv; charset=utf-8", "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
CITY_WIDE_LEVELS = ("road", "osm")


def _vault(request: Request):
    from gisgov.security.pii import Vault

    return Vault.from_settings(request.app.state.settings)


def _save_upload(upload: UploadFile, limit_bytes: int) -> tuple[Path, Path, int]:
    name = Path(upload.filename or "upload").name
    tmp = Path(tempfile.mkdtemp(prefix="gisgov-import-"))  # 0700
    dest = tmp / name
    size = 0
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # uploads may hold rosters
        with os.fdopen(fd, "wb") as f:
            while chunk := upload.file.read(_CHUNK):
                size += len(chunk)
                if size > limit_bytes:
                    raise HTTPException(413, f"文件过大 file larger than {limit_bytes / 1e6:.0f} MB "
                                             "(GISGOV_INGEST_MAX_UPLOAD_MB)")
                f.write(chunk)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp, dest, size


def _summary(job_id: str, level: str, name: str, rep) -> tuple[str, dict]:
    d = {"job": job_id, "level": level, "file": name}
    if rep is None:
        return "error", d
    d.update(status=rep.status, written=rep.counts.get("written"), read=rep.counts.get("read"),
             rejected=sum(1 for i in rep.issues if i.action == "rejected"))
    return ("ok" if rep.ok else "failed"), d


@router.post("/api/import", summary="导入 Upload a file and load it (validated, all or nothing)")
def import_file(
    request: Request,
    background: BackgroundTasks,
    file: UploadFile = File(..., description="GeoJSON, GeoPackage, zipped Shapefile, FlatGeobuf, CSV, XLSX or .osm.pbf"),
    level: str = Form(..., description="street|community|grid|compound|building|facility|road|resident|osm"),
    crs: str | None = Form(None, description="EPSG code, gcj02 or bd09 when the file has no CRS or lies"),
    layer: str | None = Form(None),
    map: list[str] | None = Form(None, description="field=column, repeatable"),  # noqa: A002
    repair: bool = Form(False),
    dry_run: bool = Form(False),
    region: str | None = Form(None, description="auto or minlon,minlat,maxlon,maxlat"),
    encoding: str | None = Form(None),
    p: Principal = Depends(require(Perm.import_data)),
):
    """Small files: the report in the response (200 loaded or dry-run, 422 rejected). Large files:
    202 with ``{"job": id, "status_url": ...}``; poll it for progress and the report."""
    name = Path(file.filename or "upload").name
    try:
        if level not in ALL_LEVELS + ("osm",):
            raise UsageError(f"unknown level {level!r}; choose one of {', '.join(ALL_LEVELS + ('osm',))}")
        if level in CITY_WIDE_LEVELS and p.scope_code:
            raise Forbidden(f"无权限 not allowed: {level} 导入覆盖全市，仅限全市账号 imports of the road network / OSM "
                            f"are city-wide: whole-city accounts only (rule: out_of_scope)")
        s = get_ingest_settings()
        tmp, path, size = _save_upload(file, int(s.max_upload_mb * 1e6))
    except Exception as exc:
        audit(request, "import", p, object=name, result="denied" if isinstance(exc, Forbidden) else "failed",
              detail={"level": level, "file": name, "error": str(getattr(exc, "detail", exc))[:300]})
        raise
    base = request.app.state.engine
    engine = jobs.scoped_engine(base, p.db_scope)
    options = {"crs": crs, "layer": layer, "map": map or [], "repair": repair, "dry_run": dry_run, "region": region,
               "encoding": encoding, "size": size}
    try:
        job_id = jobs.create(engine, path.name, level, options, owner=p)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        audit(request, "import", p, object=name, result="error", detail={"level": level, "file": name})
        raise
    status_url = route_link(request, "import_status", job_id=job_id)  # from configuration, not the Host header
    vault = _vault(request)
    if size > s.sync_limit_mb * 1e6:
        background.add_task(_run_background, base, engine, job_id, path, level, options, path.name, vault, tmp, p,
                            client_addr(request))
        return JSONResponse({"job": job_id, "status": "queued", "status_url": status_url}, status_code=202,
                            headers={"Location": status_url})
    rep = None
    try:
        rep = jobs.run(engine, job_id, path, level, options, path.name, vault, cleanup=tmp, area=p.area_prefix)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        result, detail = _summary(job_id, level, path.name, rep)
        audit(request, "import", p, object=f"import_job:{job_id}", result=result, detail=detail)
    body = {"job": job_id, "status_url": status_url, **rep.to_dict(jobs.MAX_REPORT_ISSUES)}
    return JSONResponse(body, status_code=200 if rep.ok else 422)


def _run_background(base, engine, job_id, path, level, options, name, vault, tmp, p: Principal, client) -> None:
    rep = None
    try:
        rep = jobs.run(engine, job_id, path, level, options, name, vault, cleanup=tmp, area=p.area_prefix)
    except Exception:  # already recorded in import_job.error
        pass
    finally:
        result, detail = _summary(job_id, level, name, rep)
        _audit.record(base, "import", actor=p, object=f"import_job:{job_id}", result=result, client=client,
                      detail=detail)


@router.get("/api/import/{job_id}", name="import_status", summary="导入进度 Status, progress and report of an import")
def import_status(job_id: str, conn: Connection = DB, p: Principal = Depends(current_principal)) -> dict:
    job = jobs.get(conn, job_id, owner=p)
    if job is None:
        raise HTTPException(404, f"未找到导入任务 no import job {job_id}")
    return job


def _zip_private(out: Path, files: list[Path]) -> None:
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as z:
        for f in files:
            z.write(f, f.name)


@router.get("/api/export", summary="导出 Export one level of your area as a file (PII masked)")
def export(
    request: Request,
    level: str = Query(..., description="street|community|grid|compound|building|facility|road|resident"),
    format: str = Query("geojson", description="gpkg|geojson|shp|csv|xlsx"),  # noqa: A002
    community: str | None = Query(None, description="12-digit community code"),
    p: Principal = Depends(require(Perm.read_aggregates)),
):
    if format not in FORMATS:
        raise UsageError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    if level not in ALL_LEVELS:
        raise UsageError(f"unknown level {level!r}; choose one of {', '.join(ALL_LEVELS)}")
    if community is not None and not (len(community) == 12 and community.isdigit()):
        raise UsageError(f"community expects a 12-digit community code, got {community!r}")
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
    tmp = Path(tempfile.mkdtemp(prefix="gisgov-export-"))  # 0700; resident files inside are 0600
    name = f"{level}{'_' + community if community else ''}.{FORMATS[format]}"
    try:
        n = export_level(engine, level, format, tmp / name, community=community, allow_pii=False,
                         area=p.area_prefix)
        out = tmp / name
        if format == "shp":
            out = tmp / f"{Path(name).stem}.zip"
            _zip_private(out, [f for f in sorted(tmp.glob(f"{Path(name).stem}.*")) if f != out])
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        audit(request, "export", p, object=obj, result="failed" if isinstance(exc, UsageError) else "error",
              detail={"level": level, "format": format, "error": str(exc)[:300]})
        raise
    audit(request, "export", p, object=obj, detail={"level": level, "format": format, "community": community,
                                                    "rows": n, "area": p.area_prefix or "*"})
    return FileResponse(out, media_type=_MEDIA[format], filename=out.name,
                        background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True))


@router.get("/api/template/residents", summary="居民名册模板 Roster template (xlsx, Chinese headers)")
def roster_template():
    tmp = Path(tempfile.mkdtemp(prefix="gisgov-template-"))
    out = write_roster_template(tmp / "居民名册模板.xlsx")
    return FileResponse(out, media_type=_MEDIA["xlsx"], filename=out.name,
                        background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True))
