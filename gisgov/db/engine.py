"""Resolve the database URL (user's server or embedded cluster) and build engines."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine

from gisgov.config import Settings, get_settings
from gisgov.db.cluster import EmbeddedCluster


def embedded_cluster(settings: Settings | None = None) -> EmbeddedCluster:
    s = settings or get_settings()
    return EmbeddedCluster(s.home_abs, s.db_name, s.pg_bindir)


def database_url(settings: Settings | None = None, *, start: bool = False, say=None) -> str:
    """URL of the gisgov database. With ``start`` the embedded cluster is brought up first (after a
    crash, once the old server processes are gone; ``say(message)`` reports that wait)."""
    s = settings or get_settings()
    if s.database_url:
        return sqlalchemy_url(s.database_url)
    cluster = embedded_cluster(s)
    if start:
        cluster.up(say=say)
    return cluster.url()


def sqlalchemy_url(url: str) -> str:
    """A libpq-style ``postgresql://`` URL as SQLAlchemy's psycopg 3 URL (others unchanged)."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(url: str, **kw) -> Engine:
    return create_engine(url, pool_pre_ping=True, future=True, **kw)


def psycopg_conninfo(url: str) -> str:
    """A libpq conninfo string for raw psycopg connections (COPY)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)
