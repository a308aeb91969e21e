"""Coverage reads run concurrently; fills, computes and edits hold the service alone.

Overlap is measured by timestamps (each read records when it entered and left the slow part), never by
a duration threshold: two reads overlap when one enters before the other leaves."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time

import pytest
from auth_helpers import signed_in_client
from sqlalchemy import create_engine, pool, text

from gisgov.config import Settings
from gisgov.coverage import service as service_mod
from gisgov.coverage.service import CoverageService, SharedLock


def _overlap(spans: list[tuple[float, float]]) -> bool:
    (a0, a1), (b0, b1) = spans
    return a0 < b1 and b0 < a1


def _run_both(fn) -> None:
    errors: list[BaseException] = []

    def go() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


def _span(lock_ctx, spans: list, both_in: threading.Barrier | None) -> None:
    with lock_ctx():
        t0 = time.monotonic()
        if both_in is not None:
            with contextlib.suppress(threading.BrokenBarrierError):
                both_in.wait(2)  # returns as soon as the other one is in too (readers); times out for writers
        else:
            time.sleep(0.05)
        spans.append((t0, time.monotonic()))


def test_shared_holds_overlap_exclusive_ones_do_not():
    lock = SharedLock()
    spans: list = []
    barrier = threading.Barrier(2)
    _run_both(lambda: _span(lock.shared, spans, barrier))
    assert _overlap(spans), spans
    spans.clear()
    _run_both(lambda: _span(lambda: lock, spans, None))
    assert not _overlap(spans), spans


def test_reentry_and_no_upgrade():
    lock = SharedLock()
    with lock, lock.shared(), lock:  # a writer may read and re-enter
        assert lock.holds() and not lock.reading()
    with lock.shared():
        with lock.shared():
            assert lock.reading()
        with pytest.raises(RuntimeError), lock:
            pass
    assert not lock.holds()


def test_a_writer_waits_for_the_reader():
    lock = SharedLock()
    order: list[str] = []
    inside = threading.Event()

    def reader() -> None:
        with lock.shared():
            inside.set()
            time.sleep(0.1)
            order.append("read done")

    t = threading.Thread(target=reader)
    t.start()
    inside.wait(5)
    with lock:
        order.append("write")
    t.join()
    assert order == ["read done", "write"]


# -- two slow summary requests through the app ---------------------------------------------------------------


@pytest.fixture(scope="module")
def city(db_factory):
    from gisgov.sample import generate_city
    from gisgov.sample.load import load_city
    from gisgov.security.pii import Vault

    url = db_factory.create(prefix="gisgov_test_covconc")
    load_city(url, generate_city(seed=7, scale=0.2), vault=Vault(hashlib.sha256(b"coverage conc").digest()))
    eng = create_engine(url, poolclass=pool.NullPool)
    with eng.begin() as conn:
        CoverageService().compute(conn)
        comm = conn.execute(text("SELECT code FROM community ORDER BY code LIMIT 1")).scalar_one()
    eng.dispose()
    return url, comm


def test_the_lifespan_makes_the_service(city):
    url, _ = city
    with signed_in_client(Settings(), url, role="admin") as c:
        assert isinstance(c.app.state.coverage, CoverageService)
    assert not hasattr(service_mod, "_default")
    assert not hasattr(CoverageService, "build_model")


def test_two_slow_reads_overlap(city, monkeypatch):
    url, comm = city
    spans: list[tuple[float, float]] = []
    both_in = threading.Barrier(2)
    real = service_mod.with_shares

    def slow_with_shares(frame):
        t0 = time.monotonic()
        with contextlib.suppress(threading.BrokenBarrierError):
            both_in.wait(20)  # serialised reads would never meet here: the barrier breaks, spans stay apart
        spans.append((t0, time.monotonic()))
        return real(frame)

    with signed_in_client(Settings(), url, role="admin") as c:
        params = {"level": "community", "code": comm}
        assert c.get("/api/coverage/summary", params=params).status_code == 200  # fills the caches
        monkeypatch.setattr(service_mod, "with_shares", slow_with_shares)
        answers: list[int] = []
        _run_both(lambda: answers.append(c.get("/api/coverage/summary", params=params).status_code))
    assert answers == [200, 200]
    assert len(spans) == 2 and _overlap(spans), spans
