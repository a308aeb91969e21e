"""Database side of a load: read the context, write rows with COPY, inside the caller's transaction.

Every function takes an open SQLAlchemy ``Connection`` whose transaction the caller owns (one
transaction per load: all or nothing). COPY goes through the same psycopg connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
import shapely
from sqlalchemy import Connection, text

from gisgov.ingest.levels import LEVELS, Level
from gisgov.ingest.network import Network
from gisgov.ingest.validate import Context, Parents

Progress = Callable[[str, int, int], None]


def raw(conn: Connection):
    """The psycopg connection under a SQLAlchemy connection (same transaction)."""
    return conn.connection.driver_connection


def lock(conn: Connection, *tables: str) -> None:
    """Serialise concurrent loads of the same tables (readers are not blocked)."""
    for t in tables:
        conn.exec_driver_sql(f'LOCK TABLE "{t}" IN SHARE ROW EXCLUSIVE MODE')


def srid(conn: Connection) -> int:
    v = conn.execute(text("SELECT value FROM gisgov_meta WHERE key = 'srid'")).scalar()
    return int(v) if v is not None else 4490


def _polys(conn: Connection, table: str, where: str = "", params: dict | None = None, extra: bool = False) -> Parents:
    cols = "code, ST_AsBinary(geom)" + (", id, community_code" if extra else "")
    rows = conn.execute(text(f"SELECT {cols} FROM {table} {where} ORDER BY code"), params or {}).all()
    if not rows:
        return (
            Parents.empty()
            if not extra
            else Parents(np.array([], object), np.array([], object), np.array([], np.int64), np.array([], object))
        )
    codes = np.array([r[0] for r in rows], dtype=object)
    geoms = shapely.from_wkb(np.array([bytes(r[1]) for r in rows], dtype=object))
    if extra:
        return Parents(
            codes, geoms, np.array([r[2] for r in rows], dtype=np.int64), np.array([r[3] for r in rows], dtype=object)
        )
    return Parents(codes, geoms)


def categories(conn: Connection) -> dict[str, str]:
    out = {}
    for code, zh, en in conn.execute(text("SELECT code, name_zh, name_en FROM facility_category")):
        for k in (code, zh, en):
            out[k.lower()] = code
    return out


def load_context(conn: Connection, level: Level, region) -> Context:
    ctx = Context(srid=srid(conn), region=region)
    if level.name != "road":
        ctx.existing_codes = {r[0] for r in conn.execute(text(f"SELECT code FROM {level.table}"))}
    if level.parent:
        ctx.parents = _polys(conn, LEVELS[level.parent].table)
    if level.name == "building":
        ctx.compounds = _polys(conn, "compound", extra=True)
        ctx.grids = _polys(conn, "grid", extra=True)
    if level.name == "facility":
        ctx.categories = categories(conn)
    return ctx


def ewkb(geoms: Iterable, srid_: int) -> list[str | None]:
    arr = np.asarray(list(geoms), dtype=object)
    out: list[str | None] = [None] * len(arr)
    ok = ~shapely.is_missing(arr)
    if ok.any():
        withsrid = shapely.set_srid(arr[ok], srid_)
        hexes = shapely.to_wkb(withsrid, hex=True, include_srid=True)
        for i, h in zip(np.flatnonzero(ok), hexes, strict=False):
            out[i] = h
    return out


def _py(v):
    if v is None or v is pd.NA:
        return None
    if isinstance(v, float) and np.isnan(v):
        return None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def copy_rows(
    conn: Connection,
    table: str,
    columns: list[str],
    rows: Iterable[tuple],
    progress: Progress | None = None,
    total: int = 0,
    every: int = 20000,
) -> int:
    cols = ", ".join(f'"{c}"' for c in columns)
    n = 0
    with raw(conn).cursor() as cur, cur.copy(f'COPY "{table}" ({cols}) FROM STDIN') as cp:
        for r in rows:
            cp.write_row(r)
            n += 1
            if progress and n % every == 0:
                progress("write", n, total)
    if progress:
        progress("write", n, total)
    return n


WRITE_COLUMNS = {
    "street": ["code", "name", "geom"],
    "community": ["code", "street_code", "name", "class", "kind", "rule_set", "geom"],
    "grid": ["code", "community_code", "name", "level", "geom"],
    "compound": ["code", "community_code", "name", "year_built", "property_mode", "has_party_org", "geom"],
    "building": [
        "code",
        "community_code",
        "compound_id",
        "grid_id",
        "name",
        "address",
        "floors",
        "units",
        "households",
        "households_estimated",
        "year_built",
        "geom",
        "pos",
    ],
    "facility": ["code", "name", "category_code", "kind", "community_code", "address", "source", "geom"],
}


def write_level(
    conn: Connection, level: Level, rows: pd.DataFrame, srid_: int, progress: Progress | None = None
) -> int:
    cols = WRITE_COLUMNS[level.name]
    data = {c: rows[c].tolist() for c in cols if c not in ("geom", "pos")}
    data["geom"] = ewkb(rows["geom"], srid_)
    if "pos" in cols:
        data["pos"] = ewkb(rows["pos"], srid_)
    it = (tuple(_py(data[c][i]) for c in cols) for i in range(len(rows)))
    return copy_rows(conn, level.table, cols, it, progress, len(rows))


def next_node_id(conn: Connection) -> int:
    conn.exec_driver_sql("LOCK TABLE road_node IN EXCLUSIVE MODE")
    return int(conn.execute(text("SELECT coalesce(max(id), 0) + 1 FROM road_node")).scalar())


def write_network(
    conn: Connection, net: Network, edge_attrs: pd.DataFrame, srid_: int, progress: Progress | None = None
) -> tuple[int, int]:
    """Insert nodes (ids continue after the largest) and edges; ``edge_attrs`` row per edge."""
    base = next_node_id(conn)
    pts = shapely.points(net.node_xy) if len(net.node_xy) else np.array([], dtype=object)
    node_hex = ewkb(pts, srid_)
    n_nodes = copy_rows(
        conn, "road_node", ["id", "geom"], ((base + i, h) for i, h in enumerate(node_hex)), progress, len(node_hex)
    )
    edge_hex = ewkb(net.geoms, srid_)
    cols = ["source", "target", "class", "name", "foot", "oneway_foot", "length_m", "geom"]
    a = {c: edge_attrs[c].tolist() for c in ("class", "name", "foot", "oneway_foot")}
    rows = (
        (
            base + int(net.source[i]),
            base + int(net.target[i]),
            a["class"][i],
            _py(a["name"][i]),
            bool(a["foot"][i]),
            bool(a["oneway_foot"][i]),
            float(net.length_m[i]),
            edge_hex[i],
        )
        for i in range(len(edge_hex))
    )
    n_edges = copy_rows(conn, "road_edge", cols, rows, progress, len(edge_hex))
    return n_nodes, n_edges
