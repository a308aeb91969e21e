"""The committed data version: one number (``tile_version.n``, migrations 0017 and 0018) that moves at the commit
of every write to a table drawn in tiles or read by the coverage model. Caches of derived data (rendered tiles,
the coverage service's model and tables) compare it instead of re-reading their inputs."""

from __future__ import annotations

from sqlalchemy import Connection, text

_VERSION = text("SELECT n FROM tile_version")


def data_version(conn: Connection) -> int:
    """The committed data version as this connection's snapshot sees it."""
    return int(conn.execute(_VERSION).scalar_one())
