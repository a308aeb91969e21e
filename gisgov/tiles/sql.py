"""The SQL of one vector tile: one statement, PostGIS ``ST_AsMVT`` over ``ST_AsMVTGeom``.

Every SQL identifier comes from a validated catalog entry (:class:`gisgov.layers.Layer`), every value
is a bound parameter. The statement

- takes the tile's envelope once (``ST_TileEnvelope``, EPSG:3857), and its box in the table's SRID
  once (the envelope with the buffer margin, transformed), so the filter ``geom && box`` uses the
  table's GiST index and no geometry is transformed before it is known to meet the tile;
- keeps only rows in the caller's scope (the conditions of :func:`gisgov.api.queries.scope_conditions`,
  on top of row-level security on the request's connection);
- reads current rows only (grids: ``grid_current()``, the active plans), or the grids of one plan
  when a draft is asked for (:class:`PlanRows`);
- keeps at most ``max_features`` rows, the first by code, and says whether it cut (``capped``);
- adds the counts (households: the building's household rows, else its estimate; residents: its
  resident rows) of the rows kept, as ``/api/layers`` does;
- simplifies by zoom (``ST_Simplify`` in metres = ``simplify`` screen pixels at the tile's zoom).

The coverage layer (:data:`COVERAGE`) is the building layer with each building's stored walking
distance to the nearest facility of a category (``building_access``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

from gisgov.api.queries import CURRENT_ROWS, Scope, count_ctes, rollup_join, scope_conditions
from gisgov.layers import Catalog, Layer, Tiles
from gisgov.tiles.coords import Tile, simplify_tolerance_m

WEB_MERCATOR = 3857
#: the name of the derived coverage layer (buildings × stored distances); no catalog layer may take it
COVERAGE = "coverage"

# A draft plan's buildings are in its assignments, not in building.grid_id (the active plan's).
_PLAN_ROLLUP = (
    "JOIN grid_assignment ga ON ga.grid_id = r._id AND ga.plan_id = :plan_id JOIN building b ON b.id = ga.building_id"
)


@dataclass(frozen=True)
class PlanRows:
    """The grids of one stored plan (a draft, or any version) instead of the current ones."""

    plan_id: int


@dataclass(frozen=True)
class CoverageAsk:
    """Distances to the nearest facility of ``category``; with ``circle``, ``within`` against the
    (profile, circle) budget in metres."""

    category: str
    profile: str = "standard"
    circle: str | None = None


def _q(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'


_SRIDS: dict[tuple[str, str, str], int] = {}


def table_srid(conn: Connection, table: str, column: str) -> int:
    """The SRID of a geometry column (cached per database)."""
    key = (conn.engine.url.render_as_string(hide_password=True), table, column)
    srid = _SRIDS.get(key)
    if srid is None:
        srid = conn.execute(
            text("SELECT Find_SRID(current_schema()::text, :t, :c)"), {"t": table, "c": column}
        ).scalar_one()
        _SRIDS[key] = int(srid)
    return srid


def _rel(table: str) -> str:
    return CURRENT_ROWS.get(table) or _q(table)


def tile_sql(
    catalog: Catalog,
    layer: Layer,
    tile: Tile,
    scope: Scope,
    *,
    srid: int,
    name: str | None = None,
    plan: PlanRows | None = None,
    coverage: CoverageAsk | None = None,
) -> tuple[str, dict[str, object]]:
    """(SQL, parameters) answering one row ``(mvt bytea, capped bool)`` for ``layer``'s tile."""
    cfg = layer.tiles or Tiles()
    name = name or layer.name
    params: dict[str, object] = {
        "z": tile.z,
        "x": tile.x,
        "y": tile.y,
        "srid": srid,
        "margin": cfg.buffer / cfg.extent,
        "extent": cfg.extent,
        "buffer": cfg.buffer,
        "cap": cfg.max_features,
        "layer": name,
        **scope.params(),
    }
    g = f"t.{_q(layer.geometry)}"
    hit = f"{g} && env.box"
    geom = g
    if layer.geometry_fallback:
        fb = f"t.{_q(layer.geometry_fallback)}"
        hit = f"({hit} OR ({g} IS NULL AND {fb} && env.box))"
        geom = f"coalesce({g}, {fb})"
    conds = [hit, *scope_conditions(layer, scope, "t")]

    rel = _rel(layer.table)
    if plan is not None:
        rel = f"(SELECT pg.* FROM {_q(layer.table)} pg WHERE pg.plan_id = :plan_id)"
        params["plan_id"] = plan.plan_id

    code = layer.code_expr_column
    cols = [
        f"t.{_q(layer.id_column)} AS _id",
        f"t.{_q(code)}::text AS _code",
        (f"t.{_q(layer.name_column)}::text" if layer.name_column else "NULL::text") + " AS _name",
        f"{geom} AS _g",
    ]
    joins = []
    out = ["r._code AS code"]
    if coverage is None:
        out.append("r._name AS name")
    refs = {r.level: r for r in layer.refs}
    for level in cfg.links:
        ref = refs[level]
        target = catalog.get(level)
        alias = _q("l_" + level)
        if ref.key == "code":
            cols.append(f"t.{_q(ref.column)}::text AS {_q('_l_' + level)}")
        else:
            joins.append(
                f"LEFT JOIN {_rel(target.table)} {alias} ON {alias}.{_q(target.id_column)} = t.{_q(ref.column)}"
            )
            cols.append(f"{alias}.{_q(target.code_expr_column)}::text AS {_q('_l_' + level)}")
        out.append(f"r.{_q('_l_' + level)} AS {_q(level)}")
    if coverage is None:
        for f in cfg.fields:
            cols.append(f"t.{_q(f)} AS {_q('_f_' + f)}")
            out.append(f"r.{_q('_f_' + f)} AS {_q(f)}")

    ctes = ""
    stats_join = ""
    if coverage is not None:
        joins.append("LEFT JOIN building_access a ON a.building_id = t.id AND a.category_code = :category")
        cols.append("a.distance_m AS _dist")
        params["category"] = coverage.category
        out.append("round(r._dist)::integer AS distance_m")
        if coverage.circle is not None:
            params.update(profile=coverage.profile, circle=coverage.circle)
            budget = (
                "(SELECT cb.distance_m FROM coverage_budget cb WHERE cb.profile = :profile AND cb.circle = :circle)"
            )
            out.append(f"round({budget})::integer AS budget_m")
            out.append(f"(r._dist IS NOT NULL AND r._dist <= {budget}) AS within")
    elif layer.counts and cfg.counts:
        rollup = _PLAN_ROLLUP if plan is not None else rollup_join(layer.counts, "r")
        ctes, stats_join = count_ctes("rows", "r", rollup)
        out += ["coalesce(s.households, 0) AS households", "coalesce(s.residents, 0) AS residents"]

    projected = f"ST_Transform(r._g, {WEB_MERCATOR})"
    tol = simplify_tolerance_m(tile, cfg.simplify)
    if tol > 0 and layer.geometry_kind != "point":
        params["tol"] = tol
        projected = f"ST_Simplify({projected}, :tol, true)"
    out.append(f"ST_AsMVTGeom({projected}, env.tile, :extent, :buffer, true) AS geom")

    sql = f"""
WITH env AS (
    SELECT ST_TileEnvelope(:z, :x, :y) AS tile,
           ST_Transform(ST_TileEnvelope(:z, :x, :y, margin => :margin), :srid) AS box
),
rows AS MATERIALIZED (
    SELECT {", ".join(cols)}
    FROM {rel} t CROSS JOIN env {" ".join(joins)}
    WHERE {" AND ".join(conds)}
    ORDER BY t.{_q(code)}
    LIMIT :cap + 1
){ctes},
feats AS (
    SELECT {", ".join(out)}
    FROM (SELECT * FROM rows ORDER BY _code LIMIT :cap) r CROSS JOIN env {stats_join}
)
SELECT (SELECT ST_AsMVT(f.*, :layer, :extent, 'geom') FROM feats f WHERE f.geom IS NOT NULL) AS mvt,
       (SELECT count(*) FROM rows) > :cap AS capped
"""
    return sql, params


def tile_bytes(
    conn: Connection,
    catalog: Catalog,
    layer: Layer,
    tile: Tile,
    scope: Scope,
    *,
    name: str | None = None,
    plan: PlanRows | None = None,
    coverage: CoverageAsk | None = None,
) -> tuple[bytes, bool]:
    """The tile's MVT bytes (b'' when it holds no feature) and whether ``max_features`` cut it."""
    srid = table_srid(conn, layer.table, layer.geometry)
    sql, params = tile_sql(catalog, layer, tile, scope, srid=srid, name=name, plan=plan, coverage=coverage)
    row = conn.execute(text(sql), params).one()
    return (bytes(row.mvt) if row.mvt is not None else b""), bool(row.capped)
