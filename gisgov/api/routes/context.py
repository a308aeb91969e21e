"""Geographic context 地理底图要素: what every map draws under its own data so that it makes sense offline,
with no basemap: roads (arterials thicker, local roads from :data:`LOCAL_FROM_ZOOM` on, footpaths from
:data:`PATHS_FROM_ZOOM`), rivers and water,
and facilities (a layer the pages can switch on).

- ``GET /api/context?bbox=minlon,minlat,maxlon,maxlat&zoom=`` — the three layers in the box, clipped to
  it and simplified for the zoom (half a pixel), each capped (:data:`CAPS`; ``truncated`` says when a cap
  was hit). Roads and water are public geography (like the ``road`` layer of the catalog, ``scope_by: all``):
  every signed-in account reads them whole. Facilities follow the catalog's ``facility`` layer: only for
  accounts that may see that layer, and only those in the caller's area (its ``scope_by``). A box that is
  not four finite lon/lat numbers in order, or wider than :data:`MAX_SPAN` degrees, answers 400.
- ``GET /api/context/basemap`` — the configured basemap (:func:`gisgov.config.basemap_config`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import Connection, text

from gisgov.api import queries
from gisgov.api.deps import DB, current_principal
from gisgov.api.errors import ErrorBody
from gisgov.api.routes.core import get_catalog
from gisgov.api.schemas.context import BasemapConfig, ContextLayers
from gisgov.config import basemap_config
from gisgov.crs import GEOJSON_PRECISION
from gisgov.errors import GisgovError
from gisgov.security.roles import Principal

router = APIRouter()

MAX_SPAN = 2.0  # degrees, each axis: a city district at zoom 10; the pages never ask for more
LOCAL_FROM_ZOOM = 14  # below: arterials only
PATHS_FROM_ZOOM = 16  # footpaths from here on; compound gate links never (they belong to the walking network)
CAPS = {"roads": 4000, "water": 300, "facilities": 1500}  # source rows read per layer
_TAG: list[str | Enum] = ["context 地理底图"]


class InvalidBbox(GisgovError):
    status_code = 400


def context_bbox(value: str) -> tuple[float, float, float, float]:
    """``minlon,minlat,maxlon,maxlat`` (WGS84) or :class:`InvalidBbox`."""
    parts = value.split(",")
    try:
        box = tuple(float(x) for x in parts)
    except ValueError:
        box = ()
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise InvalidBbox(
            f"范围参数应为四个有限数 bbox must be 4 finite numbers minlon,minlat,maxlon,maxlat: {value[:80]!r}"
        )
    x0, y0, x1, y1 = box
    if not (-180 <= x0 < x1 <= 180 and -85 <= y0 < y1 <= 85):
        raise InvalidBbox(
            f"范围无效（经度 -180..180，纬度 -85..85，最小值小于最大值）bbox out of range or not ordered "
            f"(lon -180..180, lat -85..85, min < max): {value[:80]!r}"
        )
    if x1 - x0 > MAX_SPAN or y1 - y0 > MAX_SPAN:
        raise InvalidBbox(
            f"范围过大（每边最多 {MAX_SPAN}°）bbox too large (at most {MAX_SPAN} degrees a side): {value[:80]!r}"
        )
    return x0, y0, x1, y1


def _collection(rows: Iterable[Any]) -> tuple[dict[str, Any], int]:
    features = []
    n = 0
    for row in rows:
        n = row.n
        if row.gj is None:
            continue
        features.append({"type": "Feature", "geometry": json.loads(row.gj), "properties": json.loads(row.props)})
    return {"type": "FeatureCollection", "features": features}, n


_ENV = "ST_Transform(ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326), :srid)"

# roads: read up to the cap (arterials first), clip, then one line per class and name, simplified
_ROADS = f"""
WITH env AS (SELECT {_ENV} AS g),
src AS (
    SELECT r.class, coalesce(r.name, '') AS name, ST_ClipByBox2D(r.geom, env.g::box2d) AS geom
    FROM road_edge r, env
    WHERE r.geom && env.g AND r.class = ANY(:classes)
    ORDER BY (r.class = 'arterial') DESC, r.length_m DESC
    LIMIT :cap
),
merged AS (
    SELECT class, name, ST_Simplify(ST_LineMerge(ST_Collect(geom)), :tol) AS geom, count(*) AS k
    FROM src WHERE NOT ST_IsEmpty(geom) GROUP BY class, name
)
SELECT ST_AsGeoJSON(ST_Transform(geom, 4326), :prec) AS gj,
       json_build_object('class', class, 'name', nullif(name, ''))::text AS props,
       (SELECT count(*) FROM src) AS n
FROM merged WHERE geom IS NOT NULL AND NOT ST_IsEmpty(geom)
ORDER BY (class = 'arterial'), class
"""

_WATER = f"""
WITH env AS (SELECT {_ENV} AS g),
src AS (
    SELECT w.kind, w.name,
           ST_SimplifyPreserveTopology(ST_ClipByBox2D(w.geom, env.g::box2d), :tol) AS geom
    FROM barrier w, env
    WHERE w.kind IN ('river', 'water') AND w.geom && env.g
    ORDER BY ST_Area(w.geom) DESC
    LIMIT :cap
)
SELECT ST_AsGeoJSON(ST_Transform(geom, 4326), :prec) AS gj,
       json_build_object('kind', kind, 'name', name)::text AS props,
       (SELECT count(*) FROM src) AS n
FROM src WHERE geom IS NOT NULL AND NOT ST_IsEmpty(geom)
"""

_FACILITIES = """
WITH env AS (SELECT {env} AS g)
SELECT ST_AsGeoJSON(ST_Transform(t.geom, 4326), :prec) AS gj,
       json_build_object('code', t.code, 'name', t.name, 'category_code', t.category_code,
                         'category', c.name_zh, 'category_en', c.name_en, 'kind', t.kind)::text AS props,
       count(*) OVER () AS n
FROM facility t JOIN facility_category c ON c.code = t.category_code, env
WHERE t.geom && env.g {scope}
ORDER BY c.sort, t.code
LIMIT :cap
"""


def road_classes(zoom: int) -> list[str]:
    """The road classes drawn at ``zoom``."""
    if zoom < LOCAL_FROM_ZOOM:
        return ["arterial"]
    return ["arterial", "local", "bridge", "other"] + (["path"] if zoom >= PATHS_FROM_ZOOM else [])


def read_context(
    conn: Connection,
    box: tuple[float, float, float, float],
    zoom: int,
    *,
    srid: int | None = None,
    facility_scope: list[str] | None = None,
    scope: queries.Scope = queries.ALL,
) -> dict[str, Any]:
    """The context layers in ``box`` (see the module doc); ``facility_scope`` = SQL conditions on facility
    row ``t`` (None: no facilities); ``srid`` of the stored geometry (None: read from the database)."""
    if srid is None:
        srid = int(conn.execute(text("SELECT Find_SRID(current_schema()::varchar, 'road_edge', 'geom')")).scalar_one())
    x0, y0, x1, y1 = box
    tol = 0.5 * 360.0 / (256 * 2**zoom)  # half a pixel, in degrees (storage is lon/lat)
    base = {"x0": x0, "y0": y0, "x1": x1, "y1": y1, "srid": srid, "tol": tol, "prec": GEOJSON_PRECISION}
    arterials_only = zoom < LOCAL_FROM_ZOOM
    roads, n_roads = _collection(
        conn.execute(text(_ROADS), {**base, "cap": CAPS["roads"], "classes": road_classes(zoom)})
    )
    water, n_water = _collection(conn.execute(text(_WATER), {**base, "cap": CAPS["water"]}))
    truncated = n_roads >= CAPS["roads"] or n_water >= CAPS["water"]
    facilities = None
    if facility_scope is not None:
        cond = "".join(f" AND {c}" for c in facility_scope)
        sql = _FACILITIES.format(env=_ENV, scope=cond)
        facilities, n_fac = _collection(conn.execute(text(sql), {**base, **scope.params(), "cap": CAPS["facilities"]}))
        truncated = truncated or n_fac > CAPS["facilities"]
    return {
        "bbox": list(box),
        "zoom": zoom,
        "arterials_only": arterials_only,
        "roads": roads,
        "water": water,
        "facilities": facilities,
        "truncated": truncated,
    }


def zoom_for(box: tuple[float, float, float, float], pixels: int = 1100) -> int:
    """The zoom at which ``box`` about fills ``pixels`` (a static map's view), between 10 and 17."""
    span = max(box[2] - box[0], box[3] - box[1], 1e-6)
    return max(10, min(17, int(math.floor(math.log2(pixels * 360.0 / (256 * span))))))


def context_for_bounds(
    conn: Connection,
    bounds: Sequence[float] | Any,
    *,
    srid: int | None = None,
    facility_scope: list[str] | None = None,
    scope: queries.Scope = queries.ALL,
) -> dict[str, Any] | None:
    """The context of a static (folium) map showing ``bounds`` (minlon, minlat, maxlon, maxlat, e.g. a
    GeoDataFrame's total_bounds): the box padded by a tenth and cut to :data:`MAX_SPAN` around its centre,
    the zoom it fills. None when the bounds are empty or not finite."""
    try:
        x0, y0, x1, y1 = (float(v) for v in bounds)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 < x0 or y1 < y0:
        return None
    px, py = max((x1 - x0) * 0.1, 0.002), max((y1 - y0) * 0.1, 0.002)
    cx, cy, h = (x0 + x1) / 2, (y0 + y1) / 2, MAX_SPAN / 2 - 1e-6
    box = (
        max(x0 - px, cx - h, -180.0),
        max(y0 - py, cy - h, -85.0),
        min(x1 + px, cx + h, 180.0),
        min(y1 + py, cy + h, 85.0),
    )
    return read_context(conn, box, zoom_for((x0, y0, x1, y1)), srid=srid, facility_scope=facility_scope, scope=scope)


def facility_scope_for(request: Request, p: Principal) -> list[str] | None:
    """SQL conditions on facility row ``t`` for ``p`` (the catalog's facility layer), None if not visible."""
    facility = next((lyr for lyr in get_catalog(request).visible_for(p) if lyr.table == "facility"), None)
    return queries.scope_conditions(facility, queries.Scope.of(p), "t") if facility is not None else None


@router.get(
    "/api/context",
    tags=_TAG,
    summary="地理底图要素 Roads, water and facilities of a map view (clipped, simplified for the zoom)",
    response_model=ContextLayers,
    responses={400: {"model": ErrorBody, "description": "范围无效或过大 bbox malformed, out of range or too large"}},
)
def context_layers(
    request: Request,
    bbox: str = Query(
        ...,
        max_length=200,
        description=f"minlon,minlat,maxlon,maxlat in WGS84 degrees (min < max, at most {MAX_SPAN}° a side)",
        examples=["117.1,31.7,117.3,31.9"],
    ),
    zoom: int = Query(15, ge=0, le=22, description=f"map zoom: simplification, and local roads from {LOCAL_FROM_ZOOM}"),
    p: Principal = Depends(current_principal),
    conn: Connection = DB,
) -> dict[str, Any]:
    box = context_bbox(bbox)
    srid = request.app.state.settings.srid
    fac_scope = facility_scope_for(request, p)
    return read_context(conn, box, zoom, srid=srid, facility_scope=fac_scope, scope=queries.Scope.of(p))


@router.get(
    "/api/context/basemap",
    tags=_TAG,
    summary="底图配置 The configured basemap (kind, datum of the tiles, tile layers, attribution)",
    response_model=BasemapConfig,
)
def basemap(request: Request, p: Principal = Depends(current_principal)) -> dict[str, Any]:
    return basemap_config(request.app.state.settings)
