"""Run the Alembic migrations programmatically.

The scripts come from ``GISGOV_MIGRATIONS_DIR`` (default: the ones shipped with gisgov, see
:mod:`gisgov.resources`), so migrations run the same from a git checkout and from an installed wheel.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from gisgov import resources
from gisgov.config import get_settings


def alembic_config(url: str, srid: int | None = None) -> Config:
    """The Alembic configuration: the shipped ``alembic.ini`` (logging only, when present), the script
    folder from the settings, and the URL, SRID and app role handed to ``migrations/env.py``."""
    ini = resources.alembic_ini()
    cfg = Config(str(ini)) if ini.is_file() else Config()
    cfg.set_main_option("script_location", str(get_settings().migrations_dir))
    cfg.attributes["url"] = url
    cfg.attributes["srid"] = srid or get_settings().srid
    cfg.attributes["app_role"] = get_settings().app_role
    return cfg


def upgrade(url: str, revision: str = "head", srid: int | None = None) -> None:
    command.upgrade(alembic_config(url, srid), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine, pool

    eng = create_engine(url, poolclass=pool.NullPool)
    with eng.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head() -> str:
    """The newest revision this gisgov knows (the migrations' head)."""
    from alembic.script import ScriptDirectory

    cfg = alembic_config("postgresql+psycopg://")
    found = ScriptDirectory.from_config(cfg).get_current_head()
    if found is None:
        raise RuntimeError(f"no migrations in {cfg.get_main_option('script_location')}")
    return found


def schema_problem(url: str) -> str | None:
    """None when the database at ``url`` is migrated to the head revision; else one line (Chinese and
    English) saying what is wrong and which command fixes it. Raises the driver's OperationalError
    when the database cannot be reached."""
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    script = ScriptDirectory.from_config(alembic_config("postgresql+psycopg://"))
    want = script.get_current_head()
    have = current(url)
    if have == want:
        return None
    if have is None:
        return (
            "数据库尚未初始化 database not migrated (no gisgov schema yet): "
            "run `gisgov db migrate` (or `gisgov demo` for the sample city)"
        )
    try:
        known = script.get_revision(have) is not None
    except CommandError:
        known = False
    if not known:
        return f"数据库结构比本程序新 database schema {have} is newer than this gisgov (head {want}): upgrade gisgov"
    return (
        f"数据库结构需要升级 database needs upgrade (schema {have}, this gisgov needs {want}): run `gisgov db migrate`"
    )
