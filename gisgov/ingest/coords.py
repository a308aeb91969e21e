"""Label and convert incoming coordinates to the storage CRS (settings ``srid``, lon/lat order).

Accepted source CRS: any EPSG code pyproj knows — in practice EPSG:4490 (CGCS2000), 4326 (WGS84),
the projected CGCS2000 Gauss-Krüger zones 4513–4554 — plus ``gcj02`` (AMap/Tencent) and ``bd09``
(Baidu), converted through :mod:`gisgov.ingest.gcj02` to WGS84 first.

Axis order: EPSG:4490 and 4326 are latitude-first *by definition*, but GDAL (and so pyogrio) hands
coordinates over in the traditional GIS order (x = lon, y = lat), and every transformer here is
built with ``always_xy=True``. Coordinates that still arrive swapped (a file that wrote lat,lon
into x,y) are caught by the region check in :mod:`gisgov.ingest.validate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from pyproj import CRS

from gisgov.crs import CGCS2000, WGS84, transformer
from gisgov.ingest import gcj02

_CHINA_OFFSETS = {
    "gcj02": "GCJ-02",
    "gcj-02": "GCJ-02",
    "amap": "GCJ-02",
    "tencent": "GCJ-02",
    "bd09": "BD-09",
    "bd-09": "BD-09",
    "baidu": "BD-09",
}


@dataclass(frozen=True)
class SourceCRS:
    """Where coordinates come from: an EPSG code or an offset system (GCJ-02 / BD-09)."""

    epsg: int | None = None
    offset: str | None = None  # "GCJ-02" | "BD-09"

    @property
    def label(self) -> str:
        return self.offset or f"EPSG:{self.epsg}"

    @property
    def is_geographic(self) -> bool:
        return self.offset is not None or CRS.from_epsg(self.epsg).is_geographic


def parse_crs(spec: str | int | None) -> SourceCRS | None:
    """``4490``, ``EPSG:4549``, ``gcj02``, ``bd09`` → :class:`SourceCRS` (None for None/empty)."""
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    if isinstance(spec, int):
        return _epsg(spec)
    s = spec.strip().lower()
    if s in _CHINA_OFFSETS:
        return SourceCRS(offset=_CHINA_OFFSETS[s])
    if s in ("wgs84", "wgs-84"):
        return SourceCRS(epsg=WGS84)
    if s in ("cgcs2000",):
        return SourceCRS(epsg=CGCS2000)
    if s.startswith("epsg:"):
        s = s[5:]
    if not s.isdigit():
        raise ValueError(f"未知坐标系 unknown CRS {spec!r}: give an EPSG code (4490, 4326, 4513–4554 …), gcj02 or bd09")
    return _epsg(int(s))


def _epsg(code: int) -> SourceCRS:
    try:
        CRS.from_epsg(code)
    except Exception:
        raise ValueError(f"未知坐标系 unknown CRS EPSG:{code}") from None
    return SourceCRS(epsg=code)


def crs_from_file(crs) -> SourceCRS | None:
    """The CRS a reader reported (WKT/PROJJSON/'EPSG:x'), as a SourceCRS; None if unknown."""
    if crs is None:
        return None
    c = CRS.from_user_input(crs)
    code = c.to_epsg(min_confidence=70)
    if code is None:
        raise ValueError(f"文件坐标系无法识别 the file's CRS has no EPSG code ({c.name}); pass --crs EPSG")
    return SourceCRS(epsg=code)


def _xy_fn(src: SourceCRS, srid: int):
    if src.offset == "GCJ-02":
        first = gcj02.gcj02_to_wgs84
    elif src.offset == "BD-09":
        first = gcj02.bd09_to_wgs84
    else:
        first = None
    mid = WGS84 if first is not None else src.epsg
    tr = None if mid == srid else transformer(mid, srid)

    def fn(xy: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0], xy[:, 1]
        if first is not None:
            x, y = first(x, y)
        if tr is not None:
            x, y = tr.transform(x, y)
        return np.column_stack([x, y])

    return fn


def to_storage(geoms: np.ndarray, src: SourceCRS, srid: int) -> np.ndarray:
    """Geometries converted from ``src`` to lon/lat in ``srid`` (None stays None)."""
    geoms = np.asarray(geoms, dtype=object)
    if src.offset is None and src.epsg == srid:
        return geoms
    return shapely.transform(geoms, _xy_fn(src, srid))
