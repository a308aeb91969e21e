"""The map page of a stored grid plan (网格方案地图): the one function behind the API's
``GET /grids/map/{community}`` and ``gisgov grids map``.

The plan is read and checked (:func:`gisgov.gridding.service.stored_plan_geojson`), ``view`` may
narrow what the page shows (the API leaves out special-group counts for roles that may not read them),
and the page is rendered by :func:`gisgov.maps.grid_plan_map.plan_map_html` (local assets only).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Connection


def plan_map_title(community: str) -> str:
    return f"社区 {community} 网格方案"


def plan_map_page(
    conn: Connection,
    community: str,
    version: int | None = None,
    *,
    view: Callable[[dict[str, Any]], Any] | None = None,
) -> str:
    """HTML of the map of a stored plan (``version`` None: the active plan), grids coloured by households
    against the community's rules, rule breaks highlighted."""
    from gisgov.gridding import service
    from gisgov.gridding.io import community_rules
    from gisgov.maps.grid_plan_map import plan_map_html

    fc: dict[str, Any] = dict(service.stored_plan_geojson(conn, community, version))
    if view is not None:
        fc = view(fc)
    return plan_map_html(fc, community_rules(conn, community), title=plan_map_title(community))
