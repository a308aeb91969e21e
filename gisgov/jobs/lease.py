"""Job leases 任务租约: who is still working on a background job, known from PostgreSQL itself.

A process that takes on a job (an import, an export, an analysis) holds a session-level advisory lock
keyed by the job on a connection of its own for as long as the job is queued or running. When that
process dies — kill -9, a crash, the server stopped — its connections close and PostgreSQL releases
the lock at once. Whoever reads the job afterwards (:func:`orphaned`) finds nobody holding it and can
mark the job failed straight away: no heartbeat to tune, no timeout to wait for, nothing kept in memory
that a second worker process would not see.

The key is ``(kind, hashtext(job id))``. Two different jobs whose ids hash alike would only make a dead
job look alive until its own timeout-based clean-up; they can never make a live job look dead.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Connection, Engine, text

#: the first half of the advisory-lock key, per kind of job (an arbitrary, fixed number each)
KINDS = {"import": 7301, "export": 7302, "analysis": 7303}

_HELD: dict[tuple[str, str], Connection] = {}
_HELD_LOCK = threading.Lock()
log = logging.getLogger(__name__)


def take(engine: Engine, kind: str, job_id: str) -> None:
    """Hold the lease of job ``job_id`` in this process until :func:`release` (or until the process dies).
    Uses one pooled connection of ``engine`` for as long as the job lives."""
    conn = engine.connect()
    try:
        conn.execute(text("SELECT pg_advisory_lock(:k, hashtext(:i))"), {"k": KINDS[kind], "i": str(job_id)})
        conn.commit()
    except BaseException:
        conn.invalidate()
        conn.close()
        raise
    with _HELD_LOCK:
        old = _HELD.pop((kind, str(job_id)), None)
        _HELD[(kind, str(job_id))] = conn
    if old is not None:
        _close(old, kind, job_id)


def release(kind: str, job_id: str) -> None:
    """Give the lease back (no-op when this process does not hold it)."""
    with _HELD_LOCK:
        conn = _HELD.pop((kind, str(job_id)), None)
    if conn is not None:
        _close(conn, kind, job_id)


def _close(conn: Connection, kind: str, job_id: str) -> None:
    try:
        conn.execute(text("SELECT pg_advisory_unlock(:k, hashtext(:i))"), {"k": KINDS[kind], "i": str(job_id)})
        conn.commit()
        conn.close()
    except Exception:  # the database went away: its end of the lock is gone with the session
        log.warning("job lease %s/%s: connection lost while releasing", kind, job_id)
        try:
            conn.invalidate()
            conn.close()
        except Exception:
            pass


def held_here(kind: str, job_id: str) -> bool:
    with _HELD_LOCK:
        return (kind, str(job_id)) in _HELD


def orphaned(conn: Connection, kind: str, job_id: str) -> bool:
    """True when no process holds the lease of ``job_id`` (its worker is gone). The probe takes the lock
    for the rest of ``conn``'s transaction only when nobody had it, which nobody else will ask for."""
    if held_here(kind, job_id):
        return False
    got = conn.execute(
        text("SELECT pg_try_advisory_xact_lock(:k, hashtext(:i))"), {"k": KINDS[kind], "i": str(job_id)}
    ).scalar()
    return bool(got)
