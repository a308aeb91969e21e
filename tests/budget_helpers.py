"""A signed-in TestClient of an app with the request budgets installed (``budgets.install`` is
idempotent: harmless once create_app calls it itself), optionally with extra test-only routes."""

from __future__ import annotations

from contextlib import contextmanager

from auth_helpers import app_engine, bearer_token, ensure_user
from fastapi.testclient import TestClient

from gisgov.api import budgets
from gisgov.api.app import create_app
from gisgov.config import Settings


@contextmanager
def budget_client(settings: Settings, owner_url: str, *, role: str = "admin", routes=None, pool_size: int = 5):
    """``routes(app)`` may add test-only routes before the app starts."""
    eng = app_engine(owner_url, pool_size=pool_size, max_overflow=0)
    user = ensure_user(owner_url, role)
    app = create_app(settings, engine=eng)
    if routes is not None:
        routes(app)
    budgets.install(app)
    try:
        with TestClient(app) as c:
            c.headers["Authorization"] = f"Bearer {bearer_token(c, user)}"
            yield c
    finally:
        eng.dispose()
