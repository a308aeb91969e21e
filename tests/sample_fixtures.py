"""Session fixtures with the full synthetic sample city (示例城, seed 20241123, scale 1.0).

``sample_city``     the generated :class:`gisgov.sample.SampleCity` (clear synthetic IDs included)
``sample_city_url`` a fresh migrated database with that city loaded (IDs protected with
                    ``SAMPLE_VAULT``), created once per test session; treat it as read-only
                    (wrap writes in a rolled-back transaction).
"""

from __future__ import annotations

import hashlib

import pytest

from gisgov.sample import generate_city
from gisgov.sample.load import load_city
from gisgov.security.pii import Vault

SAMPLE_SEED = 20241123
SAMPLE_VAULT = Vault(hashlib.sha256(b"gisgov sample city test key").digest())


@pytest.fixture(scope="session")
def sample_city():
    return generate_city(seed=SAMPLE_SEED, scale=1.0)


@pytest.fixture(scope="session")
def sample_city_url(db_factory, sample_city) -> str:
    url = db_factory.create(prefix="gisgov_test_sample")
    load_city(url, sample_city, vault=SAMPLE_VAULT)
    return url


def small_city_db(db_factory, prefix: str, *, compute: bool = True, scale: float = 0.4) -> str:
    """A fresh database of its own with a small sample city (two streets at scale 0.4) and, with ``compute``,
    coverage computed and stored: for modules that write into their city."""
    from sqlalchemy import create_engine, pool

    from gisgov.coverage.service import CoverageService

    url = db_factory.create(prefix=prefix)
    load_city(url, generate_city(seed=SAMPLE_SEED, scale=scale), vault=SAMPLE_VAULT)
    if compute:
        eng = create_engine(url, poolclass=pool.NullPool)
        with eng.begin() as conn:
            CoverageService().compute(conn)
        eng.dispose()
    return url
