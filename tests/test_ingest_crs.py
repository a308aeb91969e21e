"""Coordinate handling: GCJ-02 / BD-09 round trips ≤ 1 m, axis order of EPSG:4490, CRS parsing."""

from __future__ import annotations

import numpy as np
import prcoords
import pytest
import shapely

from gisgov.ingest import gcj02
from gisgov.ingest.coords import SourceCRS, parse_crs, to_storage


@pytest.fixture(scope="module")
def china_points():
    rng = np.random.default_rng(2026)
    return rng.uniform(74.0, 134.0, 20000), rng.uniform(19.0, 53.0, 20000)


def test_gcj02_forward_matches_an_independent_implementation(china_points):
    lon, lat = china_points
    glon, glat = gcj02.wgs84_to_gcj02(lon[:500], lat[:500])
    ref = np.array([prcoords.wgs_gcj((la, lo), False) for lo, la in zip(lon[:500], lat[:500], strict=False)])
    assert gcj02.offset_m(glon, glat, ref[:, 1], ref[:, 0]).max() < 0.01


def test_gcj02_round_trip_within_a_metre(china_points):
    lon, lat = china_points
    glon, glat = gcj02.wgs84_to_gcj02(lon, lat)
    off = gcj02.offset_m(lon, lat, glon, glat)
    assert off.max() < 710 and np.median(off) > 100  # the offset being undone is real
    wlon, wlat = gcj02.gcj02_to_wgs84(glon, glat)
    assert gcj02.offset_m(lon, lat, wlon, wlat).max() < 1.0
    assert gcj02.offset_m(lon, lat, wlon, wlat).max() < 0.001  # in fact sub-millimetre


def test_bd09_round_trip_within_a_metre(china_points):
    lon, lat = china_points
    blon, blat = gcj02.wgs84_to_bd09(lon, lat)
    wlon, wlat = gcj02.bd09_to_wgs84(blon, blat)
    assert gcj02.offset_m(lon, lat, wlon, wlat).max() < 1.0
    ref = np.array([prcoords.wgs_bd((la, lo), False) for lo, la in zip(lon[:200], lat[:200], strict=False)])
    assert gcj02.offset_m(blon[:200], blat[:200], ref[:, 1], ref[:, 0]).max() < 0.01


def test_geometries_from_gcj02_and_4490_axis_order():
    lon, lat = 117.2272, 31.8206  # Hefei
    glon, glat = gcj02.wgs84_to_gcj02(np.array([lon]), np.array([lat]))
    g = to_storage(np.array([shapely.Point(glon[0], glat[0])], dtype=object), parse_crs("gcj02"), 4490)[0]
    assert gcj02.offset_m(lon, lat, g.x, g.y) < 1.0
    # EPSG:4490 is latitude-first by definition, but gisgov keeps x = lon, y = lat throughout
    same = to_storage(np.array([shapely.Point(lon, lat)], dtype=object), SourceCRS(epsg=4326), 4490)[0]
    assert abs(same.x - lon) < 1e-6 and abs(same.y - lat) < 1e-6


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("4490", SourceCRS(4490)),
        ("EPSG:4549", SourceCRS(4549)),
        ("GCJ02", SourceCRS(offset="GCJ-02")),
        ("bd09", SourceCRS(offset="BD-09")),
        ("wgs84", SourceCRS(4326)),
        (None, None),
    ],
)
def test_parse_crs(spec, expected):
    assert parse_crs(spec) == expected


def test_parse_crs_rejects_nonsense():
    with pytest.raises(ValueError, match="unknown CRS"):
        parse_crs("EPSG:999999")
