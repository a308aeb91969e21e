"""Import and export over HTTP: the same rules as `gisgov load` / `gisgov export`.

* ``POST /api/import`` (multipart): small files answer with the report (200 loaded / dry-run,
  422 rejected); files above ``GISGOV_INGEST_SYNC_LIMIT_MB`` run as a background job (202 with the
  job URL). Uploads above ``GISGOV_INGEST_MAX_UPLOAD_MB`` get 413. Shapefiles are uploaded zipped.
* ``GET /api/import/{job}``: status, progress (stage, done, total) and the report.
* ``GET /api/export?level=&format=&community=``: a file; resident ID numbers and phones are always
  masked here (clear values only through the CLI's ``--allow-pii``).
* ``GET /api/template/residents``: the roster template (居民名册模板.xlsx).
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

from fastapi import APIRouter, BackgroundTasks, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from starlette.background import BackgroundTask

from gisgov.ingest import jobs
from gisgov.ingest.export import FORMATS, export_level, write_roster_template
from gisgov.ingest.levels import ALL_LEVELS
from gisgov.ingest.loader import UsageError
from gisgov.ingest.settings import get_ingest_settings

router = APIRouter(tags=["import/export 导入导出"])
_CHUNK = 1 << 20
_MEDIA = {"gpkg": "application/geopackage+sqlite3", "geojson": "application/geo+json", "shp": "application/zip",
          "csv": "text/csv; charset=utf-8", "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def _vault(request: Request):
    from gisgov.security.pii import Vault

    return Vault.from_settings(request.app.state.settings)


def _save_upload(upload: UploadFile, limit_bytes: int) -> tuple[Path, Path, int]:
    name = Path(upload.filename or "upload").name
    tmp = Path(tempfile.mkdtemp(prefix="gisgov-import-"))
    dest = tmp / name
    size = 0
    try:
        with dest.open("wb") as f:
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
):
    """Small files: the report in the response (200 loaded or dry-run, 422 rejected). Large files:
    202 with ``{"job": id, "status_url": ...}``; poll it for progress and the report."""
    if level not in ALL_LEVELS + ("osm",):
        raise UsageError(f"unknown level {level!r}; choose one of {', '.join(ALL_LEVELS + ('osm',))}")
    s = get_ingest_settings()
    tmp, path, size = _save_upload(file, int(s.max_upload_mb * 1e6))
    engine = request.app.state.engine
    options = {"crs": crs, "layer": layer, "map": map or [], "repair": repair, "dry_run": dry_run, "region": region,
               "encoding": encoding, "size": size}
    job_id = jobs.create(engine, path.name, level, options)
    status_url = str(request.url_for("import_status", job_id=job_id))
    if size > s.sync_limit_mb * 1e6:
        background.add_task(_run_quietly, engine, job_id, path, level, options, path.name, _vault(request), tmp)
        return JSONResponse({"job": job_id, "status": "queued", "status_url": status_url}, status_code=202,
                            headers={"Location": status_url})
    try:
        rep = jobs.run(engine, job_id, path, level, options, path.name, _vault(request), cleanup=tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    body = {"job": job_id, "status_url": status_url, **rep.to_dict(jobs.MAX_REPORT_ISSUES)}
    return JSONResponse(body, status_code=200 if rep.ok else 422)


def _run_quietly(*args, **kw) -> None:
    try:
        jobs.run(*args[:-1], cleanup=args[-1])
    except Exception:  # already recorded in import_job.error
        pass


@router.get("/api/import/{job_id}", name="import_status", summary="导入进度 Status, progress and report of an import")
def import_status(job_id: str, request: Request) -> dict:
    job = jobs.get(request.app.state.engine, job_id)
    if job is None:
        raise HTTPException(404, f"no import job {job_id}")
    return job


@router.get("/api/export", summary="导出 Export one level as a file (PII masked)")
def export(
    request: Request,
    level: str = Query(..., description="street|community|grid|compound|building|facility|road|resident"),
    format: str = Query("geojson", description="gpkg|geojson|shp|csv|xlsx"),  # noqa: A002
    community: str | None = Query(None, description="12-digit community code"),
):
    if format not in FORMATS:
        raise UsageError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    tmp = Path(tempfile.mkdtemp(prefix="gisgov-export-"))
    name = f"{level}{'_' + community if community else ''}.{FORMATS[format]}"
    try:
        export_level(request.app.state.engine, level, format, tmp / name, community=community, allow_pii=False)
        out = tmp / name
        if format == "shp":
            out = tmp / f"{Path(name).stem}.zip"
            with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
                for p in sorted(tmp.glob(f"{Path(name).stem}.*")):
                    if p != out:
                        z.write(p, p.name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FileResponse(out, media_type=_MEDIA[format], filename=out.name,
                        background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True))


@router.get("/api/template/residents", summary="居民名册模板 Roster template (xlsx, Chinese headers)")
def roster_template():
    tmp = Path(tempfile.mkdtemp(prefix="gisgov-template-"))
    out = write_roster_template(tmp / "居民名册模板.xlsx")
    return FileResponse(out, media_type=_MEDIA["xlsx"], filename=out.name,
                        background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True))
