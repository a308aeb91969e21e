"""PostGIS I/O of gridding: load a community (with an in-process cache keyed by a data signature),
read/write grid plans and their building assignments. SQL uses bound parameters only."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any, overload

import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection, text

from gisgov.errors import InvalidInput, NotFound
from gisgov.gridding.context import CommunityContext, build_context
from gisgov.gridding.rules import GridRules, rule_sets_from_config
from gisgov.gridding.validate import PlanInput

_CACHE: OrderedDict[tuple[Any, ...], CommunityContext] = OrderedDict()
_CACHE_LOCK = threading.Lock()
#: (database, community) → (data version, signature) as last read
_SIGNATURES: OrderedDict[tuple[str, str], tuple[int, tuple[Any, ...]]] = OrderedDict()
CACHE_SIZE = 16


def city_rule_sets(conn: Connection) -> dict[str, GridRules]:
    """Rule sets of this database's city: defaults overridden by ``gisgov_meta['grid_rules']``."""
    row = conn.execute(text("SELECT value FROM gisgov_meta WHERE key = 'grid_rules'")).scalar()
    return rule_sets_from_config(row if isinstance(row, dict) else (json.loads(row) if row else None))


def community_rules(conn: Connection, code: str, overrides: dict[str, Any] | None = None) -> GridRules:
    rs = conn.execute(text("SELECT rule_set FROM community WHERE code = :c"), {"c": code}).scalar()
    if rs is None:
        raise NotFound(f"社区 community {code} not found")
    sets = city_rule_sets(conn)
    rules = sets.get(rs, sets["urban"])
    return rules.with_overrides(**overrides) if overrides else rules


def _signature(conn: Connection, code: str) -> tuple[Any, ...]:
    return tuple(
        conn.execute(
            text("""
        SELECT (SELECT md5(ST_AsBinary(geom)) FROM community WHERE code = :c),
               (SELECT count(*) || ':' || coalesce(sum(id), 0) || ':' || coalesce(sum(households), 0) || ':' ||
                       coalesce(sum(compound_id), 0) || ':' || coalesce(md5(string_agg(ST_AsBinary(pos)::text, '' ORDER BY id)), '')
                FROM building WHERE community_code = :c),
               (SELECT count(*) || ':' || coalesce(md5(string_agg(ST_AsBinary(geom)::text, '' ORDER BY id)), '')
                FROM compound WHERE community_code = :c),
               (SELECT count(*) FROM household h JOIN building b ON b.code = h.building_code WHERE b.community_code = :c),
               (SELECT count(*) FROM resident r JOIN household h ON h.id = r.household_id
                  JOIN building b ON b.code = h.building_code WHERE b.community_code = :c),
               (SELECT count(*) FROM resident_group rg JOIN resident r ON r.id = rg.resident_id
                  JOIN household h ON h.id = r.household_id JOIN building b ON b.code = h.building_code
                 WHERE b.community_code = :c)
    """),
            {"c": code},
        ).one()
    )


def _checked_signature(conn: Connection, code: str) -> tuple[Any, ...]:
    """:func:`_signature`, read again only when the committed data version moved since it was last read for
    this community (every table it covers moves it: migrations 0017-0019). The signature counts the
    community's residents and hashes its buildings' positions: on every edit of a grid edit session it was
    most of the request's database work."""
    version = _data_version(conn)
    key = (str(conn.engine.url), code)
    if version is not None:
        with _CACHE_LOCK:
            seen = _SIGNATURES.get(key)
        if seen is not None and seen[0] == version:
            return seen[1]
    sig = _signature(conn, code)
    if version is not None:
        with _CACHE_LOCK:
            _SIGNATURES[key] = (version, sig)
            if len(_SIGNATURES) > 4096:
                _SIGNATURES.popitem(last=False)
    return sig


def _data_version(conn: Connection) -> int | None:
    """The committed data version (read before the signature), or None on a schema without it."""
    has = conn.execute(text("SELECT to_regclass('tile_version') IS NOT NULL")).scalar()
    return int(conn.execute(text("SELECT n FROM tile_version")).scalar_one()) if has else None


def load_context(
    conn: Connection, code: str, *, rules: GridRules | None = None, use_cache: bool = True
) -> CommunityContext:
    """The community ``code`` ready for gridding (cached while its data are unchanged)."""
    rules = rules or community_rules(conn, code)
    sig = (str(conn.engine.url), code, _checked_signature(conn, code), rules)
    if use_cache:
        with _CACHE_LOCK:
            if sig in _CACHE:
                _CACHE.move_to_end(sig)
                return _CACHE[sig]
    row = conn.execute(text("SELECT name, ST_AsBinary(geom) FROM community WHERE code = :c"), {"c": code}).one_or_none()
    if row is None:
        raise NotFound(f"社区 community {code} not found")
    name, wkb = row
    boundary = shapely.from_wkb(bytes(wkb))
    groups = [r[0] for r in conn.execute(text("SELECT code FROM special_group ORDER BY sort, code"))]
    b = pd.DataFrame(
        conn.execute(
            text("""
        WITH b AS (SELECT id, code, compound_id, households, pos FROM building WHERE community_code = :c),
        hh AS (SELECT h.building_code, count(*) AS n FROM household h JOIN b ON b.code = h.building_code GROUP BY 1),
        rr AS (SELECT h.building_code, count(*) AS n FROM resident r JOIN household h ON h.id = r.household_id
               JOIN b ON b.code = h.building_code GROUP BY 1)
        SELECT b.id, b.code, b.compound_id,
               CASE WHEN coalesce(hh.n, 0) > 0 THEN hh.n ELSE coalesce(b.households, 0) END AS households,
               coalesce(rr.n, 0) AS residents, ST_X(b.pos) AS lon, ST_Y(b.pos) AS lat
        FROM b LEFT JOIN hh ON hh.building_code = b.code LEFT JOIN rr ON rr.building_code = b.code
        ORDER BY b.code"""),
            {"c": code},
        )
        .mappings()
        .all(),
        columns=["id", "code", "compound_id", "households", "residents", "lon", "lat"],
    )
    est = (b["residents"] == 0) & (b["households"] > 0)
    b["people"] = np.where(est, np.round(b["households"] * rules.household_size), b["residents"]).astype(np.int64)
    b["people_estimated"] = est.to_numpy(bool)
    b["compound_id"] = b["compound_id"].astype("Int64")
    for g in groups:
        b[f"g_{g}"] = 0
    if len(b):
        gc = conn.execute(
            text("""
            SELECT bl.id, rg.group_code, count(DISTINCT r.id) FROM resident_group rg
            JOIN resident r ON r.id = rg.resident_id JOIN household h ON h.id = r.household_id
            JOIN building bl ON bl.code = h.building_code WHERE bl.community_code = :c GROUP BY 1, 2"""),
            {"c": code},
        ).all()
        if gc:
            pos = {int(i): k for k, i in enumerate(b["id"])}
            for bid, gcode, n in gc:
                b.loc[pos[int(bid)], f"g_{gcode}"] = int(n)
    comp = pd.DataFrame(
        [
            (i, c, n, shapely.from_wkb(bytes(g)))
            for i, c, n, g in conn.execute(
                text("SELECT id, code, name, ST_AsBinary(geom) FROM compound WHERE community_code = :c ORDER BY id"),
                {"c": code},
            )
        ],
        columns=["id", "code", "name", "geometry"],
    )
    bars = [
        shapely.from_wkb(bytes(g))
        for (g,) in conn.execute(
            text("""
        SELECT ST_AsBinary(ST_Intersection(e.geom, c.geom)) FROM road_edge e, community c
        WHERE c.code = :c AND e.class = ANY(:classes) AND e.geom && c.geom AND ST_Intersects(e.geom, c.geom)
        UNION ALL
        SELECT ST_AsBinary(ST_Intersection(x.geom, c.geom)) FROM barrier x, community c
        WHERE c.code = :c AND x.kind = ANY(:kinds) AND x.geom && c.geom AND ST_Intersects(x.geom, c.geom)"""),
            {"c": code, "classes": list(rules.barrier_road_classes), "kinds": list(rules.barrier_kinds)},
        )
    ]
    bars = [g for g in bars if not g.is_empty]
    ctx = build_context(
        code=code,
        name=name,
        boundary_lonlat=boundary,
        buildings=b,
        compounds=comp,
        barriers_lonlat=bars,
        rules=rules,
        group_codes=groups,
        signature=sig,
    )
    if est.any():
        ctx.atoms.notes.append(
            f"{int(est.sum())} building(s) have households but no resident records: people "
            f"estimated at {rules.household_size} per household"
        )
    if use_cache:
        with _CACHE_LOCK:
            _CACHE[sig] = ctx
            while len(_CACHE) > CACHE_SIZE:
                _CACHE.popitem(last=False)
    return ctx


# --- plans ---------------------------------------------------------------------------------------


@overload
def plan_row(conn: Connection, code: str, version: int) -> dict[str, Any]: ...
@overload
def plan_row(conn: Connection, code: str, version: int | None) -> dict[str, Any] | None: ...
def plan_row(conn: Connection, code: str, version: int | None) -> dict[str, Any] | None:
    """The plan ``version`` of community ``code`` (None = the active one)."""
    q = (
        "SELECT id, community_code, version, status, author, created, activated, note, method, rules, stats, "
        "parent_version FROM grid_plan WHERE community_code = :c AND "
    )
    row = (
        conn.execute(
            text(q + ("version = :v" if version is not None else "status = 'active'")), {"c": code, "v": version}
        )
        .mappings()
        .one_or_none()
    )
    if row is None and version is not None:
        raise NotFound(f"网格方案 grid plan version {version} of community {code} not found")
    return dict(row) if row else None


def active_version(conn: Connection, code: str) -> int | None:
    """The version of community ``code``'s active plan (None when it has none)."""
    v = conn.execute(
        text("SELECT version FROM grid_plan WHERE community_code = :c AND status = 'active'"), {"c": code}
    ).scalar()
    return None if v is None else int(v)


def started_on(conn: Connection, code: str, version: int | None = None) -> int | None:
    """The parent version of work that starts now from plan ``version`` (None = the active plan): a draft's
    own parent (work on a draft continues its lineage), else the active version at this moment."""
    if version is not None:
        row = plan_row(conn, code, version)
        if row["status"] == "draft":
            parent: int | None = row["parent_version"]
            return parent
    return active_version(conn, code)


def list_plans(conn: Connection, code: str) -> list[dict[str, Any]]:
    """Every version of community ``code``; ``parent_version`` is the active version the draft was made from."""
    rows = (
        conn.execute(
            text("""
        SELECT p.version, p.status, p.parent_version, p.author, p.created, p.activated, p.note, p.method, p.stats,
               (SELECT count(*) FROM grid g WHERE g.plan_id = p.id) AS grids
        FROM grid_plan p WHERE p.community_code = :c ORDER BY p.version"""),
            {"c": code},
        )
        .mappings()
        .all()
    )
    out = [dict(r) for r in rows]
    figures = _version_figures(conn, code)
    for r in out:
        f = figures.get(int(r["version"]), {})
        summary = (r.get("stats") or {}).get("summary") or {}
        if summary.get("grids") and summary.get("within_bounds") is not None:
            r["within_bounds"] = round(float(summary["within_bounds"]) / float(summary["grids"]), 4)
        else:
            r["within_bounds"] = f.get("within_bounds")
        r["households_range"] = f.get("households_range")
    return out


def _version_figures(conn: Connection, code: str) -> dict[int, dict[str, Any]]:
    """Per version of community ``code``: the share of grids within both bounds (households and people, the
    community's rules) and the [fewest, most] households of one grid, from the stored assignments."""
    from gisgov.errors import GisgovError
    from gisgov.gridding.validate import _status

    try:
        ctx = load_context(conn, code)
    except GisgovError:
        return {}
    rows = conn.execute(
        text("""
        SELECT p.version, g.id, a.building_id FROM grid_plan p JOIN grid g ON g.plan_id = p.id
        LEFT JOIN grid_assignment a ON a.grid_id = g.id WHERE p.community_code = :c"""),
        {"c": code},
    ).all()
    per: dict[int, dict[int, list[int]]] = {}
    for v, gid, bid in rows:
        hp = per.setdefault(int(v), {}).setdefault(int(gid), [0, 0])
        a = ctx.building_index.get(int(bid)) if bid is not None else None
        if a is not None:
            hp[0] += int(ctx.atoms.households[a])
            hp[1] += int(ctx.atoms.people[a])
    out: dict[int, dict[str, Any]] = {}
    for v, grids in per.items():
        hh = [h for h, _ in grids.values()]
        ok = sum(1 for h, p in grids.values() if _status(h, p, ctx.rules) == "ok")
        out[v] = {"within_bounds": round(ok / len(grids), 4), "households_range": [min(hh), max(hh)]}
    return out


def delete_draft(conn: Connection, code: str, version: int) -> None:
    """Delete the draft ``version`` of community ``code`` (its grids and assignments go with it). The active
    version and archived ones are refused (:class:`~gisgov.errors.PlanConflict`, HTTP 409)."""
    from gisgov.errors import PlanConflict

    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('grid_plan:' || :c))"), {"c": code})
    row = plan_row(conn, code, version)
    if row["status"] != "draft":
        zh = "启用中的方案" if row["status"] == "active" else "已归档的方案"
        raise PlanConflict(
            f"只能删除草稿：第 {version} 版是{zh}，不能删除 only drafts can be deleted: version {version} of "
            f"community {code} is {row['status']} (rule: delete_draft_only)"
        )
    conn.execute(text("DELETE FROM grid_plan WHERE id = :p"), {"p": row["id"]})


#: export formats of a plan: GDAL driver, file suffix, media type
EXPORT_FORMATS = {
    "gpkg": ("GPKG", "gpkg", "application/geopackage+sqlite3"),
    "shp": ("ESRI Shapefile", "zip", "application/zip"),
}


def export_filename(code: str, version: int, fmt: str) -> str:
    return f"grids_{code}_v{version}.{EXPORT_FORMATS[fmt][1]}"


def export_plan(conn: Connection, code: str, version: int, fmt: str) -> bytes:
    """Plan ``version``'s grids (code, name, households, people, status; polygons in EPSG:4490) as a
    GeoPackage, or a zipped Shapefile (UTF-8 text, with a ``.cpg`` saying so)."""
    import tempfile
    import zipfile
    from pathlib import Path

    import geopandas as gpd

    from gisgov.gridding.validate import _status

    ctx = load_context(conn, code)
    meta = plan_row(conn, code, version)
    grids = conn.execute(
        text("SELECT id, code, name, ST_AsBinary(geom) FROM grid WHERE plan_id = :p ORDER BY code"), {"p": meta["id"]}
    ).all()
    hp = {int(g[0]): [0, 0] for g in grids}
    for bid, gid in conn.execute(
        text("SELECT building_id, grid_id FROM grid_assignment WHERE plan_id = :p"), {"p": meta["id"]}
    ):
        a = ctx.building_index.get(int(bid))
        if a is not None and int(gid) in hp:
            hp[int(gid)][0] += int(ctx.atoms.households[a])
            hp[int(gid)][1] += int(ctx.atoms.people[a])
    frame = gpd.GeoDataFrame(
        {
            "code": [str(g[1]) for g in grids],
            "name": [str(g[2]) if g[2] is not None else "" for g in grids],
            "households": [hp[int(g[0])][0] for g in grids],
            "people": [hp[int(g[0])][1] for g in grids],
            "status": [_status(hp[int(g[0])][0], hp[int(g[0])][1], ctx.rules) for g in grids],
        },
        geometry=[shapely.from_wkb(bytes(g[3])) for g in grids],
        crs="EPSG:4490",
    )
    driver = EXPORT_FORMATS[fmt][0]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / f"grids_{code}_v{version}"
        if fmt == "gpkg":
            path = base.with_suffix(".gpkg")
            frame.to_file(path, driver=driver, layer="grids", engine="pyogrio")
            return path.read_bytes()
        path = base.with_suffix(".shp")
        frame.to_file(path, driver=driver, engine="pyogrio", encoding="UTF-8")
        cpg = base.with_suffix(".cpg")
        if not cpg.exists():
            cpg.write_text("UTF-8")
        zpath = Path(tmp) / "out.zip"
        with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(Path(tmp).iterdir()):
                if f.stem == base.stem:
                    z.write(f, f.name)
        return zpath.read_bytes()


def load_plan(
    conn: Connection, ctx: CommunityContext, version: int | None = None
) -> tuple[PlanInput, dict[str, Any] | None]:
    """A stored plan as validator input (metric polygons + assignments). ``version`` None = the active
    plan, or else the community's grids made outside plans (assignments from ``building.grid_id``)."""
    meta = plan_row(conn, ctx.code, version)
    if meta is not None:
        rows = conn.execute(
            text("SELECT id, code, name, exception, ST_AsBinary(geom) FROM grid WHERE plan_id = :p ORDER BY code"),
            {"p": meta["id"]},
        ).all()
        assign = conn.execute(
            text("SELECT building_id, grid_id FROM grid_assignment WHERE plan_id = :p"), {"p": meta["id"]}
        ).all()
    else:
        rows = conn.execute(
            text(
                "SELECT id, code, name, exception, ST_AsBinary(geom) FROM grid "
                "WHERE community_code = :c AND plan_id IS NULL ORDER BY code"
            ),
            {"c": ctx.code},
        ).all()
        assign = conn.execute(
            text("SELECT id, grid_id FROM building WHERE community_code = :c AND grid_id IS NOT NULL"), {"c": ctx.code}
        ).all()
    gid = {int(r[0]): k for k, r in enumerate(rows)}
    ag = np.full(ctx.atoms.n, -1, dtype=np.int64)
    for bid, g in assign:
        a = ctx.building_index.get(int(bid))
        if a is not None and int(g) in gid:
            ag[a] = gid[int(g)]
    _attach_empty_compounds(ctx, ag)
    polys = [ctx.to_metric(shapely.from_wkb(bytes(r[4]))) for r in rows]
    plan = PlanInput([r[1] for r in rows], ag, polys, [r[3] for r in rows], names=[r[2] for r in rows])
    return plan, meta


def _attach_empty_compounds(ctx: CommunityContext, ag: np.ndarray) -> None:
    """Atoms without a building (empty compounds) follow the grid of their most-bordering neighbour."""
    g = ctx.graph
    for a in np.flatnonzero((ctx.atoms.building_id < 0) & (ag < 0)):
        best, best_len = -1, 0.0
        for e in g.nbr_edge[g.indptr[a] : g.indptr[a + 1]]:
            o = g.ej[e] if g.ei[e] == a else g.ei[e]
            if ag[o] >= 0 and g.length[e] > best_len:
                best, best_len = ag[o], g.length[e]
        ag[a] = best


def atom_grid_from_codes(ctx: CommunityContext, codes: list[str], assignments: dict[str, str]) -> np.ndarray:
    """Atom labels from a building-code → grid-code mapping (unknown codes refused)."""
    idx = {c: k for k, c in enumerate(codes)}
    ag = np.full(ctx.atoms.n, -1, dtype=np.int64)
    for b, g in assignments.items():
        a = ctx.code_index.get(str(b))
        if a is None or ctx.atoms.building_id[a] < 0:
            raise InvalidInput(f"楼栋 building {b} is not in community {ctx.code}")
        if g is None:
            continue
        if str(g) not in idx:
            raise InvalidInput(f"楼栋分配到未知网格 building {b} is assigned to unknown grid {g}")
        ag[a] = idx[str(g)]
    _attach_empty_compounds(ctx, ag)
    return ag


def _multi_wkb(ctx: CommunityContext, poly: BaseGeometry) -> bytes:
    g = ctx.to_lonlat(poly)
    if g.geom_type == "Polygon":
        g = shapely.MultiPolygon([g])
    wkb: bytes = shapely.to_wkb(g)
    return wkb


def _outlines(ctx: CommunityContext, plan: PlanInput, atom_grid: np.ndarray) -> list[Any]:
    """The outlines stored for ``plan``: derived from the assignment (no polygons given, or polygons that
    are the assignment's unions of territory cells, as proposals and repairs make them), they are stored
    simplified along shared edges (no saw-teeth; :func:`~gisgov.gridding.validate.simplify_outlines`);
    polygons drawn elsewhere (uploaded GeoJSON) are stored as given."""
    from gisgov.gridding.validate import outline_tolerance, raw_grid_polygons, simplify_outlines

    k = len(plan.codes)
    raw = raw_grid_polygons(ctx, atom_grid, k)
    given = plan.polygons
    if given is not None:
        same = len(given) == k and all(
            (g is None or g.is_empty) == r.is_empty and (r.is_empty or shapely.symmetric_difference(g, r).area < 0.01)
            for g, r in zip(given, raw, strict=False)
        )
        if not same:
            return list(given)
    return simplify_outlines(raw, outline_tolerance(ctx), ctx.atoms.xy, atom_grid)


_NOW = object()  # save_plan's default parent: the active version when the draft is stored


def save_plan(
    conn: Connection,
    ctx: CommunityContext,
    plan: PlanInput,
    *,
    author: str | None = None,
    note: str | None = None,
    method: str | None = None,
    stats: dict[str, Any] | None = None,
    parent_version: int | object | None = _NOW,
) -> int:
    """Store ``plan`` as a new draft version; returns the version number.

    ``parent_version``: the active version the work started from (see :func:`started_on`); callers pass
    the one they read when the work began, so an activation in between is seen as a conflict later.
    Left out, the active version at the time of saving is recorded."""
    atom_grid = plan.atom_grid
    if atom_grid is None:
        raise ValueError("save_plan: the plan has no atom_grid")
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('grid_plan:' || :c))"), {"c": ctx.code})
    if parent_version is _NOW:
        parent_version = active_version(conn, ctx.code)
    version = conn.execute(
        text("SELECT coalesce(max(version), 0) + 1 FROM grid_plan WHERE community_code = :c"), {"c": ctx.code}
    ).scalar_one()
    pid = conn.execute(
        text("""
        INSERT INTO grid_plan (community_code, version, status, author, note, method, rules, stats, parent_version)
        VALUES (:c, :v, 'draft', :a, :n, :m, CAST(:r AS jsonb), CAST(:s AS jsonb), :pv) RETURNING id"""),
        {
            "c": ctx.code,
            "v": version,
            "a": author,
            "n": note,
            "m": method,
            "pv": parent_version,
            "r": json.dumps(ctx.rules.to_dict()),
            "s": json.dumps(stats or {}, default=str),
        },
    ).scalar()
    polys = _outlines(ctx, plan, atom_grid)
    ids = []
    for k, code in enumerate(plan.codes):
        if polys[k] is None or polys[k].is_empty:
            raise InvalidInput(
                f"网格没有面积 grid {code} has no area; a stored grid needs a polygon (rule: grid_geometry)"
            )
        ids.append(
            conn.execute(
                text("""
            INSERT INTO grid (code, community_code, name, geom, plan_id, exception)
            VALUES (:code, :c, :name, ST_Multi(ST_CollectionExtract(ST_MakeValid(ST_GeomFromWKB(:g, 4490)), 3)), :p, :e)
            RETURNING id"""),
                {
                    "code": code,
                    "c": ctx.code,
                    "name": (plan.names or [None] * len(plan.codes))[k],
                    "g": _multi_wkb(ctx, polys[k]),
                    "p": pid,
                    "e": (plan.exceptions or [None] * len(plan.codes))[k],
                },
            ).scalar()
        )
    rows = [
        {"p": pid, "b": int(ctx.atoms.building_id[a]), "g": ids[int(atom_grid[a])]}
        for a in range(ctx.atoms.n)
        if ctx.atoms.building_id[a] >= 0 and atom_grid[a] >= 0
    ]
    if rows:
        conn.execute(text("INSERT INTO grid_assignment (plan_id, building_id, grid_id) VALUES (:p, :b, :g)"), rows)
    return int(version)
