"""OSM import, parse step alone: the real Helsinki extract shipped inside pyrosm becomes plain frames
and arrays without any database (the write step is tested through load_osm in test_osm_import)."""

from __future__ import annotations

import pyrosm
import pytest
import shapely

from gisgov.crs import CGCS2000, WGS84
from gisgov.ingest.osm import check_extent, parse_osm, read_osm
from gisgov.ingest.report import Report

PBF = pyrosm.get_data("helsinki_pbf")


@pytest.fixture(scope="module")
def data():
    return read_osm(PBF)


@pytest.mark.parametrize("srid", [WGS84, CGCS2000])
def test_parse_without_a_database(data, srid):
    report = Report("Helsinki.osm.pbf", "osm", dry_run=True)
    city = parse_osm(data, srid, report)
    assert len(city.roads) == 2469
    assert len(city.net.geoms) == len(city.edge_attrs) == len(city.walk) == 4689
    assert int(city.walk.sum()) == 4567 and 0.9 < city.share <= 1
    assert len(city.buildings) == len(city.b_shape) == len(city.b_pos) == 483
    assert shapely.is_valid(city.b_shape).all()
    assert len(city.facilities) == 601 and city.facilities["code"].str.match(r"^osm:[nwr]\d+$").all()
    # every building pyrosm returned is either kept or reported (repaired ones are kept and reported)
    skipped = [i for i in report.issues if i.rule == "osm_skipped"]
    assert len(city.b_ids) == len(city.buildings) + len([i for i in skipped if i.value != "poi"])
    assert report.ok  # parsing alone rejects nothing
    minx, miny, maxx, maxy = check_extent(city, None, report)
    assert 24.9 < minx < maxx < 25.0 and 60.1 < miny < maxy < 60.2


def test_extent_outside_the_region_is_rejected(data):
    report = Report("Helsinki.osm.pbf", "osm", dry_run=True)
    city = parse_osm(data, WGS84, report)
    assert check_extent(city, (73.5, 18.0, 135.1, 53.6), report) is None
    assert report.status == "rejected" and [i.rule for i in report.rejected] == ["outside_region"]
