"""`gisgov load` on real files made here: encodings, CRS, validation rules, all-or-nothing, repair."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from ingest_helpers import (
    COMM_A,
    COMM_A_BOX,
    COMM_B,
    bowtie,
    gdf,
    load_city,
    snapshot,
    write_gbk_communities,
    write_streets,
)
from shapely.geometry import Point, box
from sqlalchemy import create_engine, pool, text

from gisgov.ingest.loader import UsageError, load_file


@pytest.fixture(scope="module")
def city(db_factory, tmp_path_factory):
    """A fresh database with a street and two communities loaded from files."""
    url = db_factory.create()
    eng = create_engine(url, poolclass=pool.NullPool)
    load_city(eng, tmp_path_factory.mktemp("city"))
    yield eng
    eng.dispose()


@pytest.fixture
def fresh(db_factory):
    eng = create_engine(db_factory.create(), poolclass=pool.NullPool)
    yield eng
    eng.dispose()


def rules(rep, action="rejected"):
    return [(i.record, i.rule) for i in rep.issues if i.action == action]


@pytest.mark.parametrize("cpg", [True, False], ids=["cpg", "sniffed"])
def test_gbk_shapefile_chinese_names(fresh, tmp_path, cpg):
    assert load_file(write_streets(tmp_path), "street", engine=fresh).status == "loaded"
    shp = write_gbk_communities(tmp_path, cpg=cpg)
    raw = shp.with_suffix(".dbf").read_bytes()
    assert "东园社区".encode("gbk") in raw and "东园社区".encode() not in raw  # really GBK on disk
    rep = load_file(shp, "community", engine=fresh)
    assert rep.status == "loaded", [i.line() for i in rep.issues]
    assert any("gb18030" in i.value for i in rep.issues if i.rule == "read")
    with fresh.connect() as c:
        rows = c.execute(text("SELECT code, name, class FROM community ORDER BY code")).all()
    assert rows == [(COMM_A, "东园社区", "城市社区"), (COMM_B, "西湖社区", "撤村建居")]


def test_geopackage_bowtie_rejected_then_repaired(city, tmp_path):
    p = tmp_path / "小区.gpkg"
    gdf(
        [
            {
                "小区编码": f"{COMM_A}0001",
                "小区名称": "梧桐苑",
                "建成年代": "1995年",
                "geometry": box(117.202, 31.805, 117.206, 31.809),
            },
            {
                "小区编码": f"{COMM_A}0002",
                "小区名称": "蝴蝶苑",
                "建成年代": "2003",
                "geometry": bowtie(117.210, 31.810, 0.004),
            },
        ]
    ).to_file(p, driver="GPKG", layer="compound")
    before = snapshot(city)
    rep = load_file(p, "compound", engine=city)
    assert rep.status == "rejected"
    bad = rep.rejected
    assert len(bad) == 1 and bad[0].rule == "geom_invalid" and "fid 2" in bad[0].record
    assert f"{COMM_A}0002" in bad[0].record and "Self-intersection" in bad[0].value
    assert bad[0].file == "小区.gpkg"
    assert snapshot(city) == before  # nothing written, not even the valid compound

    rep = load_file(p, "compound", engine=city, repair=True)
    assert rep.status == "loaded", [i.line() for i in rep.issues]
    assert [i.rule for i in rep.repaired] == ["geom_invalid"]
    with city.connect() as c:
        n_parts, valid, year = c.execute(
            text("SELECT ST_NumGeometries(geom), ST_IsValid(geom), year_built FROM compound WHERE code = :c"),
            {"c": f"{COMM_A}0002"},
        ).one()
        assert (n_parts, valid, year) == (2, True, 2003)
        assert (
            c.execute(text("SELECT year_built FROM compound WHERE code = :c"), {"c": f"{COMM_A}0001"}).scalar() == 1995
        )
        c.execute(text("DELETE FROM compound WHERE code LIKE :p"), {"p": f"{COMM_A}000%"})
        c.commit()


def test_geojson_swapped_lonlat(city, tmp_path):
    p = tmp_path / "楼栋.geojson"
    good = box(117.2030, 31.8050, 117.2035, 31.8055)
    swapped = shapely.transform(box(117.2040, 31.8050, 117.2045, 31.8055), lambda xy: xy[:, ::-1])
    gdf(
        [
            {"楼栋编码": f"{COMM_A}00001", "层数": "6层", "户数": 24, "geometry": good},
            {"楼栋编码": f"{COMM_A}00002", "层数": 6, "geometry": swapped},
        ]
    ).to_file(p, driver="GeoJSON")
    before = snapshot(city)
    rep = load_file(p, "building", engine=city)
    assert rep.status == "rejected"
    assert rules(rep) == [(f"fid 1 (编码 {COMM_A}00002)", "axis_swapped")]
    assert snapshot(city) == before
    rep = load_file(p, "building", engine=city, repair=True)
    assert rep.status == "loaded", [i.line() for i in rep.issues]
    with city.connect() as c:
        x, y, hh, est, fl = c.execute(
            text("SELECT ST_X(pos), ST_Y(pos), households, households_estimated, floors FROM building WHERE code = :c"),
            {"c": f"{COMM_A}00002"},
        ).one()
        assert 117.2040 < x < 117.2045 and 31.8050 < y < 31.8055
        # no household count in the file: estimated from footprint × floors ÷ 95 m², and flagged
        area = c.execute(
            text("SELECT gisgov_area_m2(geom) FROM building WHERE code = :c"), {"c": f"{COMM_A}00002"}
        ).scalar()
        assert est is True and fl == 6 and hh == round(area * 6 / 95.0)
        assert c.execute(
            text("SELECT households, households_estimated FROM building WHERE code = :c"), {"c": f"{COMM_A}00001"}
        ).one() == (24, False)
        c.execute(text("DELETE FROM building WHERE code LIKE :p"), {"p": f"{COMM_A}0000%"})
        c.commit()


def test_gcj02_points_converted_within_a_metre(city, tmp_path):
    from gisgov.ingest import gcj02

    rng = np.random.default_rng(7)
    lon = rng.uniform(117.201, 117.219, 25)
    lat = rng.uniform(31.801, 31.829, 25)
    glon, glat = gcj02.wgs84_to_gcj02(lon, lat)
    offs = gcj02.offset_m(lon, lat, glon, glat)
    assert (offs > 100).all() and (offs < 700).all()  # AMap data really are offset by hundreds of metres
    p = tmp_path / "设施_高德.csv"
    import pandas as pd

    pd.DataFrame(
        {"设施名称": [f"便民点{i}" for i in range(25)], "类别": "商业服务", "经度": glon, "纬度": glat}
    ).to_csv(p, index=False, encoding="utf-8-sig")
    rep = load_file(p, "facility", engine=city, crs="gcj02")
    assert rep.status == "loaded", [i.line() for i in rep.issues]
    with city.connect() as c:
        got = c.execute(
            text("SELECT name, ST_X(geom), ST_Y(geom), community_code FROM facility WHERE name LIKE '便民点%'")
        ).all()
        got = {r[0]: r[1:] for r in got}
        err = [gcj02.offset_m(lon[i], lat[i], got[f"便民点{i}"][0], got[f"便民点{i}"][1]) for i in range(25)]
        assert max(err) < 1.0
        assert {v[2] for v in got.values()} == {COMM_A}  # parent found spatially
        c.execute(text("DELETE FROM facility WHERE name LIKE '便民点%'"))
        c.commit()


def test_codes_parents_and_region_rules(city, tmp_path):
    p = tmp_path / "小区规则.geojson"
    out_of_comm = box(117.225, 31.805, 117.227, 31.807)  # inside community B, coded under A
    gdf(
        [
            {"code": f"{COMM_A}0011", "name": "甲", "geometry": box(117.201, 31.801, 117.202, 31.802)},
            {"code": f"{COMM_A}0011", "name": "甲重复", "geometry": box(117.203, 31.801, 117.204, 31.802)},
            {"code": "3401040019990001", "name": "未知社区", "geometry": box(117.205, 31.801, 117.206, 31.802)},
            {"code": f"{COMM_A}0012", "name": "越界", "geometry": out_of_comm},
            {"code": "12345", "name": "短码", "geometry": box(117.207, 31.801, 117.208, 31.802)},
            {"code": f"{COMM_A}0013", "name": "海外", "geometry": box(2.30, 48.80, 2.31, 48.81)},
            {"code": f"{COMM_A}0014", "name": None, "geometry": box(117.209, 31.801, 117.2095, 31.8015)},
        ]
    ).to_file(p, driver="GeoJSON")
    before = snapshot(city)
    rep = load_file(p, "compound", engine=city)
    assert rep.status == "rejected"
    got = {(r.split(" ")[1], rule) for r, rule in rules(rep)}
    assert got == {
        ("1", "code_duplicate"),
        ("2", "parent_unknown"),
        ("3", "outside_parent"),
        ("4", "code_format"),
        ("5", "outside_region"),
        ("6", "required"),
    }
    dup = next(i for i in rep.rejected if i.rule == "code_duplicate")
    assert "fid 0" in dup.message and dup.value == f"{COMM_A}0011"
    assert snapshot(city) == before


def test_unclosed_ring_and_empty_geometry(city, tmp_path):
    p = tmp_path / "网格.geojson"
    fc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"网格编码": f"{COMM_A}001", "网格名称": "一网格"},
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[117.20, 31.80], [117.21, 31.80], [117.21, 31.83], [117.20, 31.83]]],
                },
            },
            {"type": "Feature", "properties": {"网格编码": f"{COMM_A}002", "网格名称": "二网格"}, "geometry": None},
        ],
    }
    p.write_text(json.dumps(fc, ensure_ascii=False), encoding="utf-8")
    before = snapshot(city)
    rep = load_file(p, "grid", engine=city)
    assert rep.status == "rejected"
    assert sorted(r for _, r in rules(rep)) == ["geom_empty", "ring_not_closed"]
    assert snapshot(city) == before
    rep = load_file(p, "grid", engine=city, repair=True)  # the ring is closed, the empty one cannot be fixed
    assert rep.status == "rejected" and [r for _, r in rules(rep)] == ["geom_empty"]
    assert [i.rule for i in rep.repaired] == ["ring_not_closed"]
    assert snapshot(city) == before


def test_dry_run_writes_nothing(city, tmp_path):
    p = tmp_path / "小区.geojson"
    gdf([{"小区名称": "试运行苑", "geometry": box(117.211, 31.811, 117.213, 31.813)}]).to_file(p, driver="GeoJSON")
    before = snapshot(city)
    rep = load_file(p, "compound", engine=city, dry_run=True)
    assert rep.status == "dry-run" and rep.ok and rep.counts["written"] == 1
    assert snapshot(city) == before


def test_spatial_parent_and_code_assignment(city, tmp_path):
    """A compound without codes lands in the community containing its point-on-surface."""
    p = tmp_path / "无编码小区.geojson"
    gdf(
        [
            {"名称": "东边苑", "geometry": box(117.230, 31.820, 117.232, 31.822)},
            {"名称": "西边苑", "geometry": box(117.205, 31.820, 117.207, 31.822)},
        ]
    ).to_file(p, driver="GeoJSON")
    rep = load_file(p, "compound", engine=city)
    assert rep.status == "loaded", [i.line() for i in rep.issues]
    with city.connect() as c:
        rows = dict(c.execute(text("SELECT name, code FROM compound WHERE name IN ('东边苑', '西边苑')")).all())
        assert rows["东边苑"].startswith(COMM_B) and rows["西边苑"].startswith(COMM_A)
        assert len(rows["东边苑"]) == 16
        c.execute(text("DELETE FROM compound WHERE name IN ('东边苑', '西边苑')"))
        c.commit()


def test_projected_cgcs2000_zone(city, tmp_path):
    """CGCS2000 3-degree GK zone (EPSG:4548, CM 117°E) in, lon/lat CGCS2000 out."""
    from gisgov.crs import transformer

    tr = transformer(4490, 4548)
    lon0, lat0 = 117.2150, 31.8150
    x, y = tr.transform(lon0, lat0)
    p = tmp_path / "投影楼栋.gpkg"
    gdf(
        [{"楼栋编码": f"{COMM_A}00077", "户数": 10, "geometry": box(x - 10, y - 10, x + 10, y + 10)}], crs="EPSG:4548"
    ).to_file(p, driver="GPKG")
    rep = load_file(p, "building", engine=city)
    assert rep.status == "loaded", [i.line() for i in rep.issues]
    assert any(i.rule == "crs_converted" and i.value == "EPSG:4548" for i in rep.issues)
    with city.connect() as c:
        cx, cy, area = c.execute(
            text(
                "SELECT ST_X(ST_Centroid(geom)), ST_Y(ST_Centroid(geom)), gisgov_area_m2(geom) "
                "FROM building WHERE code = :c"
            ),
            {"c": f"{COMM_A}00077"},
        ).one()
        assert abs(cx - lon0) < 1e-7 and abs(cy - lat0) < 1e-7 and abs(area - 400) < 0.5
        c.execute(text("DELETE FROM building WHERE code = :c"), {"c": f"{COMM_A}00077"})
        c.commit()


def test_field_map_override_and_usage_errors(city, tmp_path):
    p = tmp_path / "设施.geojson"
    gdf([{"JGMC": "社区卫生服务站", "LB": "卫生", "geometry": Point(117.205, 31.815)}]).to_file(p, driver="GeoJSON")
    with pytest.raises(UsageError, match="no column"):
        load_file(p, "facility", engine=city, mapping=["name=名字"])
    with pytest.raises(UsageError, match="unknown level"):
        load_file(p, "planet", engine=city)
    with pytest.raises(UsageError, match="unknown CRS"):
        load_file(p, "facility", engine=city, crs="mars")
    rep = load_file(p, "facility", engine=city, mapping=["name=JGMC", "category=LB"], dry_run=True)
    assert rep.status == "dry-run", [i.line() for i in rep.issues]


def test_road_file_split_into_a_network(fresh, tmp_path):
    """Two crossing streets sharing a vertex become 4 edges around one junction; lengths in metres."""
    p = tmp_path / "道路.geojson"
    lines = [
        shapely.LineString([(117.20, 31.81), (117.21, 31.81), (117.22, 31.81)]),
        shapely.LineString([(117.21, 31.80), (117.21, 31.81), (117.21, 31.82)]),
    ]
    gdf(
        [
            {"name": "长江路", "道路等级": "主干路", "geometry": lines[0]},
            {"name": "小巷", "highway": "footway", "geometry": lines[1]},
        ]
    ).to_file(p, driver="GeoJSON")
    rep = load_file(p, "road", engine=fresh)
    assert rep.status == "loaded", [i.line() for i in rep.issues]
    assert rep.counts["edges"] == 4 and rep.counts["nodes"] == 5
    assert rep.stats["largest_component_share"] == 1.0
    with fresh.connect() as c:
        classes = dict(c.execute(text("SELECT name, min(class) FROM road_edge GROUP BY name")).all())
        assert classes == {"长江路": "arterial", "小巷": "path"}
        total = c.execute(text("SELECT sum(length_m) FROM road_edge WHERE name = '长江路'")).scalar()
        ref = c.execute(text("SELECT ST_Length(ST_GeomFromText(:w, 4490)::geography)"), {"w": lines[0].wkt}).scalar()
        assert abs(total - ref) / ref < 0.002
        deg = c.execute(
            text(
                "SELECT count(*) FROM road_edge e JOIN road_node n ON n.id IN (e.source, e.target) "
                "WHERE ST_Equals(n.geom, ST_SetSRID(ST_MakePoint(117.21, 31.81), 4490))"
            )
        ).scalar()
        assert deg == 4


def test_flatgeobuf_and_bd09(fresh, tmp_path):
    """FlatGeobuf through GDAL; Baidu BD-09 coordinates converted back within a metre."""
    from gisgov.ingest import gcj02

    assert load_file(write_streets(tmp_path), "street", engine=fresh).status == "loaded"
    p = tmp_path / "社区.fgb"
    gdf([{"社区编码": COMM_A, "社区名称": "东园社区", "geometry": box(*COMM_A_BOX)}]).to_file(p, driver="FlatGeobuf")
    rep = load_file(p, "community", engine=fresh)
    assert rep.status == "loaded", [i.line() for i in rep.issues]
    lon, lat = np.array([117.2051]), np.array([31.8123])
    blon, blat = gcj02.wgs84_to_bd09(lon, lat)
    q = tmp_path / "百度.geojson"
    gdf([{"设施名称": "百度点", "类别": "城管", "geometry": Point(blon[0], blat[0])}], crs="EPSG:4326").to_file(q)
    rep = load_file(q, "facility", engine=fresh, crs="bd09")
    assert rep.status == "loaded", [i.line() for i in rep.issues]
    with fresh.connect() as c:
        x, y = c.execute(text("SELECT ST_X(geom), ST_Y(geom) FROM facility")).one()
    assert gcj02.offset_m(lon[0], lat[0], x, y) < 1.0
