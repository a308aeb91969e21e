"""PostGIS I/O of the coverage module (the only place here that runs SQL).

Reads the inputs into a :class:`~gisgov.coverage.model.CityData` and writes snaps, distances,
budgets, figures and run records. Everything goes through the caller's SQLAlchemy connection (one
transaction); bulk writes use COPY on that same connection.
"""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from sqlalchemy import Connection, text

from gisgov.coverage.catalog import Catalog
from gisgov.coverage.model import CityData, CoverageModel, DistanceTable
from gisgov.crs import CGCS2000
from gisgov.db.copy import copy_frame
from gisgov.network import flag_names

SRID_SQL = "SELECT (value #>> '{}')::int FROM gisgov_meta WHERE key = 'srid'"
_CHUNK = 50_000


def storage_srid(conn: Connection) -> int:
    v = conn.execute(text(SRID_SQL)).scalar()
    return int(v) if v else CGCS2000


def _frame(conn: Connection, sql: str, params: dict | None = None) -> pd.DataFrame:
    res = conn.execute(text(sql), params or {})
    return pd.DataFrame(res.fetchall(), columns=list(res.keys()))


def _gdf(df: pd.DataFrame, srid: int, wkb_col: str = "wkb") -> gpd.GeoDataFrame:
    geoms = shapely.from_wkb(df[wkb_col].map(bytes).to_numpy()) if len(df) else np.array([], dtype=object)
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
        geoms = np.array([None if w is None else shapely.from_wkb(bytes(w)) for w in f["wkb"]], dtype=object)
        fp = gpd.GeoSeries(geoms, crs=srid)
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


CHECKSUM_SQL = """
SELECT
  (SELECT concat_ws(':', count(*), sum(id), sum(source), sum(target), round(sum(length_m)::numeric, 3),
                    sum(foot::int), sum(oneway_foot::int)) FROM road_edge) AS edges,
  (SELECT concat_ws(':', count(*), sum(id), round(sum(ST_X(pos))::numeric, 6), round(sum(ST_Y(pos))::numeric, 6),
                    sum(coalesce(compound_id, 0)), sum(coalesce(households, 0))) FROM building) AS buildings,
  (SELECT concat_ws(':', count(*), sum(id), sum(compound_id), round(sum(ST_X(geom))::numeric, 6)) FROM compound_gate) AS gates,
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


def _hexpoints(model: CoverageModel, x, y, srid: int) -> np.ndarray:
    ok = np.isfinite(x)
    out = np.full(len(x), None, dtype=object)
    if ok.any():
        lon, lat = model.to_lonlat(np.asarray(x)[ok], np.asarray(y)[ok], srid)
        out[ok] = shapely.to_wkb(shapely.set_srid(shapely.points(lon, lat), srid), hex=True, include_srid=True)
    return out


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
    df = pd.DataFrame(
        {
            "building_id": model.buildings["id"].to_numpy(),
            "edge_id": _nullable(edge_id, edge_id >= 0),
            "offset_m": np.round(bs.offset, 3),
            "access_m": np.round(bs.leg, 3),
            "via_gate_id": _nullable(via, via >= 0),
            "flags": [_pg_array(flag_names(int(f))) for f in bs.flags],
            "geom": _hexpoints(model, bs.x, bs.y, srid),
        }
    )
    _copy(conn, "building_snap", df)
    fs = model.fsnap
    if len(fs):
        fe = np.where(fs.edge >= 0, g.edge_ids[np.maximum(fs.edge, 0)], -1) if g is not None else np.full(len(fs), -1)
        _copy(
            conn,
            "facility_snap",
            pd.DataFrame(
                {
                    "facility_id": model.facilities["id"].to_numpy(),
                    "edge_id": _nullable(fe, fe >= 0),
                    "offset_m": np.round(fs.offset, 3),
                    "access_m": np.round(fs.leg, 3),
                    "flags": [_pg_array(flag_names(int(f))) for f in fs.flags],
                    "geom": _hexpoints(model, fs.x, fs.y, srid),
                }
            ),
        )


def write_access(
    conn: Connection,
    model: CoverageModel,
    table: DistanceTable,
    run_id: int,
    categories: list[str] | None = None,
    buildings: np.ndarray | None = None,
) -> int:
    """Replace building_access rows of ``categories`` (default: all in the table).

    ``buildings`` (indices) limits the rewrite to those buildings (what-if updates)."""
    cats = categories or table.categories
    bidx = np.arange(len(model.buildings)) if buildings is None else np.asarray(buildings, dtype=np.int64)
    ids = model.buildings["id"].to_numpy()[bidx]
    if buildings is None:
        conn.execute(text("DELETE FROM building_access WHERE category_code = ANY(:c)"), {"c": cats})
    else:
        conn.execute(
            text("DELETE FROM building_access WHERE category_code = ANY(:c) AND building_id = ANY(:b)"),
            {"c": cats, "b": [int(i) for i in ids]},
        )
    fids = model.facilities["id"].to_numpy()
    frames = []
    for c in cats:
        j = table.col(c)
        d = table.dist[bidx, j].astype(float)
        f = table.fac[bidx, j].astype(np.int64)
        fid = np.where(f >= 0, fids[np.maximum(f, 0)] if len(fids) else 0, -1)
        frames.append(
            pd.DataFrame(
                {
                    "building_id": ids,
                    "category_code": c,
                    "distance_m": _nullable(np.round(np.where(np.isfinite(d), d, 0), 2), np.isfinite(d), "Float64"),
                    "facility_id": _nullable(fid, fid >= 0),
                    "method": table.method,
                    "run_id": run_id,
                }
            )
        )
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(df):
        _copy(conn, "building_access", df)
    return len(df)


def write_figures(
    conn: Connection, fig: pd.DataFrame, gfig: pd.DataFrame | None, run_id: int, items: list[str] | None = None
) -> None:
    """Replace coverage figures (all, or only those of ``items``: categories / standards)."""
    if items is None:
        conn.execute(text("DELETE FROM coverage_figure"))
        conn.execute(text("DELETE FROM coverage_group_figure"))
    else:
        conn.execute(text("DELETE FROM coverage_figure WHERE item = ANY(:i)"), {"i": items})
        conn.execute(text("DELETE FROM coverage_group_figure WHERE category = ANY(:i)"), {"i": items})
    if len(fig):
        f = fig.copy()
        f["run_id"] = run_id
        _copy(conn, "coverage_figure", f)
    if gfig is not None and len(gfig):
        g = gfig.copy()
        g["run_id"] = run_id
        _copy(conn, "coverage_group_figure", g)


def load_table(conn: Connection, model: CoverageModel, categories: list[str]) -> DistanceTable | None:
    """The stored distances as a DistanceTable aligned with the model (None if some are missing)."""
    df = _frame(
        conn,
        "SELECT building_id, category_code, distance_m, facility_id, method FROM building_access "
        "WHERE category_code = ANY(:c)",
        {"c": categories},
    )
    nb = len(model.buildings)
    if len(df) != nb * len(categories):
        return None
    bpos = pd.Series(np.arange(nb), index=model.buildings["id"].to_numpy())
    fpos = pd.Series(np.arange(len(model.facilities)), index=model.facilities["id"].to_numpy())
    dist = np.full((nb, len(categories)), np.inf, dtype=np.float32, order="F")
    fac = np.full((nb, len(categories)), -1, dtype=np.int32, order="F")
    bi = bpos.reindex(df["building_id"].to_numpy()).to_numpy()
    if np.isnan(bi).any():
        return None
    cj = (
        pd.Series(np.arange(len(categories)), index=categories).reindex(df["category_code"]).to_numpy().astype(np.int64)
    )
    bi = bi.astype(np.int64)
    d = pd.to_numeric(df["distance_m"], errors="coerce").to_numpy(float)
    dist[bi, cj] = np.where(np.isnan(d), np.inf, d)
    fr = fpos.reindex(pd.to_numeric(df["facility_id"], errors="coerce").to_numpy()).to_numpy()
    fac[bi, cj] = np.where(np.isnan(fr), -1, fr).astype(np.int32)
    method = str(df["method"].iloc[0]) if len(df) else model.method
    return DistanceTable(list(categories), dist, fac, method)


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
