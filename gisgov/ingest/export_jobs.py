"""Background exports (table ``export_job``, migration 0007): heavy exports — the resident roster as
XLSX, and any export of more than ``GISGOV_EXPORT_SYNC_ROWS`` records — run in a thread of their own
and leave a file for their owner.

* The job runs on a :func:`gisgov.ingest.jobs.scoped_engine` of the caller (row-level security
  applies exactly as in the synchronous export) and masks ID numbers and phones the same way
  (``allow_pii=False``, always: the web app never exports clear values).
* Progress: ``total`` is the record count when the job was made, ``done`` the rows read so far;
  ``rows`` the records written. Status ``queued`` → ``running`` → ``done`` | ``failed``.
* Files live in ``GISGOV_HOME/exports/<job id>/`` (folders 0700, files 0600) until ``expires``
  (``GISGOV_INGEST_EXPORT_KEEP_HOURS`` after the job finished). Expired files are deleted, and
  jobs left ``queued``/``running`` by a stopped server for more than
  ``GISGOV_INGEST_EXPORT_STALE_HOURS`` are marked failed, whenever a new job is made.
* At most ``GISGOV_INGEST_EXPORT_WORKERS`` exports run at the same time per server process; the
  others wait ``queued``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
import zipfile
from pathlib import Path

from sqlalchemy import Connection, Engine, text

from gisgov.ingest.diskspace import DISK_FULL, storage_full
from gisgov.security.roles import Role

_SLOTS: dict[int, threading.BoundedSemaphore] = {}
_SLOTS_LOCK = threading.Lock()


def exports_dir(home: Path) -> Path:
    d = Path(home) / "exports"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(d, 0o700)
    return d


def create(engine: Engine, owner, level: str, fmt: str, options: dict, total: int) -> str:
    with engine.begin() as c:
        return str(
            c.execute(
                text(
                    "INSERT INTO export_job (owner_id, owner, level, format, options, total) "
                    "VALUES (:oid, :own, :l, :f, CAST(:o AS jsonb), :t) RETURNING id"
                ),
                {
                    "oid": getattr(owner, "user_id", None),
                    "own": getattr(owner, "username", None),
                    "l": level,
                    "f": fmt,
                    "o": json.dumps(options, ensure_ascii=False),
                    "t": int(total),
                },
            ).scalar()
        )


def get(conn: Connection, job_id: str, viewer, *, owner_only: bool = False) -> dict | None:
    """The job, or None when there is none or ``viewer`` did not make it (admins see every job's
    status, but only the owner gets the file: ``owner_only``)."""
    try:
        uuid.UUID(job_id)
    except ValueError:
        return None
    r = (
        conn.execute(
            text(
                "SELECT id, owner_id, owner, level, format, options, status, done, total, rows, file, error, "
                "created, finished, expires, (expires IS NOT NULL AND expires < now()) AS expired "
                "FROM export_job WHERE id = :i"
            ),
            {"i": job_id},
        )
        .mappings()
        .first()
    )
    if r is None:
        return None
    d = dict(r)
    mine = d["owner_id"] is not None and d["owner_id"] == viewer.user_id
    if not mine and (owner_only or viewer.role != Role.admin):
        return None
    d["id"] = str(d["id"])
    for k in ("created", "finished", "expires"):
        d[k] = d[k].isoformat() if d[k] else None
    return d


def _slot(workers: int) -> threading.BoundedSemaphore:
    with _SLOTS_LOCK:
        return _SLOTS.setdefault(workers, threading.BoundedSemaphore(workers))


def cleanup(engine: Engine, home: Path, stale_hours: float) -> int:
    """Delete the files of expired jobs; fail jobs a stopped server left queued/running. Returns the
    number of files deleted."""
    base = exports_dir(home)
    with engine.begin() as c:
        c.execute(
            text(
                "UPDATE export_job SET status = 'failed', finished = now(), "
                "error = '中断（服务器重启？）interrupted (server restarted?)' "
                "WHERE status IN ('queued', 'running') AND created < now() - make_interval(secs => :s)"
            ),
            {"s": stale_hours * 3600},
        )
        gone = (
            c.execute(text("UPDATE export_job SET file = NULL WHERE file IS NOT NULL AND expires < now() RETURNING id"))
            .scalars()
            .all()
        )
    for job_id in gone:
        shutil.rmtree(base / str(job_id), ignore_errors=True)
    return len(gone)


def _set(engine: Engine, job_id: str, **values) -> None:
    cols = ", ".join(f"{k} = :{k}" for k in values)
    with engine.begin() as c:
        c.execute(text(f"UPDATE export_job SET {cols} WHERE id = :id"), {**values, "id": job_id})


class _Progress:
    def __init__(self, engine: Engine, job_id: str, every_s: float = 0.5):
        self.engine, self.job_id, self.every_s, self._last = engine, job_id, every_s, 0.0

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            _set(self.engine, self.job_id, done=int(done))


def run(
    engine: Engine,
    job_id: str,
    home: Path,
    level: str,
    fmt: str,
    *,
    community: str | None,
    area: str,
    keep_hours: float,
    workers: int = 2,
    on_finish=None,
) -> None:
    """Run one export job to its end (``done`` or ``failed``; never left ``running`` by an error).
    ``on_finish(rows or None, error or None)`` is called last (the audit row)."""
    from gisgov.errors import GisgovError, StorageFull
    from gisgov.ingest.export import FORMATS, export_level

    rows, error = None, None
    slot = _slot(workers)
    try:
        with slot:
            _set(engine, job_id, status="running")
            folder = exports_dir(home) / job_id
            folder.mkdir(mode=0o700)
            name = f"{level}{'_' + community if community else ''}.{FORMATS[fmt]}"
            try:
                rows = export_level(
                    engine,
                    level,
                    fmt,
                    folder / name,
                    community=community,
                    allow_pii=False,
                    area=area,
                    progress=_Progress(engine, job_id),
                )
                out = folder / name
                if fmt == "shp":
                    out = folder / f"{Path(name).stem}.zip"
                    parts = [f for f in sorted(folder.glob(f"{Path(name).stem}.*")) if f != out]
                    zip_private(out, parts)
                    for f in parts:
                        f.unlink()
                for f in folder.iterdir():
                    os.chmod(f, 0o600)
            except BaseException as exc:
                full = storage_full(exc, folder)
                shutil.rmtree(folder, ignore_errors=True)
                if full and not isinstance(exc, StorageFull):
                    raise StorageFull(DISK_FULL) from exc
                raise
            with engine.begin() as c:
                c.execute(
                    text(
                        "UPDATE export_job SET status = 'done', done = :n, rows = :n, file = :f, "
                        "finished = now(), expires = now() + make_interval(secs => :k) WHERE id = :id"
                    ),
                    {"n": rows, "f": out.name, "k": keep_hours * 3600, "id": job_id},
                )
    except BaseException as exc:  # recorded for the owner; the server log gets the traceback
        full = isinstance(exc, StorageFull) or storage_full(exc)
        if full:
            error = DISK_FULL
            logging.getLogger("gisgov.export").warning("export job %s: disk full (%s)", job_id, exc)
        elif isinstance(exc, GisgovError):
            error = str(exc)
        else:
            error = f"导出失败 export failed ({type(exc).__name__})"
            logging.getLogger("gisgov.export").exception("export job %s failed", job_id)
        try:
            _set(engine, job_id, status="failed", error=error[:1000])
            with engine.begin() as c:
                c.execute(text("UPDATE export_job SET finished = now() WHERE id = :id"), {"id": job_id})
        finally:
            if not isinstance(exc, Exception) and not full:
                raise
    finally:
        if on_finish is not None:
            on_finish(rows if error is None else None, error)


def start(*args, **kwargs) -> threading.Thread:
    """:func:`run` in a daemon thread."""
    t = threading.Thread(target=_run_logged, args=args, kwargs=kwargs, name="gisgov-export", daemon=True)
    t.start()
    return t


def _run_logged(*args, **kwargs) -> None:
    try:
        run(*args, **kwargs)
    except Exception:  # pragma: no cover - run records every failure itself
        logging.getLogger("gisgov.export").exception("export job failed")


def file_path(home: Path, job: dict) -> Path | None:
    if not job.get("file"):
        return None
    p = exports_dir(home) / job["id"] / job["file"]
    return p if p.is_file() else None


def zip_private(out: Path, files: list[Path]) -> None:
    """A zip of ``files`` (by name), readable by its owner only from the first byte."""
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as z:
        for f in files:
            z.write(f, f.name)
