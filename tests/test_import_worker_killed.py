"""A server killed during a background import (issue 14, item 4): the job does not stay "running" for
ever. Its process held the job's lease (a PostgreSQL advisory lock); once the process is gone the next
server that reads the job marks it failed with a clear message, nothing of the import was written (its
transaction died with it), the upload was kept, and ``POST /api/import/{job}/retry`` runs it again to the
end. The retry is audited.

A real ``gisgov serve`` process is killed with SIGKILL while PostgreSQL is executing the import's writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import numpy as np
import pytest
from auth_helpers import USER_PASSWORD, ensure_user
from sqlalchemy import create_engine, pool, text
from test_faults import _bench_roster, _env, _other_sessions, _wait, roster_world

from gisgov.db.cluster import free_port
from gisgov.db.engine import psycopg_conninfo

ROWS = 50_000


def _serve(url: str, home, port: int) -> subprocess.Popen:
    env = _env(
        GISGOV_DATABASE_URL=url,
        GISGOV_HOME=str(home),
        GISGOV_SECRET_KEY="worker-killed-test-secret-0001",
        GISGOV_INGEST_SYNC_LIMIT_MB="0.2",  # the roster (several MB) goes to a background job
        GISGOV_LOGIN_RATE_PER_MINUTE="1000",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "gisgov.cli.main", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )

    def up():
        if proc.poll() is not None:
            raise AssertionError("server exited: " + proc.stderr.read().decode()[-2000:])
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    _wait(up, 90, "the server to answer /health", 0.2)
    return proc


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _token(base: str, user: str) -> dict:
    r = httpx.post(f"{base}/api/auth/token", data={"username": user, "password": USER_PASSWORD}, timeout=20)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture
def roster_db(db_factory, tmp_path):
    roster = _bench_roster()
    url = db_factory.create(prefix="gisgov_test_killed")
    eng = create_engine(url, poolclass=pool.NullPool)
    buildings = roster_world(eng, roster.COMMUNITY)
    csv = tmp_path / "居民名册.csv"
    roster.make_roster(csv, ROWS, buildings, np.random.default_rng(5))
    yield url, eng, csv
    eng.dispose()


def _residents(eng) -> tuple[int, int]:
    with eng.connect() as c:
        return tuple(c.execute(text("SELECT (SELECT count(*) FROM resident), (SELECT count(*) FROM household)")).one())


def test_killed_server_marks_the_import_failed_and_it_can_be_retried(roster_db, tmp_path):
    url, eng, csv = roster_db
    home = tmp_path / "home"
    admin = ensure_user(url, "admin")
    db = url.rsplit("/", 1)[1]
    conninfo = psycopg_conninfo(url)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    first = _serve(url, home, port)
    try:
        auth = _token(base, admin)
        with csv.open("rb") as fh:
            r = httpx.post(
                f"{base}/api/import",
                headers=auth,
                files={"file": (csv.name, fh, "text/csv")},
                data={"level": "resident"},
                timeout=60,
            )
        assert r.status_code == 202, r.text
        job = r.json()["job"]
        # while it runs the status says so (the process holding it is alive)
        status = httpx.get(f"{base}/api/import/{job}", headers=auth, timeout=20).json()
        assert status["status"] in ("queued", "running"), status
        _wait(
            lambda: (
                _other_sessions(conninfo, db, "%COPY%") > 0
                or _other_sessions(conninfo, db, "INSERT INTO%resident%") > 0
            ),
            120,
            "the import to write",
            0.05,
        )
        assert httpx.get(f"{base}/api/import/{job}", headers=auth, timeout=20).json()["status"] == "running"
    finally:
        _kill(first)
    assert first.returncode == -signal.SIGKILL

    _wait(lambda: _other_sessions(conninfo, db) == 0, 60, "the killed server's sessions to end")
    assert _residents(eng) == (0, 0)  # nothing of the import was written
    with eng.connect() as c:
        assert c.execute(text("SELECT status FROM import_job WHERE id = :i"), {"i": job}).scalar() == "running"

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    second = _serve(url, home, port)
    try:
        auth = _token(base, admin)
        status = httpx.get(f"{base}/api/import/{job}", headers=auth, timeout=20).json()
        assert status["status"] == "failed", status
        assert "可重试" in status["error"] and "retried" in status["error"], status["error"]
        assert status["retryable"] is True
        assert status["finished"]

        r = httpx.post(f"{base}/api/import/{job}/retry", headers=auth, timeout=60)
        assert r.status_code == 202, r.text
        again = r.json()["job"]
        assert again != job

        def finished():
            r = httpx.get(f"{base}/api/import/{again}", headers=auth, timeout=20)
            if r.status_code == 503:  # the machine is busy: a client polls again, as this one does
                return None
            assert r.status_code == 200, r.text
            s = r.json()
            return s if s["status"] not in ("queued", "running") else None

        done = _wait(finished, 300, "the retried import to finish", 0.5)
        assert done["status"] == "loaded", done
        # the old job's upload moved to the retry: it cannot be retried twice
        old = httpx.get(f"{base}/api/import/{job}", headers=auth, timeout=20).json()
        assert old["status"] == "failed" and old["retryable"] is False
        r = httpx.post(f"{base}/api/import/{job}/retry", headers=auth, timeout=20)
        assert r.status_code == 409 and r.json()["error"] == "Conflict", r.text
    finally:
        _kill(second)

    residents, households = _residents(eng)
    assert residents == ROWS and households > 0
    assert not (home / "imports" / again).exists()  # a finished job's upload is deleted
    with eng.connect() as c:
        retried = c.execute(
            text("SELECT detail->>'retry' FROM audit_log WHERE action = 'import_retry' AND object = :o"),
            {"o": f"import_job:{job}"},
        ).scalar()
        assert retried == again
        results = dict(
            c.execute(
                text("SELECT object, result FROM audit_log WHERE action = 'import' AND object IN (:a, :b)"),
                {"a": f"import_job:{job}", "b": f"import_job:{again}"},
            ).all()
        )
    # the audit agrees: the killed import failed (recorded when its death was found), the retry loaded
    assert results == {f"import_job:{job}": "error", f"import_job:{again}": "ok"}
