"""100 concurrent signed-in requests against a live uvicorn whose app has a pool of 2 connections
(pool_size=1 + pool_overflow=1): every request finishes without error (no 5xx, not even a 503 for
the pool wait, which is set long enough), no connection is left checked out, and /health answers.

Before issue 9's fix a request could hold a pooled connection while waiting for a threadpool thread,
and ~55 concurrent requests on a pool of 15 deadlocked; a pool of 2 makes that certain."""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import contextmanager

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
    engine = app_engine(owner_url, pool_size=settings.pool_size, max_overflow=settings.pool_overflow,
                        pool_timeout=settings.pool_timeout_s)
    app = create_app(settings, engine=engine)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning",
                                           lifespan="on", backlog=2048))
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
        ("/api/hierarchy", "admin"), ("/api/layers", "staff"), (f"/api/stats/street/{STREET}", "admin"),
        (f"/api/street/{STREET}", "admin"), (f"/api/community/{COMM_A}", "staff"), ("/api/auth/me", "staff"),
        (f"/api/grids/plans/{COMM_A}", "admin"), (f"/api/grid/{GRID_A1}", "staff"), ("/api/stats", "admin"),
        ("/api/layers/community", "admin"),
    ]
    return [routes[i % len(routes)] for i in range(N_REQUESTS)]


@pytest.fixture(scope="module")
def accounts(mini_city_url):  # noqa: F811
    return {"admin": ensure_user(mini_city_url, "admin"),
            "staff": ensure_user(mini_city_url, "community_staff", COMM_A)}


def test_100_concurrent_requests_on_a_pool_of_2(mini_city_url, accounts):  # noqa: F811
    settings = Settings(host="127.0.0.1", port=free_port(), pool_size=1, pool_overflow=1, pool_timeout_s=120,
                        login_rate_per_minute=1000)
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
