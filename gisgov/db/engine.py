"""Resolve the database URL (user's server or embedded cluster) and build engines."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Engine, create_engine

from gisgov.config import Settings, get_settings
from gisgov.db.cluster import EmbeddedCluster


def embedded_cluster(settings: Settings | None = None) -> EmbeddedCluster:
    s = settings or get_settings()
    return EmbeddedCluster(s.home_abs, s.db_name, s.pg_bindir)


def database_url(settings: Settings | None = None, *, start: bool = False) -> str:
    """URL of the gisgov database. With ``start`` the embedded cluster is brought up first."""
    s = settings or get_settings()
    if s.database_url:
        url = s.database_url
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        return url
    cluster = embedded_cluster(s)
    if start:
        cluster.up()
    return cluster.url()


def make_engine(url: str, **kw) -> Engine:
    return create_engine(url, pool_pre_ping=True, future=True, **kw)


@lru_cache
def get_engine() -> Engine:
    return make_engine(database_url())


def psycopg_conninfo(url: str) -> str:
    """A libpq conninfo string for raw psycopg connections (COPY)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)
