"""Run the Alembic migrations programmatically."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from gisgov.config import REPO_ROOT, get_settings


def alembic_config(url: str, srid: int | None = None) -> Config:
    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    cfg.attributes["url"] = url
    cfg.attributes["srid"] = srid or get_settings().srid
    cfg.attributes["app_role"] = get_settings().app_role
    return cfg


def upgrade(url: str, revision: str = "head", srid: int | None = None) -> None:
    command.upgrade(alembic_config(url, srid), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    from sqlalchemy import create_engine, pool
    from alembic.runtime.migration import MigrationContext

    eng = create_engine(url, poolclass=pool.NullPool)
    with eng.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
