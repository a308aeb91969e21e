"""100 concurrent signed-in requests against a live uvicorn whose app has a pool of 2 connections
(pool_size=1 + pool_overflow=1): every request finishes without error (no 5xx, not even a 503 for
the pool wait, which is set long enough), no connection is left checked out, and /health answers.

Before issue 9's fix a request could hold a pooled connection while waiting for a threadpool thread,
and ~55 concurrent requests on a pool of 15 deadlocked; a pool of 2 makes that certain."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from auth_helpers import USER_PASSWORD, app_engine, ensure_user
from mini_city import COMM_A, GRID_A1, STREET, mini_city_url  # noqa: F401  (fixture)

from gisgov.api.app import create_app
from gisgov.config import Settings
from gisgov.db.cluster import free_port

N_REQUESTS = 100


@contextmanager
def live_app(owner_url: str, settings: Settings):
    """uvicorn in a thread serving the app with an engine sized from ``settings``."""
    engine = app_engine(
        owner_url,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_overflow,
        pool_timeout=settings.pool_timeout_s,
    )
    app = create_app(settings, engine=engine)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning", lifespan="on", backlog=2048)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{settings.port}", engine
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        engine.dispose()


def _mix(tokens: dict[str, str]) -> list[tuple[str, str]]:
    """(path, role) pairs over read routes of several kinds, signed in as several roles."""
    routes = [
        ("/api/hierarchy", "admin"),
        ("/api/layers", "staff"),
        (f"/api/stats/street/{STREET}", "admin"),
        (f"/api/street/{STREET}", "admin"),
        (f"/api/community/{COMM_A}", "staff"),
        ("/api/auth/me", "staff"),
        (f"/api/grids/plans/{COMM_A}", "admin"),
        (f"/api/grid/{GRID_A1}", "staff"),
        ("/api/stats", "admin"),
        ("/api/layers/community", "admin"),
    ]
    return [routes[i % len(routes)] for i in range(N_REQUESTS)]


@pytest.fixture(scope="module")
def accounts(mini_city_url):
    return {
        "admin": ensure_user(mini_city_url, "admin"),
        "staff": ensure_user(mini_city_url, "community_staff", COMM_A),
    }


def test_100_concurrent_requests_on_a_pool_of_2(mini_city_url, accounts):
    settings = Settings(
        host="127.0.0.1", port=free_port(), pool_size=1, pool_overflow=1, pool_timeout_s=120, login_rate_per_minute=1000
    )
    with live_app(mini_city_url, settings) as (base, engine):
        assert engine.pool.size() == 1 and engine.pool._max_overflow == 1

        async def run() -> tuple[list[tuple[str, int, str]], float]:
            limits = httpx.Limits(max_connections=N_REQUESTS, max_keepalive_connections=N_REQUESTS)
            async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as http:
                tokens = {}
                for role, user in accounts.items():
                    r = await http.post("/api/auth/token", data={"username": user, "password": USER_PASSWORD})
                    assert r.status_code == 200, r.text
                    tokens[role] = r.json()["access_token"]

                async def one(path: str, role: str):
                    r = await http.get(path, headers={"Authorization": f"Bearer {tokens[role]}"})
                    return path, r.status_code, r.text[:300]

                t0 = time.monotonic()
                out = await asyncio.gather(*(one(p, r) for p, r in _mix(tokens)))
                return list(out), time.monotonic() - t0

        results, _wall = asyncio.run(run())
        assert len(results) == N_REQUESTS
        bad = [(p, s, body) for p, s, body in results if s != 200]
        assert not bad, bad[:5]
        assert engine.pool.checkedout() == 0  # every connection went back to the pool
        health = httpx.get(f"{base}/health", timeout=30)
        assert health.status_code == 200, health.text


# -- `gisgov serve --workers 2` ---------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"resource_tracker" not in cmd:
                out.append(int(entry))
    return out


def _db_connections(pid: int, db_port: int) -> int:
    """Established TCP connections of process ``pid`` to the database port."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return 0
    n = 0
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if int(f[2].split(":")[1], 16) == db_port and f[3] == "01" and f[9] in inodes:
            n += 1
    return n


def test_serve_with_two_workers(db_factory, tmp_path):
    from auth_helpers import app_url
    from sqlalchemy.engine import make_url

    url = db_factory.create(prefix="gisgov_test_workers")
    user = ensure_user(url, "admin", username="w_admin")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GISGOV_")}
    env.update(
        {
            "GISGOV_DATABASE_URL": url,
            "GISGOV_APP_DATABASE_URL": app_url(url),
            "GISGOV_HOME": str(tmp_path),
            "GISGOV_SECRET_KEY": "workers-test-secret-key-001",
            "GISGOV_LOGIN_RATE_PER_MINUTE": "1000",
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "gisgov.cli.main", "serve", "--workers", "2", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "gisgov serve --workers 2 did not answer"
            time.sleep(0.3)
        token = httpx.post(
            f"{base}/api/auth/token", data={"username": user, "password": USER_PASSWORD}, timeout=30
        ).json()["access_token"]
        workers = _children(proc.pid)
        assert len(workers) == 2, workers
        db_port = make_url(url).port

        async def burst():
            async with httpx.AsyncClient(base_url=base, timeout=60) as http:  # new connections spread over workers
                rs = await asyncio.gather(
                    *(http.get("/api/hierarchy", headers={"Authorization": f"Bearer {token}"}) for _ in range(40))
                )
            return [r.status_code for r in rs]

        # each worker has one pooled connection from its start-up check; a worker that served a signed-in
        # request also has its side pool's (session lookup): both workers must have served
        deadline = time.monotonic() + 60
        while True:
            assert set(asyncio.run(burst())) == {200}
            served = {w: _db_connections(w, db_port) for w in workers}
            if all(n >= 2 for n in served.values()):
                break
            assert time.monotonic() < deadline, served
        assert _children(proc.pid) == workers  # same two workers throughout
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
