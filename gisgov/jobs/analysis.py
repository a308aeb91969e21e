"""Background analyses 后台分析: a grid proposal or repair runs in a thread of the server process and
its result is read later, instead of holding the request (and a pooled connection's transaction) open
for the solver's whole time.

* The job runs with the caller's database scope (:func:`gisgov.ingest.jobs.scoped_engine`: row-level
  security exactly as in the request), the analysis ``statement_timeout`` and the solver cap the
  request would have had; its result is always saved as a draft (author: the caller) and audited
  ``plan_save`` like the synchronous route.
* Status ``queued`` → ``running`` → ``done`` (``result``: the route's answer, with ``version``) or
  ``failed`` (``error``: the message). A job left ``queued``/``running`` by a stopped server is marked
  failed when the next job is made (after ``STALE_HOURS``).
* At most :data:`WORKERS` analyses run at once per server process (two cores: one solver each); the
  others wait ``queued``.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable

from sqlalchemy import Connection, Engine, text

from gisgov.security.roles import Principal, Role

WORKERS = 2
STALE_HOURS = 6
_SLOT = threading.BoundedSemaphore(WORKERS)
log = logging.getLogger(__name__)


def create(engine: Engine, owner: Principal, kind: str, params: dict) -> str:
    with engine.begin() as c:
        c.execute(
            text(
                f"UPDATE analysis_job SET status = 'failed', finished = now(), "
                f"error = '服务器重启，任务中断 the server stopped while the job ran' "
                f"WHERE status IN ('queued', 'running') AND created < now() - interval '{STALE_HOURS} hours'"
            )
        )
        return str(
            c.execute(
                text(
                    "INSERT INTO analysis_job (owner_id, owner, kind, params) VALUES (:oid, :own, :k, CAST(:p AS jsonb)) "
                    "RETURNING id"
                ),
                {"oid": owner.user_id, "own": owner.username, "k": kind, "p": json.dumps(params, ensure_ascii=False)},
            ).scalar()
        )


def get(conn: Connection, job_id: str, viewer: Principal) -> dict | None:
    """The job, or None when there is none or ``viewer`` neither made it nor is an admin."""
    try:
        uuid.UUID(job_id)
    except ValueError:
        return None
    row = conn.execute(text("SELECT * FROM analysis_job WHERE id = :i"), {"i": job_id}).mappings().first()
    if row is None or (row["owner_id"] != viewer.user_id and viewer.role is not Role.admin):
        return None
    out = dict(row)
    out["id"] = str(out["id"])
    for k in ("created", "started", "finished"):
        out[k] = out[k].isoformat() if out[k] else None
    return out


def _set(engine: Engine, job_id: str, *, finished: bool = False, **values) -> None:
    sets = [f"{k} = CAST(:{k} AS jsonb)" if k == "result" else f"{k} = :{k}" for k in values]
    if finished:
        sets.append("finished = now()")
    if "result" in values:
        values["result"] = json.dumps(values["result"], ensure_ascii=False, default=str)
    with engine.begin() as c:
        c.execute(text(f"UPDATE analysis_job SET {', '.join(sets)} WHERE id = :id"), {"id": job_id, **values})


def run(
    status_engine: Engine, work_engine: Engine, job_id: str, timeout_s: float, work: Callable[[Connection], dict]
) -> None:
    """Run ``work(conn)`` in one transaction of ``work_engine`` (the caller's scope) and record the outcome
    through ``status_engine``; never raises."""
    with _SLOT:
        try:
            with status_engine.begin() as c:
                c.execute(
                    text(
                        "UPDATE analysis_job SET status = 'running', stage = 'solving', started = now() WHERE id = :i"
                    ),
                    {"i": job_id},
                )
            with work_engine.begin() as conn:
                conn.execute(
                    text("SELECT set_config('statement_timeout', :t, true)"), {"t": str(int(timeout_s * 1000))}
                )
                result = work(conn)
            _set(status_engine, job_id, status="done", stage="done", result=result, finished=True)
        except Exception as exc:
            log.warning("analysis job %s failed: %s", job_id, exc)
            _set(status_engine, job_id, status="failed", stage="failed", error=str(exc)[:2000], finished=True)


def start(*args) -> threading.Thread:
    t = threading.Thread(target=run, args=args, name=f"gisgov-analysis-{args[2]}", daemon=True)
    t.start()
    return t
