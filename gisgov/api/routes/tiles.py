"""Vector tiles: ``GET /tiles/{layer}/{z}/{x}/{y}.pbf`` (Mapbox Vector Tile, made by PostGIS ``ST_AsMVT``).

Which layers are tiled, with which properties and zooms: the ``tiles:`` section of the layer catalog
(:class:`gisgov.layers.Tiles`); the SQL: :mod:`gisgov.tiles.sql`. A tile is drawn in a scoped transaction
of the caller (:func:`gisgov.api.deps.transaction`: row-level security applies) and holds the caller's
area only, like ``/api/layers/{level}``. The MVT layer inside the tile has the catalog layer's name.

Drawn tiles are kept in this process's tile cache (:mod:`gisgov.tiles.cache`), keyed by the layer, the
tile, the query, the caller's area and the DATA VERSION (``tile_version.n``, moved at the commit of any
write to a table drawn in tiles, migration 0017). Each request reads that number first (one short
statement on the side pool); a cached tile of the same key and number is replayed with no scoped
transaction and no tile SQL, and so is a 304 for its ETag. Checks that need no data (the layer, the
role, the plan permission and area) run before the cache is looked at.

Answers:

- 200 ``application/vnd.mapbox-vector-tile``; a tile with no feature (outside the data, outside the
  caller's area, below the layer's tile min zoom or above its max zoom) is a 200 with an EMPTY body
  (a valid tile with no layer; Leaflet.VectorGrid draws nothing for it);
- 400 for a tile that does not exist (z outside 0..22, x/y outside 0..2^z-1, not an integer);
- 404 for an unknown layer, a layer without tiles, a personal layer, a layer the account's role may
  not see (``min_role``: not found rather than forbidden, like objects outside the area), a plan
  outside the caller's area or that does not exist;
- 403 for ``?plan=`` without the permission to edit plans; 422 for malformed query parameters.

``Cache-Control: private, max-age=60`` and an ``ETag`` (hash of the key, the data version and the
bytes), so a page panning back and forth re-uses its tiles; ``If-None-Match`` answers 304.
Tiles that reach the layer's ``max_features`` carry ``X-Tile-Capped: 1``; ``X-Tile-Cache`` says ``hit``
(replayed from this process's cache) or ``miss`` (drawn for this request).

Drafts only when asked: the grid layer draws the current grids (the active plans, ``grid_current()``);
``?plan=<version>&community=<code>`` draws that stored plan's grids (planners: ``edit_plans``).

``/tiles/coverage/…?category=&profile=&circle=``: the buildings (as the building layer: scope, zooms,
cap) with ``distance_m``, the stored walking distance in metres to the nearest facility of the
category (``building_access``; absent when none is reachable), and with a circle ``budget_m`` (the
profile's distance for the circle) and ``within``.
"""

from __future__ import annotations

import re
import threading

from anyio import to_thread
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response
from sqlalchemy import Connection, Engine, text

from gisgov.api import queries
from gisgov.api.deps import in_scope_or_404, require, side_engine, transaction
from gisgov.db.data_version import data_version
from gisgov.errors import Forbidden, InvalidInput, NotFound
from gisgov.layers import Catalog, Layer, catalog
from gisgov.security.roles import Perm, Principal
from gisgov.tiles import COVERAGE, CoverageAsk, PlanRows, Tile, parse_tile, tile_bytes
from gisgov.tiles.cache import Entry, TileCache, TileKey

router = APIRouter(tags=["tiles"])

MVT = "application/vnd.mapbox-vector-tile"
CACHE = "private, max-age=60"
MAX_VERSION = 2**31 - 1
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_CACHE_LOCK = threading.Lock()


def _not_found(name: str) -> NotFound:
    return NotFound(f"未找到切片图层 no tiles for layer {name[:64]!r}")


def tiled_layer(cat: Catalog, name: str, p: Principal) -> Layer:
    """The catalog layer served as tiles under ``name`` (coverage: the building layer), or 404."""
    base = "building" if name == COVERAGE and COVERAGE not in cat else name
    if not _NAME.match(name) or base not in cat:
        raise _not_found(name)
    layer = cat.get(base)
    if layer.tiles is None or layer.personal or not layer.allowed(p):
        raise _not_found(name)
    return layer


def _plan_ask(p: Principal, layer: Layer, plan: int | None, community: str | None) -> tuple[int, str] | None:
    """The checks of ``?plan=&community=`` that need no database (done before the cache is looked at)."""
    if plan is None and community is None:
        return None
    if layer.table != "grid":
        raise InvalidInput("只有网格图层可指定方案 plan= and community= apply to the grid layer only")
    if plan is None or community is None:
        raise InvalidInput("方案版本与社区须同时给出 plan= and community= go together")
    if not p.can(Perm.edit_plans):
        raise Forbidden(
            f"无权查看草稿方案 not allowed for role {p.role.value} ({p.label}): drawing a stored plan needs edit_plans"
        )
    in_scope_or_404(p, community, "社区 community")
    return plan, community


def _plan(conn: Connection, ask: tuple[int, str] | None) -> PlanRows | None:
    if ask is None:
        return None
    plan, community = ask
    plan_id = conn.execute(
        text("SELECT id FROM grid_plan WHERE community_code = :c AND version = :v"), {"c": community, "v": plan}
    ).scalar()
    if plan_id is None:
        raise NotFound(f"未找到方案 plan not found: {community} v{plan}")
    return PlanRows(int(plan_id))


def _coverage(conn: Connection, ask: CoverageAsk) -> CoverageAsk:
    category, profile, circle = ask.category, ask.profile, ask.circle
    row = conn.execute(
        text(
            "SELECT EXISTS (SELECT 1 FROM facility_category WHERE code = :c) AS cat, "
            "EXISTS (SELECT 1 FROM coverage_budget WHERE profile = :p) AS prof, "
            "EXISTS (SELECT 1 FROM coverage_budget WHERE profile = :p AND circle = :r) AS circ"
        ),
        {"c": category, "p": profile, "r": circle or ""},
    ).one()
    if not row.cat:
        raise InvalidInput(f"未知服务类别 unknown category {category!r}")
    if not row.prof:
        raise InvalidInput(f"未知人群口径 unknown profile {profile!r}")
    if circle is not None and not row.circ:
        raise InvalidInput(f"未知服务圈 unknown circle {circle!r} for profile {profile!r}")
    return ask


def tile_cache(app: FastAPI) -> TileCache:
    """This process's tile cache (made on first use, held on ``app.state``)."""
    st = app.state
    cache = getattr(st, "tile_cache", None)
    if cache is None:
        with _CACHE_LOCK:
            cache = getattr(st, "tile_cache", None)
            if cache is None:
                cache = st.tile_cache = TileCache()
    return cache


def _read_version(engine: Engine) -> int:
    with engine.connect() as c:
        return data_version(c)


def _render(
    conn: Connection,
    cat: Catalog,
    lyr: Layer,
    name: str,
    t: Tile,
    scope: queries.Scope,
    plan_ask: tuple[int, str] | None,
    cov_ask: CoverageAsk | None,
) -> tuple[int, bytes, bool]:
    """In the request's scoped transaction: the data version FIRST, then the checks and the tile (so
    the tile's data is at least as new as the version it is cached under)."""
    version = data_version(conn)
    cov = _coverage(conn, cov_ask) if cov_ask is not None else None
    rows = _plan(conn, plan_ask)
    cfg = lyr.tiles
    assert cfg is not None
    body, capped = b"", False
    if lyr.tile_min_zoom <= t.z <= cfg.max_zoom:
        body, capped = tile_bytes(conn, cat, lyr, t, scope, name=name, plan=rows, coverage=cov)
    return version, body, capped


@router.get(
    "/tiles/{layer}/{z}/{x}/{y}.pbf",
    summary="矢量切片 Vector tile of a layer (Mapbox Vector Tile, EPSG:3857, the caller's area only)",
    response_class=Response,
    responses={
        200: {
            "description": "切片 the tile (MVT; an empty body when no feature falls in it)",
            "content": {MVT: {"schema": {"type": "string", "format": "binary"}}},
        },
        304: {"description": "未变化 not modified (If-None-Match)"},
        400: {"description": "切片编号无效 no such tile (z outside 0..22, x/y outside 0..2^z-1)"},
        404: {"description": "无此切片图层 unknown layer, no tiles, or not visible to the account"},
    },
)
async def tile(
    request: Request,
    layer: str,
    z: str,
    x: str,
    y: str,
    plan: int | None = Query(
        None, ge=1, le=MAX_VERSION, description="方案版本 grid layer: a stored plan's grids (with community)"
    ),
    community: str | None = Query(None, pattern=r"^[0-9]{12}$", description="社区编码 the plan's community"),
    category: str | None = Query(
        None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$", description="服务类别 coverage layer: facility category"
    ),
    profile: str = Query("standard", pattern=r"^[a-z_]{1,32}$", description="人群口径 coverage: standard / elderly"),
    circle: str | None = Query(None, pattern=r"^[a-z0-9_]{1,32}$", description="服务圈 coverage: c5 / c10 / c15 / c30"),
    p: Principal = Depends(require(Perm.read_aggregates)),
) -> Response:
    t = parse_tile(z, x, y)
    settings = request.app.state.settings
    cat = catalog(settings.layers_dir)
    lyr = tiled_layer(cat, layer, p)
    cov_ask = None
    if layer == COVERAGE and lyr.name != COVERAGE:
        if plan is not None or community is not None:
            raise InvalidInput("覆盖图层不接受方案参数 plan= and community= apply to the grid layer only")
        if category is None:
            raise InvalidInput("请选择服务类别 the coverage layer needs ?category=")
        cov_ask = CoverageAsk(category=category, profile=profile, circle=circle)
    plan_ask = _plan_ask(p, lyr, plan, community)
    scope = queries.Scope.of(p)
    params = (
        ("plan", "" if plan_ask is None else f"{plan_ask[0]}@{plan_ask[1]}"),
        ("coverage", "" if cov_ask is None else f"{cov_ask.category}/{cov_ask.profile}/{cov_ask.circle or ''}"),
    )
    key = TileKey(layer, t.z, t.x, t.y, params, scope.area, scope.personal, p.db_scope, str(settings.layers_dir))
    cache = tile_cache(request.app)
    # one short statement on the side pool: the committed data version (no scoped transaction for a hit)
    version = await to_thread.run_sync(_read_version, side_engine(request))
    entry = cache.get(key, version)
    state = "hit" if entry is not None else "miss"
    if entry is None:
        async with transaction(request, p.db_scope) as conn:
            version, body, capped = await to_thread.run_sync(
                _render, conn, cat, lyr, layer, t, scope, plan_ask, cov_ask
            )
        entry = Entry(version, body, capped, key.etag(version, body))
        cache.put(key, entry)
    headers = {"Cache-Control": CACHE, "ETag": entry.etag, "Vary": "Cookie, Authorization", "X-Tile-Cache": state}
    if entry.capped:
        headers["X-Tile-Capped"] = "1"
    if entry.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(content=entry.body, media_type=MVT, headers=headers)
