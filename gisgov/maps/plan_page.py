"""The map page of a stored grid plan (网格方案地图): the one function behind the API's
``GET /grids/map/{community}`` and ``gisgov grids map``.

The plan is read and checked (:func:`gisgov.gridding.service.stored_plan_geojson`), ``view`` may
narrow what the page shows (the API leaves out special-group counts for roles that may not read them),
and the page is built by :func:`gisgov.maps.grid_plan_map.plan_map` with the geographic context of the plan's
extent (roads, water) and a page title (local assets only).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Connection


def plan_map_title(community: str) -> str:
    return f"社区 {community} 网格方案 Grid plan"


def plan_map_page(
    conn: Connection,
    community: str,
    version: int | None = None,
    *,
    view: Callable[[dict[str, Any]], Any] | None = None,
) -> str:
    """HTML of the map of a stored plan (``version`` None: the active plan), grids coloured by households
    against the community's rules, rule breaks highlighted."""
    from gisgov.api.routes.context import context_for_bounds
    from gisgov.config import basemap_config, get_settings
    from gisgov.gridding import service
    from gisgov.gridding.io import community_rules
    from gisgov.maps.grid_plan_map import plan_map
    from gisgov.maps.offline import add_context, finish_page, render_html

    fc: dict[str, Any] = dict(service.stored_plan_geojson(conn, community, version))
    if view is not None:
        fc = view(fc)
    title = plan_map_title(community)
    m = plan_map(fc, community_rules(conn, community), title=title)
    add_context(m, context_for_bounds(conn, _bounds(fc)))
    # the context pane sits under the overlays whatever the order; the layer control lists it first
    return render_html(finish_page(m, f"{title} — gisgov", basemap_config(get_settings())))


def _bounds(fc: dict[str, Any]) -> list[float] | None:
    """minlon, minlat, maxlon, maxlat of a FeatureCollection's coordinates (None when it has none)."""
    xs: list[float] = []
    ys: list[float] = []

    def walk(c: Any) -> None:
        if isinstance(c, list | tuple) and c and isinstance(c[0], int | float):
            xs.append(float(c[0]))
            ys.append(float(c[1]))
        elif isinstance(c, list | tuple):
            for x in c:
                walk(x)

    for f in fc.get("features") or []:
        walk((f.get("geometry") or {}).get("coordinates") or [])
    return [min(xs), min(ys), max(xs), max(ys)] if xs else None
