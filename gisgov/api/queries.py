"""The core API as plain functions of a SQLAlchemy connection (no HTTP here).

GeoJSON is produced by PostGIS (``ST_AsGeoJSON(ST_Transform(geom, 4326))``) and assembled as
JSON text in SQL, so a layer page is one round trip and no Python geometry work. Every SQL
identifier comes from a validated :class:`gisgov.layers.Layer`; every value is a bound parameter.

Counts: a building's households are its ``household`` rows, or its ``households`` column when it
has no roster (estimated); residents are its ``resident`` rows. Areas sum their buildings
(compound: ``building.compound_id``, grid: ``building.grid_id``, community: ``community_code``,
street: its communities). Aggregates are computed only for the buildings of the page's features.

Scope (defence in depth on top of PostgreSQL row-level security): every function takes a
:class:`Scope` and returns only what lies in it. Layers say how their rows are scoped
(``scope_by`` in the catalog):

- ``code``: the feature's hierarchy code lies in the area (starts with the area prefix) or is an
  ancestor of it, so a community's staff see their own street's outline but not the sibling
  communities;
- ``community_code``: the row's community lies in the area; rows without a community (e.g.
  facilities loaded without one) count when their geometry intersects the area's polygon;
- ``area``: the geometry intersects the area's polygon (street or community);
- ``household``: personal rows, by their household's building: in the account's own node (street
  or community prefix, or the buildings of its grid in the active plan), as row-level security does;
- ``all``: no limit. Roads (``road_edge``) are scoped this way on purpose: the walking network is
  public infrastructure (typically OpenStreetMap), holds nothing about people or administration,
  and service-circle analyses follow it across community and street borders, so every signed-in
  account sees it whole (lists, bbox queries and ``/api/road/{id}``).

Counts (households, residents) and children summaries are computed from in-scope buildings only,
so an ancestor outline (a street seen by one community) carries the figures of the caller's part of
it, never those of its siblings. Under row-level security a grid worker's household and resident
rows are those of its own grid; buildings of the other grids of its community then report their
``building.households`` column (the estimate) and no residents.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from sqlalchemy import Connection, text

from gisgov.crs import GEOJSON_PRECISION, WGS84
from gisgov.errors import NotFound
from gisgov.layers import Catalog, Layer, Ref
from gisgov.security.roles import Principal

PRECISION = GEOJSON_PRECISION  # decimal degrees in GeoJSON (gisgov.crs: 7 ≈ 1 cm)

# How the buildings under one feature of a layer are found (p = the page of features).
_ROLLUP_JOIN = {
    "building": "JOIN building b ON b.id = {a}._id",
    "compound": "JOIN building b ON b.compound_id = {a}._id",
    "grid": "JOIN building b ON b.grid_id = {a}._id",
    "community": "JOIN building b ON b.community_code = {a}._code",
    "street": "JOIN community c ON c.street_code = {a}._code JOIN building b ON b.community_code = c.code",
}


def rollup_join(counts: str, alias: str) -> str:
    """How the buildings (``b``) under one row of a layer are found; ``alias`` names the rows (``_id``, ``_code``)."""
    return _ROLLUP_JOIN[counts].format(a=alias)


def count_ctes(source: str, alias: str, rollup: str) -> tuple[str, str]:
    """CTEs (to append after others: they start with a comma) counting the households and residents under each
    row of ``source`` (a CTE with ``_id``, read as ``alias``; ``rollup`` joins its buildings as ``b``), limited to
    the caller's area (``:s_area``). A building without household rows counts its ``households`` column. Also
    the join that brings the counts as ``s`` (``s.households``, ``s.residents``)."""
    ctes = f""",
bl AS (SELECT {alias}._id AS fid, b.code, b.households FROM {source} {alias} {rollup}
       WHERE starts_with(b.community_code, :s_area)),
hc AS (SELECT hh.building_code, count(*) AS n FROM household hh
       WHERE hh.building_code IN (SELECT code FROM bl) GROUP BY hh.building_code),
rc AS (SELECT hh.building_code, count(*) AS n FROM household hh JOIN resident rr ON rr.household_id = hh.id
       WHERE hh.building_code IN (SELECT code FROM bl) GROUP BY hh.building_code),
stats AS (SELECT bl.fid,
                 sum(CASE WHEN hc.n > 0 THEN hc.n ELSE coalesce(bl.households, 0) END)::bigint AS households,
                 sum(coalesce(rc.n, 0))::bigint AS residents
          FROM bl LEFT JOIN hc ON hc.building_code = bl.code LEFT JOIN rc ON rc.building_code = bl.code
          GROUP BY bl.fid)"""
    return ctes, f"LEFT JOIN stats s ON s.fid = {alias}._id"


@dataclass(frozen=True)
class Scope:
    """Where a caller may look. ``area``: code prefix of non-personal data ('' = everywhere; a
    9-digit street or 12-digit community code); ``personal``: the account's own node for personal
    data ('' = everywhere, else a street, community or grid code)."""

    area: str = ""
    personal: str = ""

    @classmethod
    def of(cls, p: Principal) -> Scope:
        return cls(area=p.area_prefix, personal=p.scope_code)

    def params(self) -> dict:
        return {"s_area": self.area, "s_personal": self.personal}


ALL = Scope()  # the whole city: pass it explicitly (no query defaults to it)

# The area's polygon: the street or community whose code is the area prefix.
_AREA = (
    "(SELECT s.geom FROM street s WHERE s.code = :s_area "
    "UNION ALL SELECT c.geom FROM community c WHERE c.code = :s_area)"
)


def _in_area(geom: str) -> str:
    return f"EXISTS (SELECT 1 FROM {_AREA} a WHERE a.geom && {geom} AND ST_Intersects(a.geom, {geom}))"


def personal_buildings_sql(scope: Scope) -> str | None:
    """SQL condition on ``h.building_code`` (a household's building) for the personal scope, or
    None when the scope is everything. Mirrors ``gisgov_scope_buildings()`` of migration 0005."""
    if not scope.personal:
        return None
    if len(scope.personal) == 15:
        return (
            "h.building_code IN (SELECT b.code FROM building b WHERE b.grid_id IN "
            "(SELECT g.id FROM grid_current() g WHERE g.code = :s_personal))"
        )
    return "starts_with(h.building_code, :s_personal)"


def scope_conditions(layer: Layer, scope: Scope, alias: str = "t") -> list[str]:
    """SQL conditions (on row ``alias`` of ``layer``) keeping only rows in ``scope``; parameters
    from :meth:`Scope.params`."""
    if layer.scope_by == "household":
        cond = personal_buildings_sql(scope)
        if cond is None:
            return []
        return [f"{alias}.household_id IN (SELECT h.id FROM household h WHERE {cond})"]
    if layer.scope_by == "all" or not scope.area:
        return []
    if layer.scope_by == "code":
        code = f"{alias}.{_q(layer.code_expr_column)}::text"
        return [f"(starts_with({code}, :s_area) OR starts_with(:s_area, {code}))"]
    geom = _geom_expr(layer, alias)
    if layer.scope_by == "community_code":
        return [
            f"(starts_with({alias}.community_code, :s_area) OR ({alias}.community_code IS NULL AND {_in_area(geom)}))"
        ]
    if layer.scope_by == "area":
        return [_in_area(geom)]
    raise ValueError(f"layer {layer.name}: unknown scope rule {layer.scope_by!r}")


def _sql(name: str) -> str:
    return resources.files("gisgov.api.sql").joinpath(name).read_text(encoding="utf-8")


def _q(ident: str) -> str:
    """Quote an identifier (already restricted to ``[a-z_][a-z0-9_]*`` by the catalog)."""
    return '"' + ident.replace('"', '""') + '"'


@dataclass(frozen=True)
class Page:
    """One page of a layer as GeoJSON text plus its counts."""

    features_json: str
    number_matched: int | None
    number_returned: int


# Tables whose rows include drafts: a layer on them reads only the rows in use (grids: the active plans'
# grids and grids made outside plans, ``grid_current()``); a draft plan never shows in a layer, a count,
# the hierarchy or an export unless asked for through the plan routes.
CURRENT_ROWS = {"grid": "grid_current()"}


def _rel(table: str) -> str:
    """The FROM item of a layer's table: its current rows where the table holds drafts."""
    return CURRENT_ROWS.get(str(table)) or _q(table)


def _ref_expr(catalog: Catalog, ref: Ref) -> str:
    """SQL giving the referenced feature's code for row ``t``."""
    target = catalog.get(ref.level)
    if ref.key == "code":
        return f"t.{_q(ref.column)}::text"
    code = _q(target.code_expr_column)
    return f"(SELECT x.{code}::text FROM {_rel(target.table)} x WHERE x.{_q(target.id_column)} = t.{_q(ref.column)})"


def _geom_expr(layer: Layer, alias: str = "t") -> str:
    g = f"{alias}.{_q(layer.geometry)}"
    if layer.geometry_fallback:
        return f"coalesce({g}, {alias}.{_q(layer.geometry_fallback)})"
    return g


def _conditions(layer: Layer, *, bbox: bool, code: bool, ref: Ref | None) -> list[str]:
    conds = []
    if bbox:
        g = f"t.{_q(layer.geometry)}"
        hit = f"({g} && env.g AND ST_Intersects({g}, env.g))"
        if layer.geometry_fallback:
            f = f"t.{_q(layer.geometry_fallback)}"
            hit = f"({hit} OR ({g} IS NULL AND {f} && env.g AND ST_Intersects({f}, env.g)))"
        conds.append(hit)
    if code:
        conds.append(f"t.{_q(layer.code_expr_column)} = :code")
    if ref is not None:
        conds.append(f"t.{_q(ref.column)} = :ref_value")
    return conds


def layer_page(
    conn: Connection,
    catalog: Catalog,
    layer: Layer,
    *,
    bbox: tuple[float, float, float, float] | None = None,
    limit: int | None = None,
    offset: int = 0,
    code: str | None = None,
    ref: tuple[Ref, object] | None = None,
    geometry: bool = True,
    count: bool = True,
    scope: Scope,
) -> Page:
    """Features of ``layer`` in ``scope`` (optionally one ``code``, the children of ``ref``,
    inside ``bbox``)."""
    params: dict = {
        "layer": layer.name,
        "prec": PRECISION,
        "offset": int(offset),
        "limit": limit,
        "table": layer.table,
        "geomcol": layer.geometry,
        **scope.params(),
    }
    conds = _conditions(layer, bbox=bbox is not None, code=code is not None, ref=ref[0] if ref else None)
    conds += scope_conditions(layer, scope)
    if bbox is not None:
        params.update(minx=bbox[0], miny=bbox[1], maxx=bbox[2], maxy=bbox[3])
    if code is not None:
        params["code"] = int(code) if layer.code_column is None else code
    if ref is not None:
        params["ref_value"] = ref[1]
    env = (
        "env AS (SELECT ST_Transform(ST_MakeEnvelope(:minx, :miny, :maxx, :maxy, 4326), "
        "Find_SRID(current_schema()::text, :table, :geomcol)) AS g),"
        if bbox is not None
        else ""
    )
    from_env = ", env" if bbox is not None else ""
    where = ("WHERE " + " AND ".join(conds)) if conds else ""
    table = _rel(layer.table)

    cols = [
        f"t.{_q(layer.id_column)} AS _id",
        f"t.{_q(layer.code_expr_column)}::text AS _code",
        f"t.{_q(layer.code_expr_column)} AS _ord",
        (f"t.{_q(layer.name_column)}::text" if layer.name_column else "NULL::text") + " AS _name",
        (_ref_expr(catalog, layer.parent) if layer.parent else "NULL::text") + " AS _parent",
    ]
    cols += [f"{_ref_expr(catalog, r)} AS {_q('_l_' + r.level)}" for r in layer.links]
    cols += [f"t.{_q(c)} AS {_q('_p_' + c)}" for c in layer.properties]
    if geometry:
        cols.append(f"{_geom_expr(layer)} AS _geom")

    props = ["'layer', CAST(:layer AS text)", "'code', p._code", "'name', p._name", "'parent_code', p._parent"]
    if layer.counts:
        props += ["'households', coalesce(s.households, 0)", "'residents', coalesce(s.residents, 0)"]
    props += [f"'{r.level}_code', p.{_q('_l_' + r.level)}" for r in layer.links]
    props += [f"'{c}', p.{_q('_p_' + c)}" for c in layer.properties]
    geom_json = f"ST_AsGeoJSON(ST_Transform(p._geom, {WGS84}), :prec)::json" if geometry else "NULL::json"
    feature = (
        f"json_build_object('type', 'Feature', 'id', p._code, 'geometry', {geom_json}, "
        f"'properties', json_build_object({', '.join(props)}))"
    )

    stats_ctes, stats_join = "", ""
    if layer.counts:
        stats_ctes, stats_join = count_ctes("page", "p", rollup_join(layer.counts, "p"))

    matched = f"(SELECT count(*) FROM {table} t{from_env} {where})" if count else "NULL::bigint"
    sql = f"""
WITH {env}
page AS MATERIALIZED (
    SELECT {", ".join(cols)}
    FROM {table} t{from_env}
    {where}
    ORDER BY t.{_q(layer.code_expr_column)}
    LIMIT :limit OFFSET :offset
){stats_ctes}
SELECT {matched} AS matched,
       count(f.feature) AS returned,
       coalesce(json_agg(f.feature ORDER BY f.ord), '[]'::json)::text AS features
FROM (SELECT p._ord AS ord, {feature} AS feature FROM page p {stats_join}) f
"""
    row = conn.execute(text(sql), params).one()
    return Page(features_json=row.features, number_matched=row.matched, number_returned=row.returned)


def feature_collection_json(page: Page, *, links: list[dict] | None = None, extra: dict | None = None) -> str:
    """A GeoJSON FeatureCollection (RFC 7946, WGS84 lon/lat) as text, the features spliced in as-is."""
    head = {"type": "FeatureCollection"}
    if page.number_matched is not None:
        head["numberMatched"] = page.number_matched
    head["numberReturned"] = page.number_returned
    if links is not None:
        head["links"] = links
    if extra:
        head.update(extra)
    return json.dumps(head, ensure_ascii=False)[:-1] + ', "features": ' + page.features_json + "}"


def feature(conn: Connection, catalog: Catalog, layer: Layer, code: str, *, scope: Scope) -> dict:
    """One feature (GeoJSON dict) of ``layer`` by code; :class:`NotFound` naming it otherwise
    (also when it lies outside ``scope``: the same answer, so codes cannot be probed)."""
    layer.check_code(code)
    page = layer_page(conn, catalog, layer, code=code, limit=1, count=False, scope=scope)
    features = json.loads(page.features_json)
    if not features:
        raise NotFound(f"未找到{layer.title.zh} {layer.title.en.lower()} not found: {layer.name} {code}")
    return features[0]


def children(
    conn: Connection,
    catalog: Catalog,
    layer: Layer,
    code: str,
    visible: Callable[[Layer], bool],
    *,
    scope: Scope,
    max_items: int = 1000,
) -> list[dict]:
    """Summary of what hangs under one feature: for each layer pointing at it that the caller
    may see (``visible``), a count, and for direct children (primary parent) the list of their
    code, name and counts (no geometry); counts and lists hold in-scope rows only."""
    id_row = conn.execute(
        text(
            f"SELECT t.{_q(layer.id_column)} AS id, t.{_q(layer.code_expr_column)}::text AS code "
            f"FROM {_rel(layer.table)} t WHERE t.{_q(layer.code_expr_column)} = :code"
        ),
        {"code": int(code) if layer.code_column is None else code},
    ).one()
    out = []
    for child, ref, primary in catalog.children_refs(layer.name):
        if not visible(child):
            continue
        value = id_row.id if ref.key == "id" else id_row.code
        where = " AND ".join([f"t.{_q(ref.column)} = :v", *scope_conditions(child, scope)])
        n = conn.execute(
            text(f"SELECT count(*) FROM {_rel(child.table)} t WHERE {where}"), {"v": value, **scope.params()}
        ).scalar()
        entry = {"layer": child.name, "title": str(child.title), "via": ref.column, "count": n}
        if primary and n <= max_items:
            page = layer_page(conn, catalog, child, ref=(ref, value), geometry=False, count=False, scope=scope)
            entry["items"] = [f["properties"] for f in json.loads(page.features_json)]
        out.append(entry)
    return out


_COVERS = "(starts_with(code, :s_area) OR starts_with(:s_area, code))"


def hierarchy(conn: Connection, scope: Scope) -> dict:
    """The street → community → grid tree with household, resident and building counts: only the
    nodes in ``scope`` (and the ancestors of its area), counts from in-scope buildings only."""
    params = scope.params()
    stats = conn.execute(text(_sql("hierarchy_stats.sql")), params).all()
    streets = conn.execute(text(f"SELECT code, name FROM street WHERE {_COVERS} ORDER BY code"), params).all()
    communities = conn.execute(
        text(f"SELECT code, name, street_code FROM community WHERE {_COVERS} ORDER BY code"), params
    ).all()
    grids = conn.execute(
        text(f"SELECT id, code, name, community_code, level FROM grid_current() WHERE {_COVERS} ORDER BY code"), params
    ).all()

    def node(level: str, code: str, name: str | None) -> dict:
        return {
            "level": level,
            "code": code,
            "name": name,
            "households": 0,
            "residents": 0,
            "buildings": 0,
            "children": [],
        }

    s_nodes = {r.code: node("street", r.code, r.name) for r in streets}
    c_nodes = {}
    for r in communities:
        c_nodes[r.code] = node("community", r.code, r.name)
        s_nodes[r.street_code]["children"].append(c_nodes[r.code])
    g_nodes = {}
    for r in grids:
        g_nodes[r.id] = node("grid", r.code, r.name) | {"grid_level": r.level}
        del g_nodes[r.id]["children"]
        c_nodes[r.community_code]["children"].append(g_nodes[r.id])
    for r in stats:
        add = {"households": int(r.households), "residents": int(r.residents), "buildings": int(r.buildings)}
        targets = [c_nodes.get(r.community_code)]
        if targets[0] is not None:
            targets.append(s_nodes.get(r.community_code[:9]))
        if r.grid_id is not None:
            targets.append(g_nodes.get(r.grid_id))
        for t in targets:
            if t is not None:
                for k, v in add.items():
                    t[k] += v
    total = {k: sum(s[k] for s in s_nodes.values()) for k in ("households", "residents", "buildings")}
    return {
        "streets": list(s_nodes.values()),
        **total,
        "counts": {"streets": len(s_nodes), "communities": len(c_nodes), "grids": len(g_nodes)},
    }


def health(conn: Connection) -> dict:
    """PostGIS version, schema revision and dataset label of the database."""
    postgis = conn.execute(text("SELECT postgis_lib_version()")).scalar()
    has_alembic = conn.execute(text("SELECT to_regclass('alembic_version') IS NOT NULL")).scalar()
    schema = conn.execute(text("SELECT version_num FROM alembic_version")).scalar() if has_alembic else None
    has_meta = conn.execute(text("SELECT to_regclass('gisgov_meta') IS NOT NULL")).scalar()
    dataset = conn.execute(text("SELECT value FROM gisgov_meta WHERE key = 'dataset'")).scalar() if has_meta else None
    return {"status": "ok", "postgis": postgis, "schema": schema, "dataset": dataset}


def dataset_info(conn: Connection) -> dict | None:
    """The ``gisgov_meta`` dataset label (``{"name": …, "synthetic": true}`` for the sample city)."""
    value = conn.execute(text("SELECT value FROM gisgov_meta WHERE key = 'dataset'")).scalar()
    if value is None or isinstance(value, dict):
        return value
    return {"name": str(value)}
