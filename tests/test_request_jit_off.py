"""Request transactions run with PostgreSQL's JIT off: row-level security makes the planner's cost estimates
huge, and JIT-compiling ordinary requests cost seconds (the special-group summary: 2.2 s, 1.9 s of it JIT)."""

from __future__ import annotations

from auth_helpers import app_engine
from sqlalchemy import create_engine, pool, text

from gisgov.api import deps


def test_every_kind_of_request_transaction_has_jit_off(db_factory):
    url = db_factory.create(prefix="gisgov_test_jit")
    owner = create_engine(url, poolclass=pool.NullPool)
    with owner.connect() as c:
        assert c.execute(text("SHOW jit")).scalar() == "on"  # the server's default: what requests must not use
    owner.dispose()
    eng = app_engine(url)
    try:
        for kwargs in ({}, {"timeout_ms": 5000}, {"read_only": True}):
            conn = deps._open(eng, "340104001", **kwargs)
            try:
                assert conn.execute(text("SHOW jit")).scalar() == "off", kwargs
                assert conn.execute(text("SELECT current_setting('gisgov.scope')")).scalar() == "340104001"
            finally:
                conn.rollback()
                conn.close()
        with eng.connect() as conn:  # transaction-local: a pooled connection is back to the default
            assert conn.execute(text("SHOW jit")).scalar() == "on"
    finally:
        eng.dispose()
