"""GCJ-02 (火星坐标, AMap/Tencent) and BD-09 (Baidu) ↔ WGS84, vectorised.

The forward transforms (WGS84 → GCJ-02 → BD-09) are the published algorithm as implemented by
the maintained ``coordTransform`` package (C extension, batch calls). The library's inverse is the
one-step approximation (error up to ~2 m); gisgov inverts by fixed-point iteration on the forward
transform instead (Caijun 2014, as PRCoords does), which converges to < 1 mm in a few steps, so a
WGS84 → GCJ-02 → WGS84 round trip is exact to well under the 1 m the import rules demand
(tests/test_ingest_crs.py). Outside China the forward transform is the identity, as in the
library.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

_TOL_DEG = 1e-10  # ~0.01 mm
_MAX_ITER = 30


@lru_cache(maxsize=1)
def _lib():
    """The coordTransform functions (PyPI ``coordtransform``), imported on first use."""
    import coordTransform

    return coordTransform


def _call(fn, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lon = np.ascontiguousarray(lon, dtype=np.float64)
    lat = np.ascontiguousarray(lat, dtype=np.float64)
    if lon.size == 0:
        return lon.copy(), lat.copy()
    x, y = getattr(_lib(), fn)(lon, lat)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def wgs84_to_gcj02(lon, lat):
    return _call("wgs84_to_gcj02", np.asarray(lon), np.asarray(lat))


def gcj02_to_bd09(lon, lat):
    return _call("gcj02_to_bd09", np.asarray(lon), np.asarray(lat))


def wgs84_to_bd09(lon, lat):
    return gcj02_to_bd09(*wgs84_to_gcj02(lon, lat))


def _invert(forward, lon, lat, start):
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    x, y = start
    for _ in range(_MAX_ITER):
        fx, fy = forward(x, y)
        dx, dy = fx - lon, fy - lat
        x, y = x - dx, y - dy
        if np.all(np.abs(dx) < _TOL_DEG) and np.all(np.abs(dy) < _TOL_DEG):
            break
    return x, y


def gcj02_to_wgs84(lon, lat):
    """Exact inverse of :func:`wgs84_to_gcj02` (iterated)."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    fx, fy = wgs84_to_gcj02(lon, lat)
    return _invert(wgs84_to_gcj02, lon, lat, (2 * lon - fx, 2 * lat - fy))


def bd09_to_gcj02(lon, lat):
    """Inverse of :func:`gcj02_to_bd09` (library approximation, then iterated)."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    return _invert(gcj02_to_bd09, lon, lat, _call("bd09_to_gcj02", lon, lat))


def bd09_to_wgs84(lon, lat):
    return gcj02_to_wgs84(*bd09_to_gcj02(lon, lat))


def offset_m(lon, lat, lon2, lat2) -> np.ndarray:
    """Great-circle distance in metres between two coordinate arrays (haversine)."""
    r = 6371008.8
    p1, p2 = np.radians(lat), np.radians(lat2)
    dphi, dl = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon))
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * r * np.arcsin(np.sqrt(a))
