"""Fault tests (issue 9): the database stopped and started under a live server, kill -9 of the
postmaster, kill -9 during an import and during a plan activation. Nothing partial is ever left, and
everything recovers without restarting the app.

(a) and (b) run a private embedded cluster in a temporary GISGOV_HOME (never the test cluster, which
other tests share); (c) and (d) kill a client process, never a server process of the shared cluster."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psycopg
import pytest
from auth_helpers import USER_PASSWORD, ensure_user
from sqlalchemy import create_engine, pool, text

from gisgov.config import REPO_ROOT
from gisgov.db import migrate
from gisgov.db.cluster import EmbeddedCluster
from gisgov.db.engine import psycopg_conninfo


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GISGOV_")}
    env.update({"COLUMNS": "200", **extra})
    return env


def _wait(pred, timeout: float, what: str, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def private_cluster(tmp_path_factory):
    home = tmp_path_factory.mktemp("fault-home")
    os.chmod(home, 0o755)
    os.chmod(home.parent, 0o755)
    c = EmbeddedCluster(home, db_name="gisgov")
    st = c.up()
    migrate.upgrade(st.url)
    yield c, home
    c.down()


# -- (a) database stopped and started while requests run -------------------------------------------


def test_database_restart_under_a_live_server(private_cluster):
    from live_server import serve

    cluster, _ = private_cluster
    url = cluster.url()
    port = cluster.status().port
    user = ensure_user(url, "admin")
    results: list[tuple[str, float, int, str]] = []  # (path, time, status, body)
    stop = threading.Event()
    with serve(url, login_rate_per_minute=1000) as base:
        with httpx.Client(base_url=base, timeout=20) as http:
            r = http.post("/api/auth/token", data={"username": user, "password": USER_PASSWORD})
            assert r.status_code == 200, r.text
            auth = {"Authorization": f"Bearer {r.json()['access_token']}"}

            def hammer():
                with httpx.Client(base_url=base, timeout=20) as h:
                    while not stop.is_set():
                        for path, headers in (("/health", {}), ("/api/hierarchy", auth), ("/api/layers", auth)):
                            resp = h.get(path, headers=headers)
                            results.append((path, time.monotonic(), resp.status_code, resp.text))
                        time.sleep(0.02)

            threads = [threading.Thread(target=hammer) for _ in range(3)]
            for t in threads:
                t.start()
            try:
                _wait(lambda: len(results) >= 9, 30, "first answers")
                assert cluster.down() is True
                t_down = time.monotonic()
                _wait(
                    lambda: any(s == 503 and t > t_down for _, t, s, _ in results), 20, "503 while the database is down"
                )
                time.sleep(1.0)  # more requests while it is down
                st = cluster.up()
                t_up = time.monotonic()
                assert st.port == port  # the running app's URL still points at it
                _wait(
                    lambda: sum(1 for p, t, s, _ in results if t > t_up and s == 200 and p != "/health") >= 6,
                    30,
                    "signed-in routes answering again",
                )
            finally:
                stop.set()
                for t in threads:
                    t.join(timeout=30)
            # and a fresh request on every route, without restarting anything
            for path, headers in (("/health", {}), ("/api/hierarchy", auth), ("/api/layers", auth)):
                assert http.get(path, headers=headers).status_code == 200, path
    statuses = {s for _, _, s, _ in results}
    assert statuses <= {200, 503}, sorted(statuses)  # never a 500 (or anything else) on the way
    down = [(p, b) for p, _, s, b in results if s == 503]
    assert {p for p, _ in down} >= {"/health"}, "the probe itself must say 503"
    for path, body in down:
        assert "DatabaseUnavailable" in body or "DatabaseBusy" in body, body
        for secret in (
            "127.0.0.1",
            "localhost",
            str(port),
            "gisgov_app",
            "postgres",
            "psycopg",
            "connection to server",
        ):
            assert secret not in body, (path, body)


# -- (b) kill -9 of the postmaster → `gisgov db up` recovers ----------------------------------------


def test_kill_9_postmaster_then_db_up_recovers(private_cluster):
    cluster, home = private_cluster
    st = cluster.up()
    conninfo = psycopg_conninfo(st.url)
    with psycopg.connect(conninfo, autocommit=True) as c:
        # a commit that returned is on disk: a crash right after it must not lose it
        assert c.execute("SHOW synchronous_commit").fetchone()[0] == "on"
        c.execute("CREATE TABLE IF NOT EXISTS fault_probe (id int PRIMARY KEY, v text)")
        c.execute("TRUNCATE fault_probe")
        c.execute("INSERT INTO fault_probe SELECT i, md5(i::text) FROM generate_series(1, 5000) i")
    # a running app's idle connections, and one backend busy in a long query (it does not notice the
    # postmaster's death until the query ends: it keeps the shared memory in use)
    idle = [psycopg.connect(conninfo) for _ in range(3)]
    for c in idle:
        c.execute("SELECT 1")
    busy_conn = psycopg.connect(conninfo, autocommit=True)
    busy_pid = busy_conn.info.backend_pid
    busy = threading.Thread(target=_swallow, args=(busy_conn, "SELECT count(*) FROM generate_series(1, 2000000000)"))
    busy.start()
    try:
        _wait(lambda: _is_running_query(busy_pid), 10, "the busy query")
        os.kill(st.pid, signal.SIGKILL)
        _wait(lambda: not _alive(st.pid), 10, "the postmaster to die")
        assert _alive(busy_pid), "the busy backend outlives its postmaster (the case `db up` must handle)"
        r = subprocess.run(
            [sys.executable, "-m", "gisgov.cli.main", "db", "up"],
            env=_env(GISGOV_HOME=str(home)),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        for c in idle:
            c.close()
        busy_conn.close()  # (the server side is gone by now)
        busy.join(timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "等待崩溃前的数据库进程退出" in r.stderr and "已启动 started" in r.stdout
    assert not _alive(busy_pid)
    st2 = cluster.status()
    assert st2.running and st2.pid != st.pid and st2.port == st.port
    with psycopg.connect(conninfo) as c:  # data committed before the crash is intact
        assert c.execute("SELECT count(*), sum(length(v)) FROM fault_probe").fetchone() == (5000, 5000 * 32)


def _swallow(conn, sql):
    with contextlib.suppress(psycopg.Error):
        conn.execute(sql)


def _is_running_query(pid: int) -> bool:
    try:
        return "SELECT" in Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


# -- (c) kill -9 during an import → no partial rows -------------------------------------------------


def _bench_roster():
    spec = importlib.util.spec_from_file_location("roster_load", REPO_ROOT / "bench" / "roster_load.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _other_sessions(conninfo: str, db: str, query_like: str | None = None) -> int:
    with psycopg.connect(conninfo, autocommit=True) as c:
        sql = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"
        )
        args = [db]
        if query_like:
            sql += " AND state = 'active' AND query ILIKE %s"
            args.append(query_like)
        return c.execute(sql, args).fetchone()[0]


def roster_world(eng, community: str) -> list[str]:
    """One street, one community ``community`` and 300 buildings (18 floors): the place a big roster goes into.
    Returns the building codes."""
    with eng.begin() as c:
        c.execute(
            text(
                "INSERT INTO street (code, name, geom) VALUES ('340104001', '故障街道', "
                "ST_Multi(ST_MakeEnvelope(117.0, 31.0, 117.2, 31.2, 4490)))"
            )
        )
        c.execute(
            text(
                "INSERT INTO community (code, street_code, name, geom) VALUES (:c, '340104001', '故障社区', "
                "ST_Multi(ST_MakeEnvelope(117.0, 31.0, 117.2, 31.2, 4490)))"
            ),
            {"c": community},
        )
        c.execute(
            text("""
            INSERT INTO building (code, community_code, floors, geom, pos)
            SELECT :c || lpad(i::text, 5, '0'), :c, 18,
                   ST_Multi(ST_MakeEnvelope(117.001 + (i % 20) * 0.0005, 31.001 + (i / 20) * 0.0005,
                                            117.0013 + (i % 20) * 0.0005, 31.0013 + (i / 20) * 0.0005, 4490)),
                   ST_SetSRID(ST_MakePoint(0, 0), 4490)
            FROM generate_series(1, 300) i"""),
            {"c": community},
        )
        buildings = c.execute(text("SELECT code FROM building ORDER BY code")).scalars().all()
    return buildings


def test_kill_9_during_roster_import_leaves_no_rows(db_factory, tmp_path):
    roster = _bench_roster()
    url = db_factory.create(prefix="gisgov_test_faults")
    eng = create_engine(url, poolclass=pool.NullPool)
    buildings = roster_world(eng, roster.COMMUNITY)
    csv = tmp_path / "residents.csv"
    roster.make_roster(csv, 150_000, buildings, np.random.default_rng(3))
    db = url.rsplit("/", 1)[1]
    conninfo = psycopg_conninfo(url)
    env = _env(
        GISGOV_DATABASE_URL=url, GISGOV_HOME=str(tmp_path / "home"), GISGOV_SECRET_KEY="fault-test-secret-key-00001"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "gisgov.cli.main", "load", str(csv), "--level", "resident"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # kill it while it writes: its COPY (or the set-wise INSERTs after it) is running in the database
        _wait(
            lambda: (
                proc.poll() is not None
                or _other_sessions(conninfo, db, "%COPY%") > 0
                or _other_sessions(conninfo, db, "INSERT INTO%resident%") > 0
            ),
            120,
            "the import to start writing",
            0.05,
        )
        assert proc.poll() is None, "the import finished before it could be killed: " + proc.stderr.read().decode()
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    _wait(lambda: _other_sessions(conninfo, db) == 0, 60, "the killed import's backend to roll back")
    with eng.connect() as c:
        counts = c.execute(
            text(
                "SELECT (SELECT count(*) FROM resident), (SELECT count(*) FROM household), "
                "(SELECT count(*) FROM resident_group), "
                "(SELECT count(*) FROM building WHERE households IS NOT NULL AND households > 0)"
            )
        ).one()
    eng.dispose()
    assert tuple(counts) == (0, 0, 0, 0), counts


# -- (d) kill -9 during plan activation → the old plan stays active ---------------------------------

ACTIVATE_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from sqlalchemy import create_engine, pool, text
    from gisgov.gridding import plans

    url, code, version, pause_at, marker = sys.argv[1:6]
    eng = create_engine(url, poolclass=pool.NullPool)

    with eng.begin() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()

        def checkpoint(step):
            if step == pause_at:
                Path(marker).write_text(str(pid))
                time.sleep(300)

        plans.activate(conn, code, int(version), rebase=True, force=True, checkpoint=checkpoint)
""")


@pytest.fixture(scope="module")
def plan_db(db_factory):
    from gisgov.gridding import plans, service
    from tests.grid_city import COMMUNITY, block_layout

    url = db_factory.create(prefix="gisgov_test_faults_plan")
    eng = create_engine(url, poolclass=pool.NullPool)
    hh = np.array([120, 90, 150, 110, 80, 130, 100, 140, 95, 105, 125, 85])
    with eng.begin() as conn:
        block_layout(4, 3, hh, people_per_hh=2.3).load(conn)
    with eng.begin() as conn:
        v1 = service.propose_plan(conn, COMMUNITY, save=True, seed=1, method="heuristic")["version"]
    with eng.begin() as conn:
        plans.activate(conn, COMMUNITY, v1, force=True)
    yield url, eng, COMMUNITY
    eng.dispose()


def _plan_state(eng, community):
    with eng.connect() as c:
        return (
            c.execute(
                text(
                    "SELECT version, status, parent_version FROM grid_plan WHERE community_code = :c ORDER BY version"
                ),
                {"c": community},
            ).all(),
            c.execute(text("SELECT id, grid_id FROM building ORDER BY id")).all(),
            c.execute(text("SELECT id, code, plan_id FROM grid ORDER BY id")).all(),
            c.execute(
                text("SELECT plan_id, building_id, grid_id FROM grid_assignment ORDER BY plan_id, building_id")
            ).all(),
        )


@pytest.mark.parametrize("how, pause_at", [("kill -9 the client", "buildings"), ("pg_terminate_backend", "renumbered")])
def test_interrupted_activation_keeps_the_old_plan(plan_db, tmp_path, how, pause_at):
    from gisgov.gridding import plans, service
    from gisgov.gridding.io import plan_row

    url, eng, community = plan_db
    with eng.begin() as conn:
        active = plan_row(conn, community, None)["version"]
        draft = service.propose_plan(conn, community, save=True, seed=int(time.time()) % 1000, method="heuristic")[
            "version"
        ]
    before = _plan_state(eng, community)
    statuses = {v: s for v, s, _ in before[0]}
    assert statuses[active] == "active" and statuses[draft] == "draft"
    marker = tmp_path / "paused"
    script = tmp_path / "activate.py"
    script.write_text(ACTIVATE_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), url, community, str(draft), pause_at, str(marker)],
        env={**_env(), "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=str(REPO_ROOT),
    )
    try:
        _wait(
            lambda: (marker.exists() and marker.read_text()) or proc.poll() is not None,
            120,
            "the activation to reach " + pause_at,
        )
        assert proc.poll() is None, proc.stderr.read().decode()
        backend = int(marker.read_text())
        if how == "pg_terminate_backend":
            with psycopg.connect(psycopg_conninfo(url), autocommit=True) as c:
                assert c.execute("SELECT pg_terminate_backend(%s)", (backend,)).fetchone()[0] is True
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    db = url.rsplit("/", 1)[1]
    _wait(lambda: _other_sessions(psycopg_conninfo(url), db) == 0, 60, "the interrupted transaction to end")
    # old plan active, the draft still a draft, buildings, grid codes and assignments untouched
    assert _plan_state(eng, community) == before
    with eng.begin() as conn:  # and the activation can then be done completely
        out = plans.activate(conn, community, draft, rebase=True, force=True)
    assert out["previous"] == active
    with eng.connect() as conn:
        assert plan_row(conn, community, None)["version"] == draft
