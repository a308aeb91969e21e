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
