"""Export → load into an empty database → same counts and geometries within 1e-7°, for every format;
resident exports masked (no ID character next to the birth year), private (0600) and scoped."""

from __future__ import annotations

import os
import stat

import numpy as np
import pandas as pd
import pytest
import shapely
from auth_helpers import app_engine
from ingest_helpers import COMM_A, COMM_B, gdf, load_city
from shapely.geometry import Point, box
from sqlalchemy import create_engine, pool, text

from gisgov.ingest.export import export_level
from gisgov.ingest.jobs import scoped_engine
from gisgov.ingest.levels import LOAD_ORDER
from gisgov.ingest.loader import UsageError, load_file
from gisgov.ingest.roster import load_roster
from gisgov.security.pii import Vault, id_check_digit

VAULT = Vault(b"r" * 32)
GEOM_SQL = {
    "street": "SELECT code, ST_AsBinary(geom) FROM street",
    "community": "SELECT code, ST_AsBinary(geom) FROM community",
    "grid": "SELECT code, ST_AsBinary(geom) FROM grid",
    "compound": "SELECT code, ST_AsBinary(geom) FROM compound",
    "building": "SELECT code, ST_AsBinary(coalesce(geom, pos)) FROM building",
    "facility": "SELECT code, ST_AsBinary(geom) FROM facility",
}
ATTR_SQL = {
    "building": "SELECT b.code, b.floors, b.households, b.households_estimated, c.code, g.code, b.address FROM building b "
    "LEFT JOIN compound c ON c.id = b.compound_id LEFT JOIN grid g ON g.id = b.grid_id ORDER BY b.code",
    "compound": "SELECT code, name, year_built, property_mode, has_party_org FROM compound ORDER BY code",
    "community": "SELECT code, street_code, name, class FROM community ORDER BY code",
    "facility": "SELECT code, name, category_code, kind, community_code FROM facility ORDER BY code",
    "grid": "SELECT code, name, level FROM grid ORDER BY code",
}


def ident(seq: int) -> str:
    first = f"34010419{60 + seq % 40:02d}0101{seq:03d}"
    return first + id_check_digit(first)


@pytest.fixture(scope="module")
def source(db_factory, tmp_path_factory):
    eng = create_engine(db_factory.create(), poolclass=pool.NullPool)
    tmp = tmp_path_factory.mktemp("src")
    load_city(eng, tmp)
    files = {
        "grid": gdf(
            [
                {
                    "网格编码": f"{COMM_A}001",
                    "网格名称": "一网格",
                    "网格级别": "三级",
                    "geometry": box(117.20, 31.80, 117.21, 31.83),
                },
                {"网格编码": f"{COMM_B}001", "网格名称": "西湖网格", "geometry": box(117.22, 31.80, 117.24, 31.83)},
            ]
        ),
        "compound": gdf(
            [
                {
                    "小区编码": f"{COMM_A}0001",
                    "小区名称": "梧桐苑",
                    "建成年代": 1995,
                    "物业管理方式": "物业公司",
                    "geometry": shapely.Polygon(
                        [
                            (117.2021, 31.8051),
                            (117.2063, 31.8049),
                            (117.2061, 31.8093),
                            (117.2033, 31.8097),
                            (117.2019, 31.8072),
                        ]
                    ),
                }
            ]
        ),
        "building": gdf(
            [
                {
                    "楼栋编码": f"{COMM_A}00001",
                    "层数": 6,
                    "户数": 36,
                    "地址": "梧桐苑1栋",
                    "geometry": box(117.20251, 31.80553, 117.20301, 31.80601),
                },
                {
                    "楼栋编码": f"{COMM_A}00002",
                    "层数": 4,
                    "地址": "梧桐苑2栋",
                    "geometry": box(117.20402, 31.80703, 117.20457, 31.80749),
                },
                {
                    "楼栋编码": f"{COMM_B}00001",
                    "层数": 11,
                    "地址": "西湖1栋",
                    "geometry": box(117.2251, 31.8101, 117.2259, 31.8107),
                },
            ]
        ),
        "facility": gdf(
            [
                {
                    "设施编码": "F001",
                    "设施名称": "东园社区卫生服务站",
                    "类别": "卫生",
                    "设施类型": "卫生服务站",
                    "geometry": Point(117.20731, 31.81577),
                },
                {"设施编码": "F002", "设施名称": "西湖小学", "类别": "学校", "geometry": Point(117.23113, 31.82019)},
            ]
        ),
        "road": gdf(
            [
                {
                    "name": "东园路",
                    "道路等级": "支路",
                    "geometry": shapely.LineString([(117.201, 31.812), (117.2105, 31.8121), (117.2235, 31.8119)]),
                },
                {
                    "name": "南北巷",
                    "highway": "footway",
                    "foot": "true",
                    "geometry": shapely.LineString([(117.2105, 31.801), (117.2105, 31.8121), (117.2106, 31.829)]),
                },
            ]
        ),
    }
    for level, g in files.items():
        p = tmp / f"{level}.geojson"
        g.to_file(p, driver="GeoJSON")
        rep = load_file(p, level, engine=eng)
        assert rep.status == "loaded", [i.line() for i in rep.issues]
    roster = pd.DataFrame(
        {
            "楼栋编码": [f"{COMM_A}00001"] * 3 + [f"{COMM_B}00001"] * 2,
            "户号": ["101", "101", "102", "201", "201"],
            "姓名": ["张一", "张二", "李三", "王四", "王五"],
            "身份证号": [ident(i) for i in range(5)],
            "联系电话": ["13900001111", None, None, "13700002222", None],
            "特殊人群": ["低保", None, "独居老人;残疾", None, None],
        }
    )
    rp = tmp / "roster.csv"
    roster.to_csv(rp, index=False)
    assert load_roster(rp, engine=eng, vault=VAULT).status == "loaded"
    yield eng
    eng.dispose()


def _geoms(eng, level):
    with eng.connect() as c:
        return {code: shapely.from_wkb(bytes(w)) for code, w in c.execute(text(GEOM_SQL[level]))}


def _rows(eng, sql):
    with eng.connect() as c:
        return c.execute(text(sql)).all()


@pytest.mark.parametrize("fmt", ["gpkg", "geojson", "shp", "csv", "xlsx"])
def test_round_trip(source, db_factory, tmp_path, fmt):
    target = create_engine(db_factory.create(), poolclass=pool.NullPool)
    try:
        for level in LOAD_ORDER:
            out = tmp_path / f"{level}.{fmt}"
            n = export_level(source, level, fmt, out)
            assert n > 0
            rep = load_file(out, level, engine=target)
            assert rep.status == "loaded", (level, [i.line() for i in rep.issues])
            if level in GEOM_SQL:
                a, b = _geoms(source, level), _geoms(target, level)
                assert a.keys() == b.keys()
                for code in a:
                    assert shapely.hausdorff_distance(a[code], b[code]) <= 1e-7, (level, code)
            if level in ATTR_SQL:
                assert _rows(source, ATTR_SQL[level]) == _rows(target, ATTR_SQL[level]), level
        ra = _rows(source, "SELECT count(*), sum(length_m), ST_AsBinary(ST_Union(geom)) FROM road_edge")[0]
        rb = _rows(target, "SELECT count(*), sum(length_m), ST_AsBinary(ST_Union(geom)) FROM road_edge")[0]
        assert ra[0] == rb[0] == 4 and abs(ra[1] - rb[1]) < 1e-3
        assert shapely.hausdorff_distance(shapely.from_wkb(bytes(ra[2])), shapely.from_wkb(bytes(rb[2]))) <= 1e-7
        assert _rows(source, "SELECT count(*) FROM road_node") == _rows(target, "SELECT count(*) FROM road_node")
        # residents: clear IDs only when explicitly allowed; reloading gives the same people
        if fmt in ("csv", "xlsx"):  # rosters are tables
            out = tmp_path / f"resident.{fmt}"
            export_level(source, "resident", fmt, out, allow_pii=True, vault=VAULT)
            rep = load_roster(out, engine=target, vault=VAULT)
            assert rep.status == "loaded", [i.line() for i in rep.issues]
            q = (
                "SELECT h.code, r.name, r.id_last4, r.phone_masked, "
                "(SELECT string_agg(group_code, ',' ORDER BY group_code) FROM resident_group g WHERE g.resident_id = r.id) "
                "FROM resident r JOIN household h ON h.id = r.household_id ORDER BY h.code, r.name"
            )
            assert _rows(source, q) == _rows(target, q)
    finally:
        target.dispose()


def test_resident_export_masks_pii_unless_allowed(source, tmp_path):
    out = tmp_path / "居民.csv"
    assert export_level(source, "resident", "csv", out, vault=VAULT) == 5
    text_ = out.read_text(encoding="utf-8-sig")
    df = pd.read_csv(out, dtype=str)
    # the birth year is exported, so the ID column shows none of the number's characters
    assert "出生年份" in df.columns and df["出生年份"].notna().all()
    assert df["身份证号"].tolist() == ["*" * 18] * 5
    for i in range(5):
        assert ident(i) not in text_ and ident(i)[-4:] not in set(df["身份证号"])
    assert "13900001111" not in text_ and "139****1111" in text_
    assert list(df.columns[:4]) == ["楼栋编码", "地址", "户号", "姓名"]
    clear = tmp_path / "居民_明文.csv"
    export_level(source, "resident", "csv", clear, allow_pii=True, vault=VAULT)
    assert ident(0) in clear.read_text(encoding="utf-8-sig")


def test_export_community_filter_and_errors(source, tmp_path):
    assert export_level(source, "building", "geojson", tmp_path / "a.geojson", community=COMM_A) == 2
    assert export_level(source, "street", "csv", tmp_path / "s.csv", community=COMM_B) == 1
    with pytest.raises(UsageError, match="format"):
        export_level(source, "building", "kml", tmp_path / "x.kml")
    with pytest.raises(UsageError, match="12-digit"):
        export_level(source, "building", "csv", tmp_path / "x.csv", community="34")
    est = pd.read_csv(tmp_path / "s.csv")
    assert "wkt" in est.columns and np.all(est["code"].astype(str) == "340104001")


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "gpkg", "geojson", "shp"])
def test_resident_exports_are_private_files(source, tmp_path, fmt):
    old = os.umask(0o022)  # a permissive umask must not matter
    try:
        d = tmp_path / "out"
        export_level(source, "resident", fmt, d / f"居民.{fmt}", vault=VAULT)
        export_level(source, "resident", fmt, d / f"明文.{fmt}", allow_pii=True, vault=VAULT)
        files = sorted(d.iterdir())
        assert files and all(f.is_file() for f in files)  # no staging folder left behind
        assert {f.suffix for f in files} >= ({".shp", ".dbf", ".shx", ".prj"} if fmt == "shp" else {f".{fmt}"})
        assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
        export_level(source, "building", fmt, d / f"building.{fmt}")
        assert _mode(d / f"building.{fmt}") == 0o644  # non-personal levels keep the usual mode
    finally:
        os.umask(old)


def test_export_area_and_database_scope(source, tmp_path):
    assert export_level(source, "building", "csv", tmp_path / "a.csv", area=COMM_A) == 2
    assert export_level(source, "community", "csv", tmp_path / "c.csv", area=COMM_B) == 1
    assert export_level(source, "street", "csv", tmp_path / "s.csv", area=COMM_B) == 0  # its street is not inside
    assert export_level(source, "resident", "csv", tmp_path / "r.csv", area=COMM_B, vault=VAULT) == 2
    assert export_level(source, "facility", "csv", tmp_path / "f.csv", area="9") == 0
    with pytest.raises(UsageError, match="prefix"):
        export_level(source, "building", "csv", tmp_path / "x.csv", area="34' OR '1'='1")
    # as the app role: row-level security decides which residents exist at all
    app = app_engine(source)
    try:
        assert export_level(app, "resident", "csv", tmp_path / "none.csv", vault=VAULT) == 0  # no scope: no rows
        assert export_level(scoped_engine(app, COMM_A), "resident", "csv", tmp_path / "a.csv", vault=VAULT) == 3
        df = pd.read_csv(tmp_path / "a.csv", dtype=str)
        assert sorted(df["姓名"]) == ["张一", "张二", "李三"]
        assert export_level(scoped_engine(app, "*"), "resident", "csv", tmp_path / "all.csv", vault=VAULT) == 5
    finally:
        app.dispose()
