"""Request dependencies. ``db`` is THE place where a request gets its database work:
one connection, one transaction, committed on success and rolled back on error. Per-request
scoping (row-level security: ``SET LOCAL`` of the user's grid scope) is added here, once."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request
from sqlalchemy import Connection


def db(request: Request) -> Iterator[Connection]:
    engine = request.app.state.engine
    with engine.connect() as conn:
        with conn.begin():
            yield conn
