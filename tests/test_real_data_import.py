"""Real data as districts send it (issue 11, items 1, 4, 8): codes in DBF numeric fields, damaged and empty
files, missing or lying Shapefile parts, empty exports, pinyin-initial column names."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pyogrio
import pytest
from ingest_helpers import COMM_A, STREET, gdf, load_city, snapshot, write_gbk_communities, write_streets
from shapely.geometry import box
from sqlalchemy import create_engine, pool, text
from typer.testing import CliRunner

from gisgov.config import get_settings
from gisgov.ingest.export import export_level
from gisgov.ingest.fields import resolve
from gisgov.ingest.levels import LEVELS
from gisgov.ingest.loader import load_file

# Two building codes that differ only in the last digit: as float64 both become 34010400100100000 / …004.
B1, B2, B3 = f"{COMM_A}00001", f"{COMM_A}00002", f"{COMM_A}00003"


@pytest.fixture(scope="module")
def city(db_factory, tmp_path_factory):
    eng = create_engine(db_factory.create(), poolclass=pool.NullPool)
    load_city(eng, tmp_path_factory.mktemp("city"))
    yield eng
    eng.dispose()


@pytest.fixture
def fresh(db_factory):
    eng = create_engine(db_factory.create(), poolclass=pool.NullPool)
    yield eng
    eng.dispose()


def rejected(rep):
    return [(i.record, i.rule) for i in rep.issues if i.action == "rejected"]


def numeric_code_shapefile(path: Path, texts: list[str]) -> Path:
    """A building Shapefile written by GDAL whose code column LDBM is a DBF numeric field (N, 24 wide, no
    decimals, as desktop GIS writes a Double with scale 0) holding ``texts`` as the DBF stores them."""
    n = len(texts)
    g = gdf(
        [
            {
                "LDBM": float(i + 1),
                "LDMC": f"{i + 1}号楼",
                "geometry": box(117.203 + i * 1e-3, 31.805, 117.2035 + i * 1e-3, 31.8055),
            }
            for i in range(n)
        ]
    )
    pyogrio.write_dataframe(g, path, driver="ESRI Shapefile", encoding="UTF-8")
    dbf = path.with_suffix(".dbf")
    d = bytearray(dbf.read_bytes())
    _, header_len, rec_len = struct.unpack("<IHH", d[4:12])
    offset, pos = 1, 32
    while d[pos] != 0x0D:
        name = d[pos : pos + 11].split(b"\x00", 1)[0]
        if name == b"LDBM":
            assert chr(d[pos + 11]) in "NF"
            width = d[pos + 16]
            d[pos + 17] = 0  # no decimals: what GDAL still reads as a floating-point number (width > 18)
            break
        offset += d[pos + 16]
        pos += 32
    for r, t in enumerate(texts):
        o = header_len + r * rec_len + offset
        d[o : o + width] = t.encode("ascii").rjust(width)
    dbf.write_bytes(bytes(d))
    return path


# ---------------------------------------------------------------- item 1: codes in DBF numeric fields


def test_17_digit_codes_in_a_dbf_numeric_field_keep_every_digit(city, tmp_path):
    shp = numeric_code_shapefile(tmp_path / "楼栋.shp", [B1, B2, B3])
    # what GDAL alone returns: floats that have lost the last digit (the silent corruption)
    _, _, _, fd = pyogrio.raw.read(shp)
    assert fd[0].dtype.kind == "f" and len({int(v) for v in fd[0]}) < 3
    rep = load_file(shp, "building", engine=city, dry_run=True)
    assert rep.status == "dry-run", [i.line() for i in rep.issues]
    with city.connect() as c:
        assert c.execute(text("SELECT count(*) FROM building")).scalar() == 0
    rep = load_file(shp, "building", engine=city)
    assert rep.status == "loaded", [i.line() for i in rep.issues]
    with city.connect() as c:
        codes = c.execute(text("SELECT code, name FROM building ORDER BY code")).all()
        c.execute(text("DELETE FROM building"))
        c.commit()
    assert codes == [(B1, "1号楼"), (B2, "2号楼"), (B3, "3号楼")]


def test_17_digit_codes_in_a_zipped_shapefile_keep_every_digit(city, tmp_path):
    import zipfile

    numeric_code_shapefile(tmp_path / "楼栋.shp", [B1, B2])
    z = tmp_path / "楼栋.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for part in tmp_path.glob("楼栋.*"):
            if part.suffix != ".zip":
                zf.write(part, f"data/{part.name}")
    rep = load_file(z, "building", engine=city, dry_run=True)
    assert rep.status == "dry-run", [i.line() for i in rep.issues]
    assert not [i for i in rep.issues if i.rule == "code_duplicate"]
    rep = load_file(z, "building", engine=city)
    with city.connect() as c:
        codes = [r[0] for r in c.execute(text("SELECT code FROM building ORDER BY code"))]
        c.execute(text("DELETE FROM building"))
        c.commit()
    assert codes == [B1, B2]


def test_code_that_the_dbf_holds_only_rounded_is_refused_naming_record_and_rule(city, tmp_path):
    shp = numeric_code_shapefile(tmp_path / "楼栋.shp", [B1, "3.40104001001000E+16"])
    before = snapshot(city)
    rep = load_file(shp, "building", engine=city)
    assert rep.status == "rejected"
    bad = [i for i in rep.issues if i.rule == "code_inexact"]
    assert len(bad) == 1 and "fid 1" in bad[0].record and "3.40104001001000E+16" in bad[0].value
    assert "floating-point" in bad[0].message and "LDBM" in bad[0].message
    assert snapshot(city) == before


def test_float_code_in_a_geopackage_is_refused(city, tmp_path):
    p = tmp_path / "楼栋.gpkg"
    g = gdf([{"ldbm": float(B1), "geometry": box(117.203, 31.805, 117.2035, 31.8055)}])
    pyogrio.write_dataframe(g, p, driver="GPKG")
    rep = load_file(p, "building", engine=city)
    assert rep.status == "rejected" and [r for _, r in rejected(rep)].count("code_inexact") == 1


# ---------------------------------------------------------------- item 4: crashes become reports


def test_truncated_geopackage_is_a_clear_rejection(city, tmp_path):
    good = tmp_path / "ok.gpkg"
    rows = [
        {
            "xqbm": f"{COMM_A}{i:04d}",
            "xqmc": f"小区{i}",
            "geometry": box(117.201 + i * 1e-4, 31.801, 117.20105 + i * 1e-4, 31.8015),
        }
        for i in range(1, 200)
    ]
    gdf(rows).to_file(good, driver="GPKG")
    data = good.read_bytes()
    before = snapshot(city)
    for cut in (100, len(data) // 3, len(data) // 2, len(data) - 4096):
        p = tmp_path / f"cut{cut}.gpkg"
        p.write_bytes(data[:cut])
        for layer in (None, "ok"):
            rep = load_file(p, "compound", engine=city, layer=layer)
            assert rep.status == "rejected", (cut, layer)
            [issue] = rep.rejected
            assert issue.rule == "unreadable" and "truncated" in issue.message, issue.line()
            assert str(tmp_path) not in issue.message
    assert snapshot(city) == before


def test_truncated_geopackage_in_the_cli_exits_1_without_traceback(db_factory, monkeypatch, tmp_path):
    from gisgov.cli.main import app

    monkeypatch.setenv("GISGOV_DATABASE_URL", db_factory.create())
    get_settings.cache_clear()
    p = tmp_path / "街道.gpkg"
    gdf([{"jdbm": STREET, "jdmc": "示范街道", "geometry": box(117.2, 31.8, 117.24, 31.83)}]).to_file(p, driver="GPKG")
    p.write_bytes(p.read_bytes()[:20000])
    r = CliRunner().invoke(app, ["load", str(p), "--level", "street"])
    get_settings.cache_clear()
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output and "truncated" in r.output


@pytest.mark.parametrize("kind", ["csv_header_only", "geojson_no_features", "shp_no_features", "zero_bytes_csv"])
def test_empty_file_is_rejected_as_empty(city, tmp_path, kind):
    if kind == "csv_header_only":
        p = tmp_path / "街道.csv"
        p.write_text("街道编码,街道名称,wkt\n", encoding="utf-8")
    elif kind == "geojson_no_features":
        p = tmp_path / "街道.geojson"
        p.write_text('{"type": "FeatureCollection", "features": []}', encoding="utf-8")
    elif kind == "zero_bytes_csv":
        p = tmp_path / "街道.csv"
        p.write_bytes(b"")
    else:
        p = tmp_path / "街道.shp"
        g = gdf([{"jdbm": STREET, "geometry": box(117.2, 31.8, 117.24, 31.83)}])
        pyogrio.write_dataframe(g.iloc[:0], p, driver="ESRI Shapefile")
    rep = load_file(p, "street", engine=city)
    assert rep.status == "rejected" and rep.counts.get("written") is None
    [issue] = rep.rejected
    assert "empty" in issue.message or "no records" in issue.message or "no features" in issue.message, issue.line()


def test_missing_dbf_is_reported_once_and_clearly(city, tmp_path):
    shp = write_gbk_communities(tmp_path, cpg=True)
    shp.with_suffix(".dbf").unlink()
    rep = load_file(shp, "community", engine=city)
    assert rep.status == "rejected"
    [issue] = rep.rejected
    assert ".dbf" in issue.message and "missing" in issue.message


@pytest.mark.parametrize("truth,label", [("GBK", "UTF-8"), ("UTF-8", "GBK")])
def test_lying_cpg_is_a_clear_message(city, tmp_path, truth, label):
    p = tmp_path / "社区.shp"
    g = gdf([{"SQBM": COMM_A, "SQMC": "东园社区", "geometry": box(117.2, 31.8, 117.22, 31.83)}])
    g.to_file(p, driver="ESRI Shapefile", encoding=truth)
    p.with_suffix(".cpg").write_text(label)
    rep = load_file(p, "community", engine=city)
    assert rep.status == "rejected"
    [issue] = rep.rejected
    assert ".cpg" in issue.message and "--encoding" in issue.message, issue.line()
    # the user's way out: the encoding given explicitly loads it (dry run)
    ok = load_file(p, "community", engine=city, encoding=truth, dry_run=True)
    assert all(i.rule != "unreadable" for i in ok.issues), [i.line() for i in ok.issues]


@pytest.mark.parametrize("fmt", ["gpkg", "shp", "geojson", "csv", "xlsx"])
def test_exporting_an_empty_level_gives_a_valid_empty_file(fresh, tmp_path, fmt):
    out = tmp_path / "out" / f"grid.{fmt}"
    n = export_level(fresh, "grid", fmt, out)
    assert n == 0 and out.exists()
    if fmt in ("gpkg", "shp", "geojson"):
        info = pyogrio.read_info(out)
        assert info["features"] == 0
        if fmt != "geojson":  # an empty GeoJSON FeatureCollection has no place for a schema
            assert "code" in [f.lower() for f in info["fields"]] and "geom" not in list(info["fields"])
    leftovers = [f.name for f in out.parent.iterdir() if f.stem != "grid"]
    assert leftovers == []


def test_export_failure_leaves_no_partial_file(fresh, tmp_path, monkeypatch):
    import gisgov.ingest.export as ex

    assert load_file(write_streets(tmp_path), "street", engine=fresh).status == "loaded"
    out = tmp_path / "out" / "street.gpkg"
    out.parent.mkdir()

    def broken(*a, **k):
        Path(a[1]).write_bytes(b"SQLite format 3\x00 half a file")
        raise RuntimeError("disk full")

    monkeypatch.setattr(ex.pyogrio, "write_dataframe", broken)
    with pytest.raises(RuntimeError):
        export_level(fresh, "street", "gpkg", out)
    assert list(out.parent.iterdir()) == []


# ---------------------------------------------------------------- item 8: pinyin initials and variants


@pytest.mark.parametrize(
    "level,columns,expected",
    [
        ("street", ["JDBM", "JDMC"], {"code": "JDBM", "name": "JDMC"}),
        ("community", ["SQBM", "SQMC", "JDBM"], {"code": "SQBM", "name": "SQMC", "street_code": "JDBM"}),
        (
            "community",
            ["社区（村）编码", "社区(村)名称", "所属街道编码"],
            {"code": "社区（村）编码", "name": "社区(村)名称", "street_code": "所属街道编码"},
        ),
        ("grid", ["wgbm", "wgmc", "sqbm"], {"code": "wgbm", "name": "wgmc", "community_code": "sqbm"}),
        ("grid", ["WG_BM", "WG_MC", "SQ_BM"], {"code": "WG_BM", "name": "WG_MC", "community_code": "SQ_BM"}),
        ("compound", ["xqbm", "xqmc", "sqbm"], {"code": "xqbm", "name": "xqmc", "community_code": "sqbm"}),
        (
            "building",
            ["ldbm", "ldmc", "xqbm", "wgbm", "sqbm", "lc"],
            {
                "code": "ldbm",
                "name": "ldmc",
                "compound_code": "xqbm",
                "grid_code": "wgbm",
                "community_code": "sqbm",
                "floors": "lc",
            },
        ),
        (
            "building",
            ["楼栋编号", "楼栋名称", "所属小区编码"],
            {"code": "楼栋编号", "name": "楼栋名称", "compound_code": "所属小区编码"},
        ),
        ("facility", ["ssbm", "ssmc", "sslb"], {"code": "ssbm", "name": "ssmc", "category": "sslb"}),
    ],
)
def test_pinyin_initials_and_variants_are_recognised(level, columns, expected):
    lv = LEVELS[level]
    got = resolve(columns, level, ("code", *lv.fields))
    assert {k: v for k, v in got.items() if k in expected} == expected, got


def test_pinyin_named_shapefile_loads(fresh, tmp_path):
    p = tmp_path / "街道.shp"
    gdf([{"JDBM": STREET, "JDMC": "示范街道", "geometry": box(117.2, 31.8, 117.24, 31.83)}]).to_file(
        p, driver="ESRI Shapefile", encoding="GBK"
    )
    rep = load_file(p, "street", engine=fresh)
    assert rep.status == "loaded", [i.line() for i in rep.issues]
    with fresh.connect() as c:
        assert c.execute(text("SELECT code, name FROM street")).all() == [(STREET, "示范街道")]


def test_numbers_that_fit_stay_exact():
    from gisgov.ingest.readers import _as_text, _dbf_text

    s, bad = _as_text(np.array([12.0, 2.5, float(2**53 - 1)]))
    assert s.tolist() == ["12", "2.5", str(2**53 - 1)] and bad == {}
    s, bad = _dbf_text(["34010400100100003.000", "  ", "1.50", "-0002", "3.4010400100100E+16"])
    assert s.tolist()[:4] == ["34010400100100003", None, "1.5", "-2"] and list(bad) == [4]
