"""PostGIS I/O of the coverage module (the only place here that runs SQL).

Reads the inputs into a :class:`~gisgov.coverage.model.CityData` and writes snaps, distances,
budgets, figures and run records. Everything goes through the caller's SQLAlchemy connection (one
transaction); bulk writes use COPY on that same connection.
"""

from __future__ import annotations

import json
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from sqlalchemy import Connection, text

from gisgov.coverage.catalog import Catalog
from gisgov.coverage.figures import Figures
from gisgov.coverage.model import CityData, CoverageModel, DistanceTable
from gisgov.crs import CGCS2000
from gisgov.db.copy import binary_record, binary_rows, copy_binary, copy_frame, read_binary, row_dtype
from gisgov.network import flag_names

SRID_SQL = "SELECT (value #>> '{}')::int FROM gisgov_meta WHERE key = 'srid'"
_CHUNK = 50_000


def storage_srid(conn: Connection) -> int:
    v = conn.execute(text(SRID_SQL)).scalar()
    return int(v) if v else CGCS2000


def _frame(conn: Connection, sql: str, params: dict | None = None) -> pd.DataFrame:
    """A query's rows as a DataFrame, built from the driver's plain tuples (not SQLAlchemy ``Row`` objects,
    which pandas probes one by one)."""
    res = conn.execute(text(sql), params or {})
    cols = list(res.keys())
    cur = getattr(res, "cursor", None)
    rows = cur.fetchall() if cur is not None else [tuple(r) for r in res.fetchall()]
    res.close()
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    return pd.DataFrame.from_records(rows, columns=cols, coerce_float=False)


def _wkb(values) -> np.ndarray:
    """Vectorised WKB decoding (None stays None)."""
    arr = np.asarray(values, dtype=object)
    if len(arr) == 0:
        return np.array([], dtype=object)
    return shapely.from_wkb(arr)


def _gdf(df: pd.DataFrame, srid: int, wkb_col: str = "wkb") -> gpd.GeoDataFrame:
    geoms = _wkb(df[wkb_col].to_numpy()) if len(df) else np.array([], dtype=object)
    return gpd.GeoDataFrame(df.drop(columns=[wkb_col]), geometry=gpd.GeoSeries(geoms, crs=srid), crs=srid)


def _points(df: pd.DataFrame, srid: int) -> gpd.GeoDataFrame:
    geoms = (
        shapely.points(df["lon"].to_numpy(float), df["lat"].to_numpy(float)) if len(df) else np.array([], dtype=object)
    )
    return gpd.GeoDataFrame(df.drop(columns=["lon", "lat"]), geometry=gpd.GeoSeries(geoms, crs=srid), crs=srid)


# -- inputs --------------------------------------------------------------------------------------------

BUILDINGS_SQL = """
SELECT b.id, b.code, c.street_code AS street, b.community_code AS community, g.code AS grid,
       cp.code AS compound, coalesce(b.compound_id, -1) AS compound_id, c.rule_set,
       coalesce(nullif(hh.n, 0), b.households, 0)::double precision AS households,
       coalesce(r.n, 0) AS residents, ST_X(b.pos) AS lon, ST_Y(b.pos) AS lat
FROM building b
JOIN community c ON c.code = b.community_code
LEFT JOIN grid g ON g.id = b.grid_id
LEFT JOIN compound cp ON cp.id = b.compound_id
LEFT JOIN (SELECT building_code, count(*) AS n FROM household GROUP BY 1) hh ON hh.building_code = b.code
LEFT JOIN (SELECT h.building_code, count(*) AS n FROM resident r JOIN household h ON h.id = r.household_id
           GROUP BY 1) r ON r.building_code = b.code
ORDER BY b.id
"""

GROUPS_SQL = """
SELECT b.id AS building_id, rg.group_code, count(*) AS residents
FROM resident_group rg JOIN resident r ON r.id = rg.resident_id
JOIN household h ON h.id = r.household_id JOIN building b ON b.code = h.building_code
GROUP BY 1, 2
"""

FACILITIES_SQL = """
SELECT id, code, name, category_code, kind, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM facility ORDER BY id
"""


def load_facilities(conn: Connection, srid: int | None = None) -> gpd.GeoDataFrame:
    return _points(_frame(conn, FACILITIES_SQL), srid or storage_srid(conn))


def load_city(conn: Connection, *, footprints: bool = True) -> CityData:
    """Everything coverage needs from PostGIS (lon/lat, storage SRID)."""
    srid = storage_srid(conn)
    b = _points(_frame(conn, BUILDINGS_SQL), srid)
    fp = None
    if footprints:
        f = _frame(conn, "SELECT id, ST_AsBinary(geom) AS wkb FROM building ORDER BY id")
        fp = gpd.GeoSeries(_wkb(f["wkb"].to_numpy()), crs=srid)
    edges = _gdf(
        _frame(
            conn,
            "SELECT id, source, target, length_m, foot, oneway_foot, class, "
            "ST_AsBinary(geom) AS wkb FROM road_edge ORDER BY id",
        ),
        srid,
    )
    nodes = _gdf(_frame(conn, "SELECT id, ST_AsBinary(geom) AS wkb FROM road_node ORDER BY id"), srid)
    gates = _points(
        _frame(
            conn, "SELECT id, compound_id, node_id, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM compound_gate ORDER BY id"
        ),
        srid,
    )
    compounds = _gdf(_frame(conn, "SELECT id, code, ST_AsBinary(geom) AS wkb FROM compound ORDER BY id"), srid)
    barriers = _gdf(
        _frame(
            conn,
            "SELECT id, kind, ST_AsBinary(geom) AS wkb FROM barrier WHERE kind IN ('river', 'water', 'rail', 'wall', 'other')",
        ),
        srid,
    )
    groups = _frame(conn, GROUPS_SQL)
    return CityData(
        buildings=b,
        facilities=load_facilities(conn, srid),
        edges=edges if len(edges) else None,
        nodes=nodes,
        gates=gates,
        compounds=compounds,
        barriers=barriers,
        groups=groups,
        footprints=fp,
    )


# sums of coordinates and lengths in numeric: exact, so the same whatever order (parallel) workers add them in
CHECKSUM_SQL = """
SELECT
  (SELECT concat_ws(':', count(*), sum(id), sum(source), sum(target), round(sum(length_m::numeric), 3),
                    sum(foot::int), sum(oneway_foot::int)) FROM road_edge) AS edges,
  (SELECT concat_ws(':', count(*), sum(id), round(sum(ST_X(pos)::numeric), 6), round(sum(ST_Y(pos)::numeric), 6),
                    sum(coalesce(compound_id, 0)), sum(coalesce(households, 0))) FROM building) AS buildings,
  (SELECT concat_ws(':', count(*), sum(id), sum(compound_id), round(sum(ST_X(geom)::numeric), 6)) FROM compound_gate) AS gates,
  (SELECT concat_ws(':', count(*), sum(id)) FROM barrier) AS barriers,
  (SELECT md5(coalesce(string_agg(concat_ws(',', id, category_code, kind, ST_AsText(geom)), ';' ORDER BY id), ''))
     FROM facility) AS facilities,
  (SELECT concat_ws(':', count(*), sum(id)) FROM household) AS households,
  (SELECT concat_ws(':', count(*), sum(id)) FROM resident) AS residents,
  (SELECT count(*) FROM resident_group) AS groups
"""


def input_checksums(conn: Connection) -> dict[str, str]:
    """Cheap fingerprints of the inputs: the in-memory model is rebuilt when one changes."""
    row = conn.execute(text(CHECKSUM_SQL)).mappings().one()
    return {k: str(v) for k, v in row.items()}


def scope_setting(conn: Connection) -> tuple[str | None, bool]:
    """The transaction's ``gisgov.scope`` (None if never set) and whether the role bypasses row-level security."""
    row = conn.execute(
        text(
            "SELECT current_setting('gisgov.scope', true), "
            "(SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)"
        )
    ).one()
    return row[0], bool(row[1])


def area_geometry(conn: Connection, code: str):
    """Outline of a street (9 digits) or community (12) in the storage SRID (shapely), None if unknown."""
    table = {9: "street", 12: "community"}.get(len(code))
    if table is None:
        return None
    wkb = conn.execute(text(f"SELECT ST_AsBinary(geom) FROM {table} WHERE code = :c"), {"c": code}).scalar()
    return None if wkb is None else shapely.from_wkb(bytes(wkb))


def point_in_area(conn: Connection, code: str, lon: float, lat: float, srid: int) -> bool:
    """Is a lon/lat point inside a street's or community's outline?"""
    table = {9: "street", 12: "community"}.get(len(code))
    if table is None:
        return False
    return bool(
        conn.execute(
            text(f"SELECT ST_Intersects(geom, ST_SetSRID(ST_MakePoint(:x, :y), :s)) FROM {table} WHERE code = :c"),
            {"c": code, "x": lon, "y": lat, "s": srid},
        ).scalar()
    )


def facility_in_area(conn: Connection, code: str, facility_id: int) -> bool:
    """Does a facility lie in a street's or community's outline?"""
    table = {9: "street", 12: "community"}.get(len(code))
    if table is None:
        return False
    return bool(
        conn.execute(
            text(
                f"SELECT EXISTS (SELECT 1 FROM facility f JOIN {table} a ON ST_Intersects(a.geom, f.geom) "
                "WHERE f.id = :f AND a.code = :c)"
            ),
            {"c": code, "f": facility_id},
        ).scalar()
    )


# -- outputs -------------------------------------------------------------------------------------------


def _copy(conn: Connection, table: str, df: pd.DataFrame) -> None:
    copy_frame(conn.connection.dbapi_connection.cursor(), table, df, chunk=_CHUNK)


def _nullable(values, mask, dtype: str = "Int64") -> pd.Series:
    """A nullable column: ``values`` where ``mask``, NULL elsewhere."""
    v = np.asarray(values)
    v = np.where(mask, v, 0)
    return pd.Series(v).astype(dtype).where(pd.Series(np.asarray(mask, dtype=bool)))


def _pg_array(names: list[str]) -> str:
    return "{" + ",".join(names) + "}"


def start_run(
    conn: Connection, catalog: Catalog, method: str, categories: list[str], checksums: dict, stats: dict | None = None
) -> int:
    return int(
        conn.execute(
            text(
                "INSERT INTO coverage_run (method, catalog_checksum, inputs_checksum, categories, stats) "
                "VALUES (:m, :c, CAST(:i AS jsonb), :cats, CAST(:s AS jsonb)) RETURNING id"
            ),
            {
                "m": method,
                "c": catalog.checksum,
                "i": json.dumps(checksums),
                "cats": categories,
                "s": json.dumps(stats or {}),
            },
        ).scalar()
    )


def finish_run(conn: Connection, run_id: int, stats: dict) -> None:
    conn.execute(
        text("UPDATE coverage_run SET finished_at = now(), stats = stats || CAST(:s AS jsonb) WHERE id = :id"),
        {"s": json.dumps(stats, default=float), "id": run_id},
    )


def latest_run(conn: Connection) -> dict | None:
    row = (
        conn.execute(text("SELECT * FROM coverage_run WHERE finished_at IS NOT NULL ORDER BY id DESC LIMIT 1"))
        .mappings()
        .first()
    )
    return dict(row) if row else None


def write_budgets(conn: Connection, catalog: Catalog) -> None:
    conn.execute(text("DELETE FROM coverage_budget"))
    b = catalog.budgets()
    conn.execute(
        text(
            "INSERT INTO coverage_budget (profile, circle, minutes, distance_m, speed_mps) "
            "VALUES (:profile, :circle, :minutes, :distance_m, :speed_mps)"
        ),
        [
            dict(r._asdict())
            for r in b[["profile", "circle", "minutes", "distance_m", "speed_mps"]]
            .astype(object)
            .where(b[["profile", "circle", "minutes", "distance_m", "speed_mps"]].notna(), None)
            .itertuples(index=False)
        ],
    )


_SNAP_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS _snap_stage (id bigint, edge_id bigint, offset_m double precision, "
    "access_m double precision, via bigint, flags integer, lon double precision, lat double precision) "
    "ON COMMIT DELETE ROWS"
)


def _write_snap_rows(
    conn: Connection, model: CoverageModel, table: str, key: str, cols: dict[str, Any], srid: int
) -> None:
    """Snaps through a fixed-width binary COPY into a staging table, then one INSERT … SELECT (geometry and
    flag names made in SQL: no Python object per row)."""
    cur = _cursor(conn)
    cur.execute(_SNAP_STAGE)
    cur.execute("DELETE FROM _snap_stage")
    x, y = np.asarray(cols["x"], dtype=np.float64), np.asarray(cols["y"], dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    lon = np.full(len(x), np.nan)
    lat = np.full(len(x), np.nan)
    if ok.any():
        lon[ok], lat[ok] = model.to_lonlat(x[ok], y[ok], srid)
    flags = np.asarray(cols["flags"], dtype=np.int64).astype(np.int32)
    body = binary_rows(
        [
            ("int8", np.asarray(cols["id"], dtype=np.int64)),
            ("int8", np.asarray(cols["edge_id"], dtype=np.int64)),
            ("float8", np.round(np.asarray(cols["offset"], dtype=np.float64), 3)),
            ("float8", np.round(np.asarray(cols["leg"], dtype=np.float64), 3)),
            ("int8", np.asarray(cols.get("via", np.full(len(x), -1)), dtype=np.int64)),
            ("int4", flags),
            ("float8", lon),
            ("float8", lat),
        ]
    )
    copy_binary(cur, "_snap_stage", ["id", "edge_id", "offset_m", "access_m", "via", "flags", "lon", "lat"], body)
    bits = sorted({int(f) for f in np.unique(flags)})
    names = [_pg_array(flag_names(b)) for b in bits]
    via_col, via_val = (", via_gate_id", ", nullif(s.via, -1)") if "via" in cols else ("", "")
    cur.execute(
        f"INSERT INTO {table} ({key}, edge_id, offset_m, access_m{via_col}, flags, geom) "
        "SELECT s.id, nullif(s.edge_id, -1), nullif(s.offset_m, 'NaN'), nullif(s.access_m, 'NaN')"
        f"{via_val}, f.names::text[], "
        "CASE WHEN s.lon = 'NaN' THEN NULL ELSE ST_SetSRID(ST_MakePoint(s.lon, s.lat), %s) END "
        "FROM _snap_stage s JOIN unnest(%s::int[], %s::text[]) AS f(bits, names) ON f.bits = s.flags",
        (int(srid), bits, names),
    )


def write_snaps(conn: Connection, model: CoverageModel, srid: int) -> None:
    conn.execute(text("DELETE FROM building_snap"))
    conn.execute(text("DELETE FROM facility_snap"))
    bs, g = model.bsnap, model.graph
    edge_id = np.where(bs.edge >= 0, g.edge_ids[np.maximum(bs.edge, 0)], -1) if g is not None else np.full(len(bs), -1)
    via = np.full(len(bs), -1, dtype=np.int64)
    acc = model.access
    if (acc.via >= 0).any():
        # the gate each gated building uses for its nearest … gate (shortest leg)
        rows = np.flatnonzero(acc.via >= 0)
        o = np.lexsort((acc.leg[rows], acc.owner[rows]))
        r = rows[o]
        first = np.ones(len(r), dtype=bool)
        first[1:] = acc.owner[r][1:] != acc.owner[r][:-1]
        via[acc.owner[r][first]] = acc.via[r][first]
    _write_snap_rows(
        conn,
        model,
        "building_snap",
        "building_id",
        dict(
            id=model.buildings["id"].to_numpy(),
            edge_id=edge_id,
            offset=bs.offset,
            leg=bs.leg,
            via=via,
            flags=bs.flags,
            x=bs.x,
            y=bs.y,
        ),
        srid,
    )
    fs = model.fsnap
    if len(fs):
        fe = np.where(fs.edge >= 0, g.edge_ids[np.maximum(fs.edge, 0)], -1) if g is not None else np.full(len(fs), -1)
        _write_snap_rows(
            conn,
            model,
            "facility_snap",
            "facility_id",
            dict(
                id=model.facilities["id"].to_numpy(),
                edge_id=fe,
                offset=fs.offset,
                leg=fs.leg,
                flags=fs.flags,
                x=fs.x,
                y=fs.y,
            ),
            srid,
        )


# Distances are stored one row per building (building_access_packed: real[] / integer[] by slot, the slots in
# coverage_access_slot); ``building_access`` is a view with the old columns. 'Infinity' = no facility within
# reach, 'NaN' = not computed for that building, facility -1 = none.
_NOT_COMPUTED = np.float32(np.nan)


def _cursor(conn: Connection) -> Any:
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    return dbapi.cursor()


def access_slots(conn: Connection) -> list[str]:
    """The categories stored in building_access_packed, in slot order."""
    return [r[0] for r in conn.execute(text("SELECT category_code FROM coverage_access_slot ORDER BY slot"))]


def _read_packed(conn: Connection, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(building ids, distances (n, k) float32, facility ids (n, k) int32, rows of another width)."""
    n_all = int(conn.execute(text("SELECT count(*) FROM building_access_packed")).scalar() or 0)
    if k == 0 or n_all == 0:
        return np.zeros(0, np.int64), np.zeros((0, k), np.float32), np.zeros((0, k), np.int32), n_all
    dtype = row_dtype([("int8", 0), ("float4", k), ("int4", k)])
    rec = read_binary(
        _cursor(conn),
        "SELECT building_id, distance_m, facility_id FROM building_access_packed "
        f"WHERE cardinality(distance_m) = {int(k)} AND cardinality(facility_id) = {int(k)}",
        dtype,
    )
    ids = rec["v0"].astype(np.int64)
    dist = rec["e1"]["v"].astype(np.float32)
    fac = rec["e2"]["v"].astype(np.int32)
    return ids, dist, fac, n_all - len(rec)


def _write_packed(conn: Connection, ids: np.ndarray, dist: np.ndarray, fac: np.ndarray, *, update: bool) -> None:
    cur = _cursor(conn)
    names = ["building_id", "distance_m", "facility_id"]
    step = 200_000
    parts = [
        binary_rows([("int8", ids[s : s + step]), ("float4", dist[s : s + step]), ("int4", fac[s : s + step])])
        for s in range(0, len(ids), step)
    ]
    if not update:
        copy_binary(cur, "building_access_packed", names, parts)
        return
    cur.execute("CREATE TEMP TABLE IF NOT EXISTS _access_update (LIKE building_access_packed) ON COMMIT DELETE ROWS")
    cur.execute("DELETE FROM _access_update")
    copy_binary(cur, "_access_update", names, parts)
    cur.execute(
        "UPDATE building_access_packed p SET distance_m = u.distance_m, facility_id = u.facility_id "
        "FROM _access_update u WHERE p.building_id = u.building_id"
    )


def _table_columns(
    model: CoverageModel, table: DistanceTable, c: str, bidx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    j = table.col(c)
    d = table.dist[bidx, j].astype(np.float64)
    d = np.where(np.isfinite(d), np.round(d, 2), np.inf).astype(np.float32)
    f = table.fac[bidx, j].astype(np.int64)
    fids = model.facilities["id"].to_numpy().astype(np.int64)
    fid = np.where(f >= 0, fids[np.maximum(f, 0)] if len(fids) else -1, -1)
    if len(fid) and fid.max(initial=0) >= 2**31:
        raise ValueError("facility ids beyond 2**31 cannot be stored in building_access_packed")
    return d, fid.astype(np.int32)


def write_access(
    conn: Connection,
    model: CoverageModel,
    table: DistanceTable,
    run_id: int,
    categories: list[str] | None = None,
    buildings: np.ndarray | None = None,
) -> int:
    """Store the distances of ``categories`` (default: all in the table); returns the building × category
    values written (what the old one-row-per-pair table would have held).

    ``buildings`` (indices) limits the rewrite to those buildings (what-if updates). Categories already
    stored and not named keep their values; a write that names every stored category replaces the rows,
    otherwise only the buildings whose values changed are updated."""
    cats = list(categories or table.categories)
    bidx = np.arange(len(model.buildings)) if buildings is None else np.asarray(buildings, dtype=np.int64)
    ids = model.buildings["id"].to_numpy().astype(np.int64)
    nb = len(ids)
    stored = access_slots(conn)
    if buildings is None and set(stored) <= set(cats):
        slots = cats
        dist = np.empty((nb, len(slots)), dtype=np.float32)
        fac = np.empty((nb, len(slots)), dtype=np.int32)
        for j, c in enumerate(slots):
            dist[:, j], fac[:, j] = _table_columns(model, table, c, bidx)
        conn.execute(text("DELETE FROM building_access_packed"))
        conn.execute(text("DELETE FROM coverage_access_slot"))
        _write_packed(conn, ids, dist, fac, update=False)
        changed_rows = nb
    else:
        slots = stored + [c for c in cats if c not in stored]
        sids, sdist, sfac, other = _read_packed(conn, len(stored))
        pos = pd.Series(np.arange(nb), index=ids).reindex(sids).to_numpy()
        keep = ~np.isnan(pos)
        dist = np.full((nb, len(slots)), _NOT_COMPUTED, dtype=np.float32)
        fac = np.full((nb, len(slots)), -1, dtype=np.int32)
        p = pos[keep].astype(np.int64)
        dist[p, : len(stored)] = sdist[keep]
        fac[p, : len(stored)] = sfac[keep]
        before_d, before_f = dist.copy(), fac.copy()
        for c in cats:
            j = slots.index(c)
            dist[bidx, j], fac[bidx, j] = _table_columns(model, table, c, bidx)
        complete = other == 0 and len(slots) == len(stored) and keep.all() and len(sids) == nb
        if complete:
            same_d = (dist == before_d) | (np.isnan(dist) & np.isnan(before_d))
            rows = np.flatnonzero(~(same_d.all(axis=1) & (fac == before_f).all(axis=1)))
            _write_packed(conn, ids[rows], dist[rows], fac[rows], update=True)
            changed_rows = len(rows)
        else:
            conn.execute(text("DELETE FROM building_access_packed"))
            _write_packed(conn, ids, dist, fac, update=False)
            changed_rows = nb
        conn.execute(text("DELETE FROM coverage_access_slot WHERE category_code = ANY(:c)"), {"c": cats})
    cur = _cursor(conn)
    for j, c in enumerate(slots):
        if c in cats:
            cur.execute(
                "INSERT INTO coverage_access_slot (slot, category_code, method, run_id) VALUES (%s, %s, %s, %s)",
                (j + 1, c, table.method, run_id),
            )
    del changed_rows
    return len(bidx) * len(cats)


def write_figures(
    conn: Connection, fig: Figures, gfig: pd.DataFrame | None, run_id: int, items: list[str] | None = None
) -> None:
    """Replace coverage figures (all, or only those of ``items``: categories / standards).

    ``fig`` = the arrays of :func:`~gisgov.coverage.figures.figure_arrays`: one row per level × item with
    the counts by code (coverage_figure_item), the totals per level × mask (coverage_figure_total) and the
    codes per level (coverage_figure_level); ``coverage_figure`` is a view with the old long rows."""
    cur = _cursor(conn)
    if items is None:
        conn.execute(text("DELETE FROM coverage_figure_level"))
        conn.execute(text("DELETE FROM coverage_group_figure"))
    else:
        conn.execute(text("DELETE FROM coverage_group_figure WHERE category = ANY(:i)"), {"i": items})
    stored = {r[0]: list(r[1]) for r in conn.execute(text("SELECT level, codes FROM coverage_figure_level"))}
    level_rows, total_rows, item_rows = [], [], []
    for lvl, codes in fig.codes.items():
        codes_l = [str(c) for c in codes]
        if stored.get(lvl) != codes_l:
            if lvl in stored:  # another set of codes: the level's stored items no longer line up
                conn.execute(text("DELETE FROM coverage_figure_level WHERE level = :l"), {"l": lvl})
            level_rows.append(binary_record([lvl, np.asarray(codes_l, dtype=object)]))
        else:
            conn.execute(text("DELETE FROM coverage_figure_total WHERE level = :l"), {"l": lvl})
            if items is not None:
                conn.execute(
                    text("DELETE FROM coverage_figure_item WHERE level = :l AND item = ANY(:i)"),
                    {"l": lvl, "i": items},
                )
        for mk, tot in fig.totals[lvl].items():
            t = np.asarray(tot, dtype=np.float64).reshape(len(codes), 3)
            total_rows.append(
                binary_record(
                    [
                        lvl,
                        mk,
                        np.round(t[:, 0]).astype(np.int32),
                        t[:, 1].astype(np.float32),
                        np.round(t[:, 2]).astype(np.int32),
                    ]
                )
            )
        ins = fig.inside[lvl]
        for k, (kind, item, profile, circle, mk) in enumerate(fig.meta):
            v = ins[:, :, k]
            item_rows.append(
                binary_record(
                    [
                        lvl,
                        kind,
                        item,
                        profile,
                        circle,
                        mk,
                        np.round(v[:, 0]).astype(np.int32),
                        v[:, 1].astype(np.float32),
                        np.round(v[:, 2]).astype(np.int32),
                        int(run_id),
                    ]
                )
            )
    if level_rows:
        copy_binary(cur, "coverage_figure_level", ["level", "codes"], level_rows)
    if total_rows:
        copy_binary(cur, "coverage_figure_total", ["level", "mask", "buildings", "households", "residents"], total_rows)
    if item_rows:
        copy_binary(
            cur,
            "coverage_figure_item",
            [
                "level",
                "item_kind",
                "item",
                "profile",
                "circle",
                "mask",
                "buildings_in",
                "households_in",
                "residents_in",
                "run_id",
            ],
            item_rows,
        )
    if gfig is not None and len(gfig):
        g = gfig.copy()
        g["run_id"] = run_id
        _copy(conn, "coverage_group_figure", g)


def load_table(conn: Connection, model: CoverageModel, categories: list[str]) -> DistanceTable | None:
    """The stored distances as a DistanceTable aligned with the model (None if some are missing)."""
    slots = access_slots(conn)
    if any(c not in slots for c in categories):
        return None
    ids, sdist, sfac, other = _read_packed(conn, len(slots))
    nb = len(model.buildings)
    if other or len(ids) != nb:
        return None
    bpos = pd.Series(np.arange(nb), index=model.buildings["id"].to_numpy()).reindex(ids).to_numpy()
    if np.isnan(bpos).any():
        return None
    bi = bpos.astype(np.int64)
    cols = [slots.index(c) for c in categories]
    sd = sdist[:, cols]
    if np.isnan(sd).any():
        return None
    dist = np.full((nb, len(categories)), np.inf, dtype=np.float32, order="F")
    fac = np.full((nb, len(categories)), -1, dtype=np.int32, order="F")
    dist[bi] = sd
    fpos = pd.Series(np.arange(len(model.facilities)), index=model.facilities["id"].to_numpy())
    sf = sfac[:, cols].astype(np.int64)
    fr = fpos.reindex(sf.ravel()).to_numpy().reshape(sf.shape)
    fac[bi] = np.where(np.isnan(fr), -1, fr).astype(np.int32)
    method = conn.execute(
        text("SELECT method FROM coverage_access_slot WHERE category_code = ANY(:c) ORDER BY slot LIMIT 1"),
        {"c": list(categories)},
    ).scalar()
    return DistanceTable(list(categories), dist, fac, str(method or model.method))


# -- facilities (committed what-if edits) ------------------------------------------------------------------


def insert_facility(
    conn: Connection,
    *,
    code: str,
    name: str,
    category_code: str,
    kind: str | None,
    lon: float,
    lat: float,
    srid: int,
    source: str = "gisgov coverage what-if",
) -> int:
    return int(
        conn.execute(
            text(
                "INSERT INTO facility (code, name, category_code, kind, source, geom) "
                "VALUES (:code, :name, :cat, :kind, :src, ST_SetSRID(ST_MakePoint(:lon, :lat), :srid)) RETURNING id"
            ),
            dict(code=code, name=name, cat=category_code, kind=kind, src=source, lon=lon, lat=lat, srid=srid),
        ).scalar()
    )


def move_facility(conn: Connection, facility_id: int, lon: float, lat: float, srid: int) -> None:
    conn.execute(
        text("UPDATE facility SET geom = ST_SetSRID(ST_MakePoint(:lon, :lat), :srid) WHERE id = :id"),
        dict(lon=lon, lat=lat, srid=srid, id=facility_id),
    )


def delete_facility(conn: Connection, facility_id: int) -> None:
    conn.execute(text("DELETE FROM facility WHERE id = :id"), {"id": facility_id})
