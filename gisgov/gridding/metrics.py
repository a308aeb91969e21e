"""Compactness of grid polygons (metric CRS): Polsby–Popper 4πA/P² and Reock A / area of the
minimum bounding circle. Both are 1 for a disc and fall towards 0 for stretched shapes."""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely


def polsby_popper(geoms: Any) -> np.ndarray:
    g = np.asarray(geoms, dtype=object)
    a = shapely.area(g)
    p = shapely.length(shapely.boundary(g))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, 4 * np.pi * a / p**2, 0.0)


def reock(geoms: Any) -> np.ndarray:
    g = np.asarray(geoms, dtype=object)
    a = shapely.area(g)
    r = shapely.minimum_bounding_radius(g)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r > 0, a / (np.pi * r**2), 0.0)
