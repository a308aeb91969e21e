"""Query-parameter parsing shared by the routes (pure; errors are :class:`InvalidInput` → 422)."""

from __future__ import annotations

import math

from fastapi import Request

from gisgov.errors import InvalidInput

BBox = tuple[float, float, float, float]


def parse_bbox(value: str | None) -> BBox | None:
    """``minx,miny,maxx,maxy`` in WGS84 lon/lat degrees (the GeoJSON / OGC API axis order)."""
    if value is None or value.strip() == "":
        return None
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 4:
        raise InvalidInput(
            f"bbox 参数应为4个数 bbox must be 4 numbers minx,miny,maxx,maxy (lon/lat WGS84), got {len(parts)}: {value!r}"
        )
    try:
        minx, miny, maxx, maxy = (float(p) for p in parts)
    except ValueError:
        raise InvalidInput(f"bbox 参数含非数字 bbox values must be numbers (lon/lat WGS84): {value!r}") from None
    if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)):
        raise InvalidInput(f"bbox 参数须为有限数 bbox values must be finite: {value!r}")
    if not (-180 <= minx <= 180 and -180 <= maxx <= 180):
        raise InvalidInput(f"bbox 经度超出范围 bbox longitude out of range [-180, 180]: {value!r}")
    if not (-90 <= miny <= 90 and -90 <= maxy <= 90):
        raise InvalidInput(
            f"bbox 纬度超出范围 bbox latitude out of range [-90, 90] (order is lon,lat,lon,lat): {value!r}"
        )
    if minx > maxx or miny > maxy:
        raise InvalidInput(f"bbox 最小值大于最大值 bbox min greater than max (minx<=maxx, miny<=maxy): {value!r}")
    return (minx, miny, maxx, maxy)


#: the largest ``offset`` a page may start at (PostgreSQL's OFFSET is a bigint; no real layer comes near)
MAX_OFFSET = 10_000_000


def check_page(
    limit: int | None, offset: int, *, default: int, maximum: int, max_offset: int = MAX_OFFSET
) -> tuple[int, int]:
    """Validated (limit, offset): limit in 1..maximum (default when None), offset in 0..max_offset."""
    limit = default if limit is None else limit
    if limit < 1 or limit > maximum:
        raise InvalidInput(f"limit 超出范围 limit must be between 1 and {maximum} (GISGOV_MAX_PAGE_LIMIT), got {limit}")
    if offset < 0:
        raise InvalidInput(f"offset 不能为负 offset must be >= 0, got {offset}")
    if offset > max_offset:
        raise InvalidInput(f"offset 超出范围 offset must be at most {max_offset}, got {offset}")
    return min(limit, maximum), offset


def _query_names(dependant) -> set[str]:
    names = {q.alias or q.name for q in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def strict_query(request: Request) -> None:
    """Dependency: a query parameter the route does not declare answers 422 naming it, instead of being
    ignored (a misspelt filter must not silently widen a result, e.g. of the audit log)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    unknown = sorted(set(request.query_params) - _query_names(dependant))
    if unknown:
        raise InvalidInput(
            f"未知查询参数 unknown query parameter(s): {', '.join(repr(u) for u in unknown[:5])}; "
            f"known: {', '.join(sorted(_query_names(dependant)))}"
        )
