"""Database side of a load: read the context, write rows with COPY, inside the caller's transaction.

Every function takes an open SQLAlchemy ``Connection`` whose transaction the caller owns (one
transaction per load: all or nothing). COPY goes through the same psycopg connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

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


def _polys(
    conn: Connection,
    table: str,
    where: str = "",
    params: dict | None = None,
    extra: bool = False,
    group: str = "community_code",
) -> Parents:
    cols = "code, ST_AsBinary(geom)" + (f", id, {group}" if extra else "")
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


# Where a level's existing records (siblings of what is loaded) are read from, and their parent code column
# ("''" for streets: no parent).
SIBLING_SOURCES = {
    "street": ("street", "''"),
    "community": ("community", "street_code"),
    "grid": ("grid_current()", "community_code"),
    "compound": ("compound", "community_code"),
}


def load_context(conn: Connection, level: Level, region) -> Context:
    ctx = Context(srid=srid(conn), region=region)
    if level.name != "road":
        ctx.existing_codes = {r[0] for r in conn.execute(text(f"SELECT code FROM {level.table}"))}
    if level.parent:
        ctx.parents = _polys(conn, LEVELS[level.parent].table)
    if level.name in SIBLING_SOURCES:
        table, group = SIBLING_SOURCES[level.name]
        ctx.siblings = _polys(conn, table, extra=True, group=group)
    if level.name == "building":
        ctx.compounds = _polys(conn, "compound", extra=True)
        ctx.grids = _polys(conn, "grid_current()", extra=True)  # the current set, not drafts or archived plans
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


def _py(v: Any) -> Any:
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


# --- updates (``--update``): replace records whose code is already in the database, keeping history ---

UPDATABLE = ("street", "community", "grid", "compound", "building", "facility")
# Mapped canonical field → written columns it controls (a field the file does not map keeps its value).
FIELD_COLUMNS = {
    "grid_level": ("level",),
    "category": ("category_code",),
    "compound_code": ("compound_id",),
    "grid_code": ("grid_id",),
    "households": ("households", "households_estimated"),
    "households_estimated": ("households_estimated",),
}
# Columns an update always writes (derived from the code, the geometry or the position).
_ALWAYS = ("geom", "pos", "street_code", "community_code", "compound_id", "grid_id")


def _target(level: Level) -> str:
    """The rows an update may replace: for grids the current set (active plans and grids outside plans)."""
    return "grid_current()" if level.name == "grid" else level.table


def update_columns(level: Level, mapped: Iterable[str]) -> list[str]:
    """The columns an update of ``level`` writes, given the canonical fields the file maps."""
    cols = WRITE_COLUMNS[level.name]
    chosen = set(_ALWAYS)
    for f in mapped:
        chosen.update(FIELD_COLUMNS.get(f, (f,)))
    if level.name == "building" and "compound_code" not in mapped:
        chosen.add("compound_id")
    return [c for c in cols if c != "code" and c in chosen]


def _same(old: Any, new: Any) -> bool:
    if old is None or new is None:
        return old is None and new is None
    if isinstance(old, (int, float)) and isinstance(new, (int, float)) and not isinstance(old, bool):
        return float(old) == float(new)
    return bool(old == new)


def update_level(
    conn: Connection,
    level: Level,
    rows: pd.DataFrame,
    srid_: int,
    columns: list[str],
    *,
    actor: Any = None,
    source: str = "",
) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """Replace the records of ``rows`` (codes already in the database) inside the caller's transaction.

    Each record that changes first gets its previous state appended to ``feature_history`` and an audit
    row (action ``import``, detail ``op: update``), all on ``conn``: they commit with the update or not
    at all. Returns (one dict per changed record: code, id, version, history id, changed columns,
    geometry_changed; codes unchanged; codes not found among the records an update may replace)."""
    from gisgov.security import audit

    if not len(rows):
        return [], [], []
    codes = rows["code"].tolist()
    old = {
        r[0]: r
        for r in conn.execute(
            text(
                f"SELECT t.code, t.id, to_jsonb(t) - 'geom' - 'pos', ST_AsBinary(t.geom) "
                f"FROM {_target(level)} t WHERE t.code = ANY(:c)"
            ),
            {"c": codes},
        )
    }
    geo_cols = [c for c in columns if c in ("geom", "pos")]
    plain = [c for c in columns if c not in ("geom", "pos")]
    new_geom = ewkb(rows["geom"], srid_)
    new_pos = ewkb(rows["pos"], srid_) if "pos" in geo_cols else None
    changed: list[dict[str, Any]] = []
    unchanged: list[str] = []
    for i, code in enumerate(codes):
        r = old.get(code)
        if r is None:  # e.g. a grid code held only by a draft or archived plan: handled by the caller
            continue
        _, rid, attrs, wkb = r
        vals = {c: _py(rows[c].iloc[i]) for c in plain}
        diff = [c for c in plain if not _same(attrs.get(c), vals[c])]
        g_old = shapely.from_wkb(bytes(wkb)) if wkb is not None else None
        g_new = rows["geom"].iloc[i]
        geom_changed = (g_old is None) != (g_new is None) or (
            g_old is not None
            and not shapely.equals_exact(shapely.normalize(g_old), shapely.normalize(g_new), tolerance=1e-9)
        )
        if not diff and not geom_changed:
            unchanged.append(code)
            continue
        version = int(
            conn.execute(
                text("SELECT count(*) + 1 FROM feature_history WHERE level = :l AND code = :c AND record_id = :i"),
                {"l": level.name, "c": code, "i": rid},
            ).scalar_one()
        )
        hid = conn.execute(
            text(
                "INSERT INTO feature_history (level, code, record_id, version, attrs, geom, changed_by, source) "
                "SELECT :l, t.code, t.id, :v, to_jsonb(t) - 'geom' - 'pos', t.geom, :who, :src "
                f"FROM {level.table} t WHERE t.id = :i RETURNING id"
            ),
            {"l": level.name, "v": version, "who": _actor_name(actor), "src": source or None, "i": rid},
        ).scalar_one()
        sets = [f'"{c}" = :{c}' for c in plain]
        params: dict[str, Any] = {c: vals[c] for c in plain}
        if "geom" in geo_cols:
            sets.append("geom = ST_GeomFromEWKB(decode(:geom, 'hex'))")
            params["geom"] = new_geom[i]
        if new_pos is not None and new_pos[i] is not None:
            sets.append("pos = ST_GeomFromEWKB(decode(:pos, 'hex'))")
            params["pos"] = new_pos[i]
        params["id"] = rid
        conn.execute(text(f"UPDATE {level.table} SET {', '.join(sets)} WHERE id = :id"), params)
        entry = {
            "code": code,
            "id": int(rid),
            "version": version,
            "history_id": int(hid),
            "changed": diff + (["geom"] if geom_changed else []),
            "geometry_changed": bool(geom_changed),
        }
        audit.record(
            conn,
            "import",
            actor=actor,
            object=f"{level.name}:{code}",
            detail={
                "op": "update",
                "file": source,
                "version": version,
                "history_id": int(hid),
                "changed": entry["changed"],
            },
        )
        changed.append(entry)
    return changed, unchanged, [c for c in codes if c not in old]


def _actor_name(actor: Any) -> str | None:
    if actor is None or isinstance(actor, str):
        return actor
    return getattr(actor, "username", None) or str(actor)


# After an update: children whose position now lies outside the updated parent.
# level → (child level, child table, its point, join of the parent p to the child c).
_CHILDREN: dict[str, list[tuple[str, str, str, str]]] = {
    "street": [("community", "community", "ST_PointOnSurface(c.geom)", "p.code = c.street_code")],
    "community": [
        ("grid", "grid_current()", "ST_PointOnSurface(c.geom)", "p.code = c.community_code"),
        ("compound", "compound", "ST_PointOnSurface(c.geom)", "p.code = c.community_code"),
        ("building", "building", "c.pos", "p.code = c.community_code"),
        ("facility", "facility", "c.geom", "p.code = c.community_code"),
    ],
    "compound": [("building", "building", "c.pos", "p.id = c.compound_id")],
    "grid": [("building", "building", "c.pos", "p.id = c.grid_id")],
}
# Children held by an id (not by their code): --repair may move them to the parent now containing them.
REASSIGNABLE = {("compound", "building"): "compound_id", ("grid", "building"): "grid_id"}


def children_outside(conn: Connection, level: Level, ids: list[int]) -> list[tuple[str, str, str, str]]:
    """(child level, child code, parent code, 'lon,lat') of every child of the records ``ids`` whose
    position lies outside its (updated) parent."""
    out: list[tuple[str, str, str, str]] = []
    if not ids:
        return out
    for child, table, point, join in _CHILDREN.get(level.name, []):
        q = (
            f"SELECT c.code, p.code, ST_X(pt), ST_Y(pt) FROM {level.table} p JOIN {table} c ON {join}, "
            f"LATERAL (SELECT {point} AS pt) x WHERE p.id = ANY(:ids) AND pt IS NOT NULL "
            "AND NOT ST_Intersects(p.geom, pt) ORDER BY p.code, c.code"
        )
        for code, pcode, x, y in conn.execute(text(q), {"ids": list(ids)}):
            out.append((child, code, pcode, f"{x:.6f},{y:.6f}"))
    return out


def reassign_buildings(conn: Connection, column: str, codes: list[str]) -> list[tuple[str, str | None]]:
    """Point buildings ``codes`` at the compound / current grid of their community now containing their
    position (smallest code on a shared edge), or none. Returns (building code, new compound/grid code)."""
    table = "compound" if column == "compound_id" else "grid_current()"
    rows = conn.execute(
        text(
            f"UPDATE building b SET {column} = (SELECT x.id FROM {table} x WHERE x.community_code = b.community_code "
            "AND ST_Intersects(x.geom, b.pos) ORDER BY x.code LIMIT 1) WHERE b.code = ANY(:c) "
            f"RETURNING b.code, (SELECT x.code FROM {table} x WHERE x.id = b.{column})"
        ),
        {"c": list(codes)},
    ).all()
    return [(r[0], r[1]) for r in rows]
