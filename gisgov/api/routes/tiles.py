"""Vector tiles: ``GET /tiles/{layer}/{z}/{x}/{y}.pbf`` (Mapbox Vector Tile, made by PostGIS ``ST_AsMVT``).

Which layers are tiled, with which properties and zooms: the ``tiles:`` section of the layer catalog
(:class:`gisgov.layers.Tiles`); the SQL: :mod:`gisgov.tiles.sql`. Each tile is read on the request's
own scoped connection (the ``DB`` dependency: row-level security applies) and holds the caller's area
only, like ``/api/layers/{level}``. The MVT layer inside the tile has the catalog layer's name.

Answers:

- 200 ``application/vnd.mapbox-vector-tile``; a tile with no feature (outside the data, outside the
  caller's area, below the layer's tile min zoom or above its max zoom) is a 200 with an EMPTY body
  (a valid tile with no layer; Leaflet.VectorGrid draws nothing for it);
- 400 for a tile that does not exist (z outside 0..22, x/y outside 0..2^z-1, not an integer);
- 404 for an unknown layer, a layer without tiles, a personal layer, a layer the account's role may
  not see (``min_role``: not found rather than forbidden, like objects outside the area), a plan
  outside the caller's area or that does not exist;
- 403 for ``?plan=`` without the permission to edit plans; 422 for malformed query parameters.

``Cache-Control: private, max-age=60`` and an ``ETag`` (hash of the layer, the tile, the query and the
bytes), so a page panning back and forth re-uses its tiles; ``If-None-Match`` answers 304.
Tiles that reach the layer's ``max_features`` carry ``X-Tile-Capped: 1``.

Drafts only when asked: the grid layer draws the current grids (the active plans, ``grid_current()``);
``?plan=<version>&community=<code>`` draws that stored plan's grids (planners: ``edit_plans``).

``/tiles/coverage/…?category=&profile=&circle=``: the buildings (as the building layer: scope, zooms,
cap) with ``distance_m``, the stored walking distance in metres to the nearest facility of the
category (``building_access``; absent when none is reachable), and with a circle ``budget_m`` (the
profile's distance for the circle) and ``within``.
"""

from __future__ import annotations

import hashlib
import re

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import Connection, text

from gisgov.api import queries
from gisgov.api.deps import DB, in_scope_or_404, require
from gisgov.errors import Forbidden, InvalidInput, NotFound
from gisgov.layers import Catalog, Layer, catalog
from gisgov.security.roles import Perm, Principal
from gisgov.tiles import COVERAGE, CoverageAsk, PlanRows, parse_tile, tile_bytes

router = APIRouter(tags=["tiles"])

MVT = "application/vnd.mapbox-vector-tile"
CACHE = "private, max-age=60"
MAX_VERSION = 2**31 - 1
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


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


def _plan(conn: Connection, p: Principal, layer: Layer, plan: int | None, community: str | None) -> PlanRows | None:
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
    plan_id = conn.execute(
        text("SELECT id FROM grid_plan WHERE community_code = :c AND version = :v"), {"c": community, "v": plan}
    ).scalar()
    if plan_id is None:
        raise NotFound(f"未找到方案 plan not found: {community} v{plan}")
    return PlanRows(int(plan_id))


def _coverage(conn: Connection, category: str | None, profile: str, circle: str | None) -> CoverageAsk:
    if category is None:
        raise InvalidInput("请选择服务类别 the coverage layer needs ?category=")
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
    return CoverageAsk(category=category, profile=profile, circle=circle)


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
def tile(
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
    conn: Connection = DB,
) -> Response:
    t = parse_tile(z, x, y)
    cat = catalog(request.app.state.settings.layers_dir)
    lyr = tiled_layer(cat, layer, p)
    cfg = lyr.tiles
    assert cfg is not None
    cov = None
    if layer == COVERAGE and lyr.name != COVERAGE:
        if plan is not None or community is not None:
            raise InvalidInput("覆盖图层不接受方案参数 plan= and community= apply to the grid layer only")
        cov = _coverage(conn, category, profile, circle)
    rows = _plan(conn, p, lyr, plan, community)
    body, capped = b"", False
    if lyr.tile_min_zoom <= t.z <= cfg.max_zoom:
        body, capped = tile_bytes(conn, cat, lyr, t, queries.Scope.of(p), name=layer, plan=rows, coverage=cov)
    tag = hashlib.blake2b(digest_size=12)
    for part in (layer, str(t), str(request.url.query), p.area_prefix):
        tag.update(part.encode() + b"\0")
    tag.update(body)
    etag = f'W/"{tag.hexdigest()}"'
    headers = {"Cache-Control": CACHE, "ETag": etag, "Vary": "Cookie, Authorization"}
    if capped:
        headers["X-Tile-Capped"] = "1"
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(content=body, media_type=MVT, headers=headers)
