"""Scope under concurrency: 240 concurrent requests from accounts of different grids and communities,
served by an app whose engine has a pool of TWO connections: the resident layer (personal data under
row-level security), the hierarchy counts (aggregates), one of the account's own residents and one of
another account's (404). Every response must hold only its own account's rows (resident ids and
counts checked against SQL run as the owner), nothing may fail and
nothing may deadlock; afterwards every connection is back in the pool. A cancelled request (client
gone) must give its connection back too.

The row-level security scope is set per transaction (``set_config('gisgov.scope', :v, true)``), so a
connection reused by the next request cannot carry the previous caller's scope; this test is where a
leak through the pool would show.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import anyio
import httpx
import pytest
from auth_helpers import USER_PASSWORD, app_engine, ensure_user
from pii_scanner import assert_no_clear_pii
from security_city import gridded_city_url  # noqa: F401  (fixture)
from sqlalchemy import create_engine, pool, text

from gisgov.api import deps
from gisgov.api.app import create_app
from gisgov.config import Settings

REQUESTS = 240
BOUND_S = 120  # generous: this is a correctness test, not a benchmark
LAYER_LIMIT = 5000


@pytest.fixture(scope="module")
def accounts(gridded_city_url) -> list[dict]:
    """Grid workers on the most populated active grid of each planned community, and a community
    worker of the first community; each with the resident ids it may see (owner's SQL)."""
    eng = create_engine(gridded_city_url, poolclass=pool.NullPool)
    out = []
    try:
        with eng.connect() as c:
            grids = c.execute(
                text("""
                SELECT DISTINCT ON (g.community_code) g.code, count(r.id) AS n
                FROM grid g JOIN grid_plan p ON p.id = g.plan_id AND p.status = 'active'
                JOIN grid_assignment ga ON ga.grid_id = g.id AND ga.plan_id = p.id
                JOIN building b ON b.id = ga.building_id JOIN household h ON h.building_code = b.code
                JOIN resident r ON r.household_id = h.id
                GROUP BY g.community_code, g.code ORDER BY g.community_code, n DESC, g.code""")
            ).all()
            assert len(grids) >= 3, "need active grids in three communities"
            assert len({g.code[:9] for g in grids}) >= 2, "need grids in two streets"
            for g in grids:
                ids = set(
                    c.execute(
                        text("""
                    SELECT r.id FROM grid g JOIN grid_plan p ON p.id = g.plan_id AND p.status = 'active'
                    JOIN grid_assignment ga ON ga.grid_id = g.id AND ga.plan_id = p.id
                    JOIN building b ON b.id = ga.building_id JOIN household h ON h.building_code = b.code
                    JOIN resident r ON r.household_id = h.id WHERE g.code = :g"""),
                        {"g": g.code},
                    ).scalars()
                )
                out.append({"user": ensure_user(gridded_city_url, "grid_worker", g.code), "scope": g.code, "ids": ids})
            comm = grids[0].code[:12]
            ids = set(
                c.execute(
                    text("""
                SELECT r.id FROM resident r JOIN household h ON h.id = r.household_id
                JOIN building b ON b.code = h.building_code WHERE b.community_code = :c"""),
                    {"c": comm},
                ).scalars()
            )
            out.append({"user": ensure_user(gridded_city_url, "community_staff", comm), "scope": comm, "ids": ids})
    finally:
        eng.dispose()
    for i, a in enumerate(out):
        assert a["ids"], f"no residents in scope {a['scope']}"
        other = out[(i + 1) % len(out)]["ids"] | out[(i + 2) % len(out)]["ids"]
        a["own"] = sorted(a["ids"])[:: max(1, len(a["ids"]) // 40)]
        a["foreign"] = sorted(other - a["ids"])[:: max(1, len(other - a["ids"]) // 40)]
        assert a["foreign"]
    # the scopes really differ: no grid worker's residents are another grid worker's
    grid_sets = [a["ids"] for a in out if len(a["scope"]) == 15]
    assert all(not (x & y) for i, x in enumerate(grid_sets) for y in grid_sets[i + 1 :])
    return out


KINDS = ("layer", "hierarchy", "own", "foreign")


def _check(a: dict, kind: str, r: httpx.Response, rid: int | None = None) -> str | None:
    """None if the response holds exactly the account's rows, else what is wrong."""
    if kind == "foreign":
        return None if r.status_code == 404 else f"foreign resident {rid} as {a['scope']}: HTTP {r.status_code}"
    if r.status_code != 200:
        return f"{kind} {a['scope']}: HTTP {r.status_code} {r.text[:200]}"
    assert_no_clear_pii(r.text, where=f"{kind} as {a['user']}")
    body = r.json()
    if kind == "layer":
        got = {int(f["id"]) for f in body["features"]}
        if not got <= a["ids"]:
            return f"layer {a['scope']}: {len(got - a['ids'])} residents of another scope"
        if body.get("numberMatched") != len(a["ids"]):
            return f"layer {a['scope']}: numberMatched {body.get('numberMatched')} != {len(a['ids'])}"
        if len(a["ids"]) <= LAYER_LIMIT and got != a["ids"]:
            return f"layer {a['scope']}: {len(a['ids'] - got)} own residents missing"
    elif kind == "hierarchy":
        if body.get("residents") != len(a["ids"]):
            return f"hierarchy {a['scope']}: residents {body.get('residents')} != {len(a['ids'])}"
    elif str(body.get("id")) != str(rid):
        return f"resident {rid} as {a['scope']}: got feature {body.get('id')}"
    return None


def test_concurrent_requests_over_two_connections_stay_in_scope(gridded_city_url, accounts):
    eng = app_engine(gridded_city_url, pool_size=2, max_overflow=0, pool_timeout=30)
    app = create_app(Settings(login_rate_per_minute=10_000), engine=eng)

    async def run() -> tuple[list[str], float]:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000", timeout=BOUND_S) as client:
            for a in accounts:
                r = await client.post("/api/auth/token", data={"username": a["user"], "password": USER_PASSWORD})
                assert r.status_code == 200, r.text
                a["auth"] = {"Authorization": f"Bearer {r.json()['access_token']}"}

            async def one(i: int) -> str | None:
                # consecutive requests come from different accounts; each account cycles through the kinds
                a = accounts[i % len(accounts)]
                kind = KINDS[(i // len(accounts)) % len(KINDS)]
                if kind == "layer":
                    r = await client.get("/api/layers/resident", params={"limit": LAYER_LIMIT}, headers=a["auth"])
                    return _check(a, kind, r)
                if kind == "hierarchy":
                    return _check(a, kind, await client.get("/api/hierarchy", headers=a["auth"]))
                pick = a["own"] if kind == "own" else a["foreign"]
                rid = pick[i % len(pick)]
                return _check(a, kind, await client.get(f"/api/resident/{rid}", headers=a["auth"]), rid)

            t0 = time.perf_counter()
            results = await asyncio.gather(*(one(i) for i in range(REQUESTS)), return_exceptions=True)
            return [str(x) for x in results if x is not None], time.perf_counter() - t0

    try:
        problems, seconds = asyncio.run(run())
        assert not problems, f"{len(problems)} of {REQUESTS} responses wrong: {problems[:5]}"
        assert seconds < BOUND_S, f"{REQUESTS} requests took {seconds:.0f} s"
        assert eng.pool.checkedout() == 0, "connections not returned to the pool"
    finally:
        eng.dispose()


def test_a_cancelled_request_gives_its_connection_back(gridded_city_url):
    """Two requests hold both pooled connections and are cancelled (clients gone): both connections
    return to the pool and the next transaction starts with no scope."""
    eng = app_engine(gridded_city_url, pool_size=2, max_overflow=0, pool_timeout=5)
    request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(engine=eng)))
    held = []

    async def hold() -> None:
        async with deps.transaction(request, "*") as conn:
            held.append(conn)
            await anyio.sleep(60)

    async def run() -> None:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(hold)
                tg.start_soon(hold)
                while len(held) < 2:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
                assert eng.pool.checkedout() == 2
                tg.cancel_scope.cancel()

    try:
        anyio.run(run)
        assert eng.pool.checkedout() == 0, "a cancelled request kept its connection"
        with eng.connect() as c, c.begin():
            assert c.execute(text("SELECT count(*) FROM resident")).scalar() == 0
    finally:
        eng.dispose()
