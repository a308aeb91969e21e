"""Coordinate reference systems: storage, metric zones, axis order.

Keep (lon, lat) everywhere in code: every transformer here is built with ``always_xy=True``
(EPSG:4490 and EPSG:4326 are latitude-first by definition).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from pyproj import CRS, Transformer

CGCS2000 = 4490
WGS84 = 4326

# Decimal places of lon/lat in GeoJSON answers: 1e-7° ≈ 1.1 cm (latitude; less in longitude), the
# same 1 cm grid the gridding overlays snap to, so a boundary sent to a page and back stays exact
# to the centimetre (6 places ≈ 11 cm would open slivers between neighbouring grids).
GEOJSON_PRECISION = 7


def metric_epsg(lon: float, lat: float) -> int:
    """EPSG code of a projected metric CRS for a place.

    Inside China: the CGCS2000 3-degree Gauss-Krüger zone without zone prefix (EPSG:4534 = CM 75°E
    … EPSG:4554 = CM 135°E). Elsewhere: the WGS84 UTM zone. Mirrors SQL ``gisgov_metric_srid``.
    """
    if 73.5 <= lon <= 136.5 and 0 <= lat <= 56:
        cm = round(lon / 3) * 3
        return 4534 + int((cm - 75) // 3)
    zone = min(60, int(np.floor((lon + 180) / 6)) + 1)
    return (32600 if lat >= 0 else 32700) + zone


def metric_epsg_for_bounds(bounds: tuple[float, float, float, float]) -> int:
    """Metric CRS for a lon/lat bounding box (its centre decides)."""
    minx, miny, maxx, maxy = bounds
    return metric_epsg((minx + maxx) / 2, (miny + maxy) / 2)


@lru_cache(maxsize=64)
def transformer(src: int | str, dst: int | str) -> Transformer:
    return Transformer.from_crs(CRS.from_user_input(src), CRS.from_user_input(dst), always_xy=True)
