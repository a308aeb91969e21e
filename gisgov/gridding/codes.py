"""Grid codes: community code (12) + 3-digit sequence numbered west→east, north→south
(DB11/T 2157-2023 reading order: rows from north to south, each row from west to east)."""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely

from gisgov.errors import InvalidInput


def reading_order(polygons: list[Any]) -> list[int]:
    """Indices of ``polygons`` (metric) in reading order. A row gathers the grids whose centre lies
    within half a typical grid height below the northernmost remaining one; ties broken by x, then index."""
    k = len(polygons)
    if k == 0:
        return []
    pts = np.array(
        [
            shapely.get_coordinates(shapely.point_on_surface(p))[0] if not p.is_empty else (np.inf, -np.inf)
            for p in polygons
        ]
    )
    areas = np.array([p.area for p in polygons])
    typical = float(np.sqrt(np.median(areas[areas > 0]))) if (areas > 0).any() else 1.0
    band = 0.5 * typical
    left = sorted(range(k), key=lambda i: (-pts[i, 1], pts[i, 0], i))
    out: list[int] = []
    while left:
        top = pts[left[0], 1]
        row = [i for i in left if pts[i, 1] >= top - band]
        row.sort(key=lambda i: (pts[i, 0], -pts[i, 1], i))
        out.extend(row)
        taken = set(row)
        left = [i for i in left if i not in taken]
    return out


def number(community_code: str, polygons: list[Any]) -> list[str]:
    """The code of each polygon (same order as given)."""
    if len(polygons) > 999:
        raise InvalidInput(
            f"网格数超过三位序号上限 community {community_code}: {len(polygons)} grids exceed the 3-digit sequence (999)"
        )
    codes = [""] * len(polygons)
    for seq, i in enumerate(reading_order(polygons), 1):
        codes[i] = f"{community_code}{seq:03d}"
    return codes
