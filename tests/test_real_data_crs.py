"""Coordinate systems as districts send them (issue 11, item 6): Xi'an 80 / Beijing 54 refused without datum
parameters (PROJ would apply a null "ballpark" shift: tens to a hundred metres off, silently), accepted with
them; projected metres without a CRS named as such with the likely Gauss-Krüger zone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely
from ingest_helpers import COMM_A, gdf, load_city, snapshot
from pyproj import Transformer
from shapely.geometry import box
from sqlalchemy import create_engine, pool, text

from gisgov.crs import transformer
from gisgov.errors import InvalidInput
from gisgov.ingest.coords import CRSNeedsParameters, crs_from_file, parse_crs, projected_hint
from gisgov.ingest.loader import UsageError, load_file

LON, LAT = 117.2151, 31.8151  # inside COMM_A (Hefei)
# Local 7 parameters as a surveying office would give them (invented for the test; position vector, to WGS84).
TOWGS84 = "24.5,-130.4,-92.1,0.3,-0.2,0.8,1.2"
XIAN80_CM117 = "+proj=tmerc +lat_0=0 +lon_0=117 +k=1 +x_0=500000 +y_0=0 +ellps=IAU76 +units=m"


@pytest.fixture(scope="module")
def city(db_factory, tmp_path_factory):
    eng = create_engine(db_factory.create(), poolclass=pool.NullPool)
    load_city(eng, tmp_path_factory.mktemp("city"))
    yield eng
    eng.dispose()


def building_file(tmp_path, epsg: int, x: float, y: float, name="楼栋.gpkg", d=10.0):
    p = tmp_path / name
    gdf(
        [{"楼栋编码": f"{COMM_A}00077", "户数": 10, "geometry": box(x - d, y - d, x + d, y + d)}], crs=f"EPSG:{epsg}"
    ).to_file(p, driver="GPKG")
    return p


@pytest.mark.parametrize("code", [2385, 2384, 4610, 4214, 2401, 2433, 4555])
def test_legacy_datums_refused_without_parameters(code):
    with pytest.raises(CRSNeedsParameters) as e:
        parse_crs(f"EPSG:{code}")
    msg = str(e.value)
    assert "rule: crs_needs_parameters" in msg and "+towgs84=" in msg and "surveying office" in msg
    assert f"EPSG:{code}" in msg


def test_xian80_file_refused_not_shifted_silently(city, tmp_path):
    """Before: an EPSG:2384 (Xi'an 80, CM 117°E) GeoPackage loaded with exit 0 through PROJ's ballpark
    (null) datum shift."""
    x, y = Transformer.from_crs(XIAN80_CM117 + " +towgs84=" + TOWGS84, "EPSG:4326", always_xy=True).transform(
        LON, LAT, direction="INVERSE"
    )
    p = building_file(tmp_path, 2384, x, y)
    before = snapshot(city)
    with pytest.raises(UsageError) as e:
        load_file(p, "building", engine=city)
    assert "crs_needs_parameters" in str(e.value) and "Xi'an 1980" in str(e.value)
    assert snapshot(city) == before


def test_beijing54_shapefile_with_prj_refused(city, tmp_path):
    p = tmp_path / "bj54.shp"
    gdf([{"LDBM": f"{COMM_A}00078", "geometry": box(LON, LAT, LON + 1e-4, LAT + 1e-4)}], crs="EPSG:4214").to_file(
        p, driver="ESRI Shapefile", encoding="UTF-8"
    )
    assert p.with_suffix(".prj").exists()
    with pytest.raises(UsageError, match="crs_needs_parameters"):
        load_file(p, "building", engine=city)


def test_xian80_with_local_parameters_lands_where_they_say(city, tmp_path):
    """EPSG:2384 + the surveying office's 7 parameters: the building lands on the point those parameters
    put it, independently computed with a PROJ string; the ballpark shift would be tens of metres off."""
    tr = Transformer.from_crs(XIAN80_CM117 + " +towgs84=" + TOWGS84, "EPSG:4326", always_xy=True)
    x, y = tr.transform(LON, LAT, direction="INVERSE")
    p = building_file(tmp_path, 2384, x, y, d=0.5)
    rep = load_file(p, "building", engine=city, crs=f"EPSG:2384 +towgs84={TOWGS84}")
    assert rep.status == "loaded", [i.line() for i in rep.issues]
    assert any(i.rule == "crs_converted" and "towgs84" in i.value for i in rep.issues)
    with city.connect() as c:
        cx, cy = c.execute(
            text("SELECT ST_X(ST_Centroid(geom)), ST_Y(ST_Centroid(geom)) FROM building WHERE code = :c"),
            {"c": f"{COMM_A}00077"},
        ).one()
        c.execute(text("DELETE FROM building WHERE code = :c"), {"c": f"{COMM_A}00077"})
        c.commit()
    m = transformer(4490, 4548)
    ex, ey = m.transform(LON, LAT)
    gx, gy = m.transform(cx, cy)
    assert np.hypot(gx - ex, gy - ey) < 0.05  # centimetres (CGCS2000 taken equal to WGS84)
    ballpark = Transformer.from_crs("EPSG:2384", "EPSG:4490", always_xy=True).transform(x, y)
    bx, by = m.transform(*ballpark)
    assert np.hypot(bx - ex, by - ey) > 20  # what the silent shift would have done


def test_towgs84_forms(tmp_path):
    src = parse_crs(f"2385 +towgs84={TOWGS84}")
    assert src.definition and "towgs84" in src.label
    assert parse_crs(XIAN80_CM117 + " +towgs84=" + TOWGS84).definition
    with pytest.raises(CRSNeedsParameters):
        parse_crs(XIAN80_CM117)  # a PROJ string on the Xi'an 80 ellipsoid without parameters
    with pytest.raises(CRSNeedsParameters):
        parse_crs("EPSG:2385 +towgs84=0,0,0,0,0,0,0")  # zeros are the rough shift itself
    with pytest.raises(ValueError, match="3 or 7"):
        parse_crs("EPSG:2385 +towgs84=1,2")
    # a .prj carrying TOWGS84 is explicit too
    wkt = parse_crs(f"EPSG:2385 +towgs84={TOWGS84}").definition
    assert crs_from_file(wkt).definition
    # CGCS2000 zones are untouched
    assert parse_crs("EPSG:4549").epsg == 4549


def test_pipeline_to_cgcs2000_degrees():
    pipe = (
        f"+proj=pipeline +step +inv {XIAN80_CM117} +step +proj=push +v_3 +step +proj=cart +ellps=IAU76 "
        f"+step +proj=helmert +x=24.5 +y=-130.4 +z=-92.1 +rx=0.3 +ry=-0.2 +rz=0.8 +s=1.2 +convention=position_vector "
        "+step +inv +proj=cart +ellps=WGS84 +step +proj=pop +v_3 +step +proj=unitconvert +xy_in=rad +xy_out=deg"
    )
    from gisgov.ingest.coords import to_storage

    src = parse_crs(pipe)
    x, y = Transformer.from_crs(XIAN80_CM117 + " +towgs84=" + TOWGS84, "EPSG:4326", always_xy=True).transform(
        LON, LAT, direction="INVERSE"
    )
    [g] = to_storage(np.array([shapely.Point(x, y)], dtype=object), src, 4490)
    assert abs(g.x - LON) < 1e-6 and abs(g.y - LAT) < 1e-6


# --- projected metres without a CRS ---------------------------------------------------------------------


def _csv(tmp_path, x, y):
    p = tmp_path / "楼栋.csv"
    pd.DataFrame({"楼栋编码": [f"{COMM_A}00079"], "户数": [12], "经度": [x], "纬度": [y]}).to_csv(
        p, index=False, encoding="utf-8-sig"
    )
    return p


def test_metres_in_a_table_without_crs_named_with_the_zone(city, tmp_path):
    """Before: read as lon/lat (the table default) and only rejected as out of region, with no word of why."""
    x, y = transformer(4490, 4527).transform(LON, LAT)  # CGCS2000 3-degree zone 39, zone prefix in the easting
    with pytest.raises(InvalidInput) as e:
        load_file(_csv(tmp_path, x, y), "building", engine=city)
    msg = str(e.value)
    assert "projected metres" in msg and "--crs EPSG:4527" in msg and "crs_projected_metres" in msg
    rep = load_file(_csv(tmp_path, x, y), "building", engine=city, crs="EPSG:4527", dry_run=True)
    assert rep.status == "dry-run", [i.line() for i in rep.issues]


def test_metres_without_zone_prefix_name_the_cm_variants(city, tmp_path):
    x, y = transformer(4490, 4548).transform(LON, LAT)
    with pytest.raises(InvalidInput) as e:
        load_file(_csv(tmp_path, x, y), "building", engine=city)
    assert "EPSG:4534–4554" in str(e.value) and "EPSG:4548" in str(e.value)


@pytest.mark.parametrize(
    "xy,expect",
    [
        ((39_512_345.0, 3_521_000.0), "EPSG:4527"),
        ((40_412_345.0, 3_321_000.0), "EPSG:4528"),
        ((20_512_345.0, 3_521_000.0), "EPSG:4498"),
        ((512_345.0, 3_521_000.0), "EPSG:4534–4554"),
        ((117.2, 31.8), None),
        ((31.8, 117.2), None),  # swapped lon/lat: left to the region check
    ],
)
def test_projected_hint(xy, expect):
    hint = projected_hint(np.array([shapely.Point(*xy)], dtype=object))
    if expect is None:
        assert hint is None
    else:
        assert hint is not None and expect in hint and "projected metres" in hint and "crs_projected_metres" in hint


def test_shapefile_in_metres_without_prj_names_the_zone(city, tmp_path):
    x, y = transformer(4490, 4527).transform(117.2151, 31.8151)
    p = tmp_path / "楼栋.shp"
    gdf([{"LDBM": f"{COMM_A}00080", "geometry": box(x - 5, y - 5, x + 5, y + 5)}], crs=None).to_file(
        p, driver="ESRI Shapefile", encoding="UTF-8"
    )
    p.with_suffix(".prj").unlink(missing_ok=True)
    with pytest.raises(UsageError, match="EPSG:4527"):
        load_file(p, "building", engine=city)
