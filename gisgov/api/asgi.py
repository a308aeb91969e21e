"""ASGI factory for uvicorn worker processes (`gisgov serve --workers N`)::

    uvicorn gisgov.api.asgi:create --factory --workers 2

Each worker builds its own app and connection pool from the ``GISGOV_*`` environment (which
`gisgov serve` sets for them). The command that starts the workers has already brought the
database up, migrated it and given the app role its login (:func:`gisgov.db.approle.app_database_url`);
a worker only derives the app URL, so N workers do not race to ``ALTER ROLE`` at the same moment.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from gisgov.api.app import create_app
from gisgov.config import Settings
from gisgov.db.engine import make_engine


def worker_app_url(settings: Settings) -> str:
    """The URL the web app connects with, without granting anything (the parent process did)."""
    from gisgov.db.approle import app_password, app_url_from_owner
    from gisgov.db.engine import database_url, sqlalchemy_url

    if settings.app_database_url:
        return sqlalchemy_url(settings.app_database_url)
    return app_url_from_owner(database_url(settings), settings.app_role, app_password(settings.home_abs))


def create() -> FastAPI:
    """One worker's app: settings from the environment, its own pool (closed when the worker stops)."""
    s = Settings()
    engine = make_engine(
        worker_app_url(s), pool_size=s.pool_size, max_overflow=s.pool_overflow, pool_timeout=s.pool_timeout_s
    )
    app = create_app(s, engine=engine)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI):
        try:
            async with inner(a) as state:
                yield state
        finally:
            engine.dispose()

    app.router.lifespan_context = lifespan
    return app
