"""Requests wait for a database connection in line (FIFO), in the event loop, before they take a worker
thread; a wait longer than ``GISGOV_POOL_TIMEOUT_S`` gives up with the pool's TimeoutError (503
DatabaseBusy in the app)."""

from __future__ import annotations

from types import SimpleNamespace

import anyio
import pytest
from auth_helpers import app_engine
from mini_city import mini_city_url  # noqa: F401  (fixture)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from gisgov.api import deps
from gisgov.config import Settings


def _request(eng, wait_s: float):
    return SimpleNamespace(
        app=SimpleNamespace(state=SimpleNamespace(engine=eng, settings=Settings(pool_timeout_s=wait_s))),
        state=SimpleNamespace(),
        scope={},
    )


def test_waiters_are_served_in_arrival_order_without_threads(mini_city_url):
    eng = app_engine(mini_city_url, pool_size=1, max_overflow=0, pool_timeout=30)
    request = _request(eng, 30)
    order: list[int] = []

    async def one(i: int, hold: float) -> None:
        async with deps.transaction(request, "*") as conn:
            order.append(i)
            conn.exec_driver_sql("SELECT 1")
            await anyio.sleep(hold)

    async def run() -> None:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(one, 0, 1.5)
                await anyio.sleep(0.1)
                for i in range(1, 30):
                    tg.start_soon(one, i, 0)
                    await anyio.sleep(0.005)
                await anyio.sleep(0.1)
                # 29 requests wait in line; none holds a worker thread while waiting
                assert anyio.to_thread.current_default_thread_limiter().borrowed_tokens == 0
                assert request.app.state.connection_slots.statistics().tasks_waiting == 29

    try:
        anyio.run(run)
        assert order == list(range(30))
        assert eng.pool.checkedout() == 0
    finally:
        eng.dispose()


def test_a_wait_longer_than_the_pool_timeout_gives_up(mini_city_url):
    eng = app_engine(mini_city_url, pool_size=1, max_overflow=0, pool_timeout=30)
    request = _request(eng, 0.5)
    outcome: list[str] = []

    async def holder() -> None:
        async with deps.transaction(request, "*"):
            await anyio.sleep(2)

    async def waiter() -> None:
        await anyio.sleep(0.1)
        t0 = anyio.current_time()
        with pytest.raises(PoolTimeout):
            async with deps.transaction(request, "*"):
                pass
        outcome.append(f"{anyio.current_time() - t0:.1f}")

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(holder)
            tg.start_soon(waiter)

    try:
        anyio.run(run)
        assert outcome and 0.4 <= float(outcome[0]) < 1.9  # gave up after the wait, not after the holder
        assert eng.pool.checkedout() == 0
        assert request.app.state.connection_slots.value == 1  # the slot count is whole again
    finally:
        eng.dispose()
