"""Import jobs (table ``import_job``): an upload's status, progress, final report and owner.

Progress is written in its own short transactions so that ``GET /api/import/{job}`` sees it while
the load's own transaction is still open.

An import over HTTP runs with the caller's database scope: :func:`scoped_engine` gives an engine
(sharing the app's pool) on which EVERY transaction starts with
``SELECT set_config('gisgov.scope', :v, true)``, so row-level security applies to the load, its
COPY statements (same connection, same transaction) and its progress writes alike.

A job's process holds its lease (:mod:`gisgov.jobs.lease`) from :func:`create` to :func:`finish`. A job
found ``queued``/``running`` with nobody holding it — its server was killed or stopped mid-import — is
marked failed when read (:func:`get`); the import's own transaction died with that process, so nothing of
it was written. A background import keeps its upload in ``GISGOV_HOME/imports/<job>/`` while it runs, so
such a job can be run again (``POST /api/import/{job}/retry``: ``retryable`` in the status).
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event, text

from gisgov.ingest.report import Report
from gisgov.jobs import lease
from gisgov.security.roles import Role

MAX_REPORT_ISSUES = 1000
#: what a job whose process went away says
WORKER_GONE = (
    "导入进程已中断（服务器被停止或进程被终止），未写入任何数据；可重试 "
    "the import's process stopped (server stopped or killed) before it finished: nothing was written; "
    "it can be retried"
)


SCOPE_OPTION = "gisgov_scope"


def scoped_engine(engine: Engine, scope: str) -> Engine:
    """``engine`` (same pool) whose every transaction first sets ``gisgov.scope`` to ``scope``
    (transaction-local, bound parameter). The listener belongs to the returned engine only."""
    eng = engine.execution_options(**{SCOPE_OPTION: scope})

    @event.listens_for(eng, "begin")
    def _set_scope(conn) -> None:  # the DBAPI transaction starts with this statement
        with conn.connection.driver_connection.cursor() as cur:
            cur.execute("SELECT set_config('gisgov.scope', %s, true)", (scope,))

    return eng


def imports_dir(home: Path) -> Path:
    """``GISGOV_HOME/imports`` (0700): uploads of background imports, one folder per job."""
    d = Path(home) / "imports"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    return d


def keep_upload(home: Path, job_id: str, folder: Path) -> Path:
    """Move an upload's private folder to ``imports/<job_id>`` (where a retry finds it); the new folder."""
    dest = imports_dir(home) / str(job_id)
    shutil.move(str(folder), dest)
    return dest


#: a failed job's kept upload (for a retry) is deleted this long after the job ended
KEEP_FAILED_HOURS = 24


def cleanup_uploads(engine: Engine, home: Path) -> int:
    """Delete kept uploads of jobs that ended more than :data:`KEEP_FAILED_HOURS` ago (or are unknown).
    Folders of queued or running jobs stay. Returns the number of folders deleted."""
    base = imports_dir(home)
    names = [d.name for d in base.iterdir() if d.is_dir()]
    if not names:
        return 0
    ids = []
    for n in names:
        try:
            ids.append(str(uuid.UUID(n)))
        except ValueError:
            continue
    with engine.begin() as c:
        keep = {
            str(r[0])
            for r in c.execute(
                text(
                    "SELECT id FROM import_job WHERE id = ANY (CAST(:ids AS uuid[])) AND (status IN ('queued', 'running') "
                    "OR finished IS NULL OR finished > now() - make_interval(secs => :k))"
                ),
                {"ids": ids, "k": KEEP_FAILED_HOURS * 3600},
            )
        }
    gone = 0
    for n in ids:
        if n not in keep:
            shutil.rmtree(base / n, ignore_errors=True)
            gone += 1
    return gone


def kept_upload(home: Path, job: dict[str, Any]) -> Path | None:
    """The kept upload of a job, if it is still there."""
    p = imports_dir(home) / str(job["id"]) / str(job["file"])
    return p if p.is_file() else None


def create(engine: Engine, file: str, level: str, options: dict[str, Any], owner: Any = None) -> str:
    """A queued job; ``owner`` (a Principal) is recorded so only they (or an admin) may read it. This
    process holds the job's lease until :func:`finish`."""
    job_id = _insert(engine, file, level, options, owner)
    lease.take(engine, "import", job_id)
    return job_id


def _insert(engine: Engine, file: str, level: str, options: dict[str, Any], owner: Any) -> str:
    with engine.begin() as c:
        return str(
            c.execute(
                text(
                    "INSERT INTO import_job (file, level, options, owner_id, owner) "
                    "VALUES (:f, :l, CAST(:o AS jsonb), :oid, :own) RETURNING id"
                ),
                {
                    "f": file,
                    "l": level,
                    "o": json.dumps(options),
                    "oid": getattr(owner, "user_id", None),
                    "own": getattr(owner, "username", None),
                },
            ).scalar()
        )


def get(conn: Connection, job_id: str, owner: Any = None) -> dict[str, Any] | None:
    """The job, or None when there is none — or when ``owner`` (a Principal, unless admin) did not
    start it (answered 404 like a missing job, so job ids cannot be probed)."""
    try:
        uuid.UUID(job_id)
    except ValueError:
        return None
    r = (
        conn.execute(
            text(
                "SELECT id, file, level, options, status, stage, done, total, report, error, created, "
                "finished, owner_id, owner FROM import_job WHERE id = :i"
            ),
            {"i": job_id},
        )
        .mappings()
        .first()
    )
    if r is None:
        return None
    d = dict(r)
    owner_id = d.pop("owner_id")
    if owner is not None and owner.role != Role.admin and owner_id != owner.user_id:
        return None
    if d["status"] in ("queued", "running") and lease.orphaned(conn, "import", job_id):
        # its process is gone (and its transaction with it): say so now instead of "running" forever,
        # and write the audit row the dead process could not
        reaped = (
            conn.execute(
                text(
                    "UPDATE import_job SET status = 'failed', error = :e, finished = now() "
                    "WHERE id = :i AND status IN ('queued', 'running') RETURNING status, error, finished"
                ),
                {"e": WORKER_GONE, "i": job_id},
            )
            .mappings()
            .first()
        )
        if reaped is not None:
            d.update(reaped)
            from gisgov.security import audit

            audit.record(
                conn,
                "import",
                actor=d.get("owner"),
                object=f"import_job:{d['id']}",
                result="error",
                detail={"job": str(d["id"]), "level": d["level"], "file": d["file"], "error": "worker stopped"},
            )
    d["id"] = str(d["id"])
    for k in ("created", "finished"):
        d[k] = d[k].isoformat() if d[k] else None
    return d


class JobProgress:
    """A ``progress(stage, done, total)`` callback that records into import_job (at most every 0.5 s)."""

    def __init__(self, engine: Engine, job_id: str, every_s: float = 0.5):
        self.engine, self.job_id, self.every_s, self._last = engine, job_id, every_s, 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last < self.every_s and done < total:
            return
        self._last = now
        with self.engine.begin() as c:
            c.execute(
                text("UPDATE import_job SET stage = :s, done = :d, total = :t WHERE id = :i"),
                {"s": stage, "d": int(done), "t": int(total), "i": self.job_id},
            )


def set_status(engine: Engine, job_id: str, status: str) -> None:
    with engine.begin() as c:
        c.execute(text("UPDATE import_job SET status = :s WHERE id = :i"), {"s": status, "i": job_id})


def _no_nul(v: Any) -> Any:
    """PostgreSQL text and jsonb cannot hold NUL characters (a garbage upload's values may)."""
    if isinstance(v, str):
        return v.replace("\x00", "")
    if isinstance(v, dict):
        return {_no_nul(k): _no_nul(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_no_nul(x) for x in v]
    return v


def finish(engine: Engine, job_id: str, report: Report | None = None, error: str | None = None) -> None:
    status = report.status if report is not None else "failed"
    payload = (
        json.dumps(_no_nul(report.to_dict(MAX_REPORT_ISSUES)), ensure_ascii=False, default=str) if report else None
    )
    error = _no_nul(error)
    try:
        with engine.begin() as c:
            c.execute(
                text(
                    "UPDATE import_job SET status = :s, report = CAST(:r AS jsonb), error = :e, finished = now() "
                    "WHERE id = :i"
                ),
                {"s": status, "r": payload, "e": error, "i": job_id},
            )
    finally:
        lease.release("import", job_id)


def run(
    engine: Engine,
    job_id: str,
    path: Path,
    level: str,
    options: dict,
    display_name: str,
    vault=None,
    cleanup: Path | None = None,
    area: str = "",
    actor=None,
) -> Report | None:
    """Run one load for a job; always records the outcome. Returns the report (None on failure).

    ``engine`` should be a :func:`scoped_engine` for imports on behalf of a user; ``area`` is the
    code prefix the user may write (records outside it are rejected, rule ``out_of_scope``). ``options``
    as stored with the job: crs, layer, map, repair, dry_run, region, encoding, update (replace records
    whose code exists, versioned), header_row (rosters). ``actor`` (a Principal) is named in the audit
    rows of updated records."""
    from gisgov.errors import GisgovError
    from gisgov.ingest.loader import load_file
    from gisgov.ingest.osm import load_osm

    set_status(engine, job_id, "running")
    progress = JobProgress(engine, job_id)
    try:
        if level == "osm":
            rep = load_osm(
                path,
                engine=engine,
                region=options.get("region") or None,
                dry_run=options.get("dry_run", False),
                progress=progress,
            )
            rep.file = display_name
        else:
            rep = load_file(
                path,
                level,
                engine=engine,
                layer=options.get("layer"),
                crs=options.get("crs"),
                mapping=options.get("map") or None,
                repair=options.get("repair", False),
                dry_run=options.get("dry_run", False),
                region=options.get("region") or None,
                encoding=options.get("encoding"),
                progress=progress,
                display_name=display_name,
                vault=vault,
                area=area,
                header_row=options.get("header_row"),
                update=bool(options.get("update", False)),
                actor=actor,
            )
        finish(engine, job_id, rep)
        return rep
    except GisgovError as exc:
        finish(engine, job_id, error=str(exc))
        raise
    except BaseException as exc:  # recorded for the client (never left "running"), re-raised for the server log
        msg = f"{type(exc).__name__}: {exc}".replace(str(Path(path).parent) + "/", "")[:1000]
        finish(engine, job_id, error=f"导入失败 import failed ({msg})")
        raise
    finally:
        if cleanup is not None:
            import shutil

            shutil.rmtree(cleanup, ignore_errors=True)
