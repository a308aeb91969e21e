"""Session fixture for the security tests: the full sample city in a database of its own, with an
active grid plan and synthetic grid staff in three communities (two of street S, one of street T),
so that grid scopes and staff rows exist.

    from security_city import gridded_city_url  # noqa: F401  (fixture)
"""

from __future__ import annotations

import pytest
from sample_fixtures import SAMPLE_VAULT
from sqlalchemy import create_engine, pool, text

from gisgov.gridding import service
from gisgov.sample.load import load_city
from gisgov.sample.staff import staff_active_grids


@pytest.fixture(scope="session")
def gridded_city_url(db_factory, sample_city) -> str:
    return build_gridded_city(db_factory, sample_city, "gisgov_test_security")


def build_gridded_city(db_factory, sample_city, prefix: str) -> str:
    """A new database with the sample city and active grid plans + staff in three communities."""
    url = db_factory.create(prefix=prefix)
    load_city(url, sample_city, vault=SAMPLE_VAULT)
    eng = create_engine(url, poolclass=pool.NullPool)
    try:
        with eng.connect() as c:
            streets = c.execute(text("SELECT code FROM street ORDER BY code")).scalars().all()
            assert len(streets) >= 2, "the sample city must have two streets"
            s_comms = (
                c.execute(
                    text("SELECT code FROM community WHERE street_code = :s ORDER BY code LIMIT 2"), {"s": streets[0]}
                )
                .scalars()
                .all()
            )
            t_comm = c.execute(
                text("SELECT code FROM community WHERE street_code = :s ORDER BY code LIMIT 1"), {"s": streets[1]}
            ).scalar_one()
        for code in [*s_comms, t_comm]:
            with eng.begin() as c:
                service.plan_and_activate(c, code, time_limit_s=2.0)
        with eng.begin() as c:
            staff_active_grids(c, SAMPLE_VAULT)
    finally:
        eng.dispose()
    return url
