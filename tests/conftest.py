"""Fixtures on a real PostGIS: the test suite's own databases, created and dropped here.

The server is ``GISGOV_DATABASE_URL``'s when set (its user must be allowed to CREATE DATABASE),
otherwise an embedded cluster in ``GISGOV_TEST_HOME`` (default ``.gisgov-test`` in the checkout),
separate from the demo's ``.gisgov``. Every database made here is named ``gisgov_test_*`` and dropped
at the end of the session.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import make_url

from gisgov.config import REPO_ROOT
from gisgov.db import migrate
from gisgov.db.cluster import EmbeddedCluster

TEST_HOME = Path(os.environ.get("GISGOV_TEST_HOME", REPO_ROOT / ".gisgov-test"))


@pytest.fixture(scope="session")
def server_url() -> str:
    """SQLAlchemy URL of the server's maintenance database ``postgres``."""
    ext = os.environ.get("GISGOV_DATABASE_URL")
    if ext:
        url = make_url(ext.replace("postgresql://", "postgresql+psycopg://", 1))
        return url.set(database="postgres").render_as_string(hide_password=False)
    cluster = EmbeddedCluster(TEST_HOME, db_name="postgres")
    cluster.init()
    cluster.start()
    return cluster.url("postgres")


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


class DatabaseFactory:
    """Creates fresh databases (with PostGIS) on the test server and drops them at the end."""

    def __init__(self, server_url: str):
        self.server_url = server_url
        self.created: list[str] = []

    def create(self, *, migrated: bool = True, prefix: str = "gisgov_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(_libpq(self.server_url), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'")
        self.created.append(name)
        url = make_url(self.server_url).set(database=name).render_as_string(hide_password=False)
        with psycopg.connect(_libpq(url), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        if migrated:
            migrate.upgrade(url)
        return url

    def drop_all(self) -> None:
        with psycopg.connect(_libpq(self.server_url), autocommit=True) as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def db_factory(server_url):
    f = DatabaseFactory(server_url)
    yield f
    f.drop_all()


@pytest.fixture(scope="session")
def db_url(db_factory) -> str:
    """A migrated, empty gisgov database shared by the session (tests roll back their changes)."""
    return db_factory.create()


@pytest.fixture(scope="session")
def engine(db_url):
    eng = create_engine(db_url, poolclass=pool.NullPool)
    yield eng
    eng.dispose()


@pytest.fixture
def conn(engine):
    """A connection inside a transaction that is rolled back after the test."""
    with engine.connect() as c:
        tx = c.begin()
        try:
            yield c
        finally:
            tx.rollback()


# Scanner over every response body of the test run (issue 8): see tests/pii_response_hook.py.
from pii_response_hook import (  # noqa: E402, F401
    _pii_scanner,
    _pii_scanner_installed,
    pytest_runtest_makereport,
)
from sample_fixtures import sample_city, sample_city_url  # noqa: E402, F401


@pytest.fixture(autouse=True)
def _fresh_settings_after_test():
    """A test that set GISGOV_* variables (monkeypatch) must not leave its cached settings behind."""
    yield
    from gisgov.config import get_settings

    get_settings.cache_clear()
