"""Text encodings as districts send them (issue 11, item 6): DBFs in UTF-8, GBK and Big5 with and without a
.cpg, short and long; CSVs; the encoding detection must say "unsure" instead of loading mojibake, and
Shapefile exports are GBK with a .cpg by default."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import pytest
from ingest_helpers import COMM_A, COMM_B, gdf, load_city, snapshot
from shapely.geometry import Point, box
from sqlalchemy import create_engine, pool

from gisgov.ingest.encoding import detect
from gisgov.ingest.export import _write, export_level
from gisgov.ingest.loader import UsageError, load_file
from gisgov.ingest.readers import ReadError, read_table, read_vector

# Names as they come: mainland communities (simplified, GBK) and Taiwanese 里/區 (traditional, Big5).
SIMPLIFIED = [
    "东园社区",
    "西湖社区",
    "锦绣花园小区",
    "桃源街道",
    "翠苑一区",
    "幸福里社区",
    "滨江新村",
    "望湖家园",
    "三孝口街道",
    "琥珀山庄小区",
    "杏花村",
    "双岗街道",
]
TRADITIONAL = [
    "大安社區",
    "信義區",
    "忠孝東路",
    "仁愛里",
    "復興街道",
    "松山新村",
    "民生社區",
    "萬華區",
    "龜山鄉",
    "鳳山區",
    "興隆里",
    "蘆竹鄉",
]
KINDS_S = ["城市社区", "撤村建居", "农村社区"]
KINDS_T = ["都市社區", "鄉村社區", "原住民社區"]


def write_dbf(folder: Path, names: list[str], kinds: list[str], encoding: str, *, cpg: bool) -> Path:
    """A community Shapefile whose DBF holds ``names`` in ``encoding``; without ``cpg`` neither a .cpg nor
    a language driver byte says which (the reader has only the bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / "社区.shp"
    rows = [
        {
            "SQBM": f"{COMM_A[:-3]}{i + 1:03d}",
            "SQMC": n,
            "LB": kinds[i % len(kinds)],
            "geometry": box(117.20 + i * 1e-3, 31.80, 117.2009 + i * 1e-3, 31.81),
        }
        for i, n in enumerate(names)
    ]
    pyogrio.write_dataframe(gdf(rows), p, driver="ESRI Shapefile", encoding=encoding)
    dbf = p.with_suffix(".dbf")
    assert names[0].encode(encoding) in dbf.read_bytes()  # really that encoding on disk
    if cpg:
        p.with_suffix(".cpg").write_text({"GBK": "GBK", "BIG5": "950", "UTF-8": "UTF-8"}[encoding])
    else:
        p.with_suffix(".cpg").unlink(missing_ok=True)
        b = bytearray(dbf.read_bytes())
        b[29] = 0
        dbf.write_bytes(bytes(b))
    return p


CASES = [
    # (name, names, kinds, encoding on disk, codec the reader must use)
    ("gbk-short", SIMPLIFIED[:1], KINDS_S, "GBK", "gb18030"),
    ("gbk-long", SIMPLIFIED * 5, KINDS_S, "GBK", "gb18030"),
    ("big5-short", TRADITIONAL[:1], KINDS_T, "BIG5", "big5"),
    ("big5-long", TRADITIONAL * 5, KINDS_T, "BIG5", "big5"),
    ("utf8-short", SIMPLIFIED[:1], KINDS_S, "UTF-8", "utf-8"),
    ("utf8-long-traditional", TRADITIONAL * 5, KINDS_T, "UTF-8", "utf-8"),
]


@pytest.mark.parametrize("cpg", [True, False], ids=["cpg", "no-cpg"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_dbf_text_reads_right_in_every_encoding(tmp_path, case, cpg):
    _, names, kinds, enc, codec = case
    shp = write_dbf(tmp_path / "d", names, kinds, enc, cpg=cpg)
    raw = read_vector(shp)
    assert raw.columns["SQMC"].tolist() == names
    assert raw.columns["LB"].tolist() == [kinds[i % len(kinds)] for i in range(len(names))]
    assert any(n.startswith(f"DBF encoding {codec} ") for n in raw.notes), raw.notes


def test_big5_dbf_without_cpg_is_not_mojibake(tmp_path):
    """The defect: a Big5 DBF without .cpg was read as GB18030 (every Big5 byte pair is valid GBK) and
    loaded as mojibake with exit 0."""
    shp = write_dbf(tmp_path / "b", TRADITIONAL[:4], KINDS_T, "BIG5", cpg=False)
    raw = read_vector(shp)
    assert raw.columns["SQMC"].tolist() == TRADITIONAL[:4]
    assert raw.columns["SQMC"].tolist() != [n.encode("big5").decode("gb18030") for n in TRADITIONAL[:4]]


@pytest.mark.parametrize(
    "names,enc",
    [(["东城"], "GBK"), (["嘉義"], "BIG5"), (["萬華"], "BIG5")],
    ids=["gbk-2-chars", "big5-2-chars", "big5-2-chars-b"],
)
def test_too_little_text_to_tell_is_refused_naming_the_candidates(tmp_path, names, enc):
    """Two characters without a word of the trade read as sensible text in both GBK and Big5: refused with
    the candidates and how the text reads in each, never guessed."""
    shp = write_dbf(tmp_path / "s", names, ["A"], enc, cpg=False)
    with pytest.raises(ReadError) as e:
        read_vector(shp)
    msg = str(e.value)
    assert e.value.rule == "encoding_unsure"
    assert "--encoding" in msg and "gbk" in msg and "big5" in msg
    right = names[0]
    wrong = names[0].encode(enc).decode("big5" if enc == "GBK" else "gb18030")
    assert right in msg and wrong in msg  # a sample of each reading
    # the way out: the encoding named explicitly
    raw = read_vector(shp, encoding=enc.lower())
    assert raw.columns["SQMC"].tolist() == names


def test_dbf_field_cut_mid_character_still_detected(tmp_path):
    """A writer that cut a name at the DBF field width leaves half a character at the end of a full field:
    the right encoding must not be ruled out by it."""
    long_name = "滨江新村社区居民委员会第三网格"
    b = long_name.encode("gbk")[:25]  # 12.5 characters: the last byte is a lone lead byte
    fields = [(b, True)] + [(n.encode("gbk"), False) for n in SIMPLIFIED[:3]]
    assert detect(fields).codec == "gb18030"


@pytest.fixture(scope="module")
def city(db_factory, tmp_path_factory):
    eng = create_engine(db_factory.create(), poolclass=pool.NullPool)
    load_city(eng, tmp_path_factory.mktemp("city"))
    yield eng
    eng.dispose()


def test_unsure_encoding_is_a_rejection_in_the_load_report(city, tmp_path):
    """Through the loader: rejected with rule encoding_unsure, nothing written; --encoding loads it."""
    shp = write_dbf(tmp_path / "l", ["东城"], ["A"], "GBK", cpg=False)
    before = snapshot(city)
    rep = load_file(shp, "compound", engine=city)
    assert rep.status == "rejected"
    [issue] = rep.rejected
    assert issue.rule == "encoding_unsure" and "--encoding" in issue.message, issue.line()
    assert snapshot(city) == before
    ok = load_file(shp, "compound", engine=city, encoding="gbk", dry_run=True, mapping=["code=SQBM", "name=SQMC"])
    assert all(i.rule != "encoding_unsure" for i in ok.issues)
    assert any(i.rule == "read" and "gb18030" in i.value for i in ok.issues)


# --- CSV ------------------------------------------------------------------------------------------


def _csv(tmp_path: Path, names: list[str], encoding: str, bom: bool = False) -> Path:
    p = tmp_path / f"社区_{encoding}.csv"
    head = ("社區編碼", "社區名稱") if names[0] in TRADITIONAL else ("社区编码", "社区名称")
    df = pd.DataFrame({head[0]: [f"{COMM_A[:-3]}{i:03d}" for i in range(len(names))], head[1]: names})
    data = df.to_csv(index=False).encode(encoding)
    p.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return p


@pytest.mark.parametrize(
    "names,enc,expect",
    [
        (SIMPLIFIED, "gbk", "gb18030"),
        (TRADITIONAL, "big5", "big5"),
        (SIMPLIFIED, "utf-8", "utf-8"),
        (TRADITIONAL, "utf-8", "utf-8"),
    ],
    ids=["gbk", "big5", "utf8", "utf8-traditional"],
)
def test_csv_encodings_detected(tmp_path, names, enc, expect):
    df, _, notes = read_table(_csv(tmp_path, names, enc))
    assert df.iloc[:, 1].tolist() == names
    assert f"CSV encoding {expect} (detected)" in notes


def test_big5_csv_was_mojibake_now_read_right(tmp_path):
    """Before: any non-UTF-8 CSV was read as GB18030, so Big5 became mojibake."""
    df, _, _ = read_table(_csv(tmp_path, TRADITIONAL[:3], "big5"))
    assert df["社區名稱"].tolist() == TRADITIONAL[:3]


def test_csv_with_bom_and_unsure_csv(tmp_path):
    df, _, notes = read_table(_csv(tmp_path, ["东城"], "utf-8", bom=True))
    assert df["社区名称"].tolist() == ["东城"] and "CSV encoding utf-8-sig (detected)" in notes
    # a Chinese header settles a short Big5 file …
    p = tmp_path / "short.csv"
    p.write_bytes("編碼,名稱\n1,嘉義\n".encode("big5"))
    assert read_table(p)[0]["名稱"].tolist() == ["嘉義"]
    # … one two-character name under an ASCII header does not: refused, and --encoding reads it
    p.write_bytes("code,name\n1,嘉義\n".encode("big5"))
    with pytest.raises(ReadError) as e:
        read_table(p)
    assert e.value.rule == "encoding_unsure" and "--encoding" in str(e.value)
    df, _, _ = read_table(p, encoding="big5")
    assert df["name"].tolist() == ["嘉義"]


# --- Shapefile export ---------------------------------------------------------------------------------


def _community_table(names: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    df = pd.DataFrame(
        {
            "code": [COMM_A, COMM_B][: len(names)],
            "street_code": [COMM_A[:9]] * len(names),
            "name": names,
            "class": ["城市社区"] * len(names),
        }
    )
    geoms = np.array([box(117.20 + i * 0.02, 31.80, 117.22 + i * 0.02, 31.83) for i in range(len(names))], dtype=object)
    return df, geoms


def _dbf_names(dbf: Path) -> tuple[int, bytes]:
    b = dbf.read_bytes()
    header_len = struct.unpack("<H", b[8:10])[0]
    return b[29], b[header_len:]


def test_shapefile_export_is_gbk_with_a_cpg_by_default(tmp_path):
    df, geoms = _community_table(["东园社区", "西湖社区"])
    out = tmp_path / "community.shp"
    _write(df, geoms, 4490, "community", "shp", out)
    ldid, records = _dbf_names(out.with_suffix(".dbf"))
    assert "东园社区".encode("gbk") in records and "西湖社区".encode("gbk") in records
    assert "东园社区".encode() not in records
    assert out.with_suffix(".cpg").read_text() == "GBK"
    assert ldid == 0x4D  # language driver: code page 936
    back = read_vector(out)
    assert back.columns["name"].tolist() == ["东园社区", "西湖社区"]


def test_shapefile_export_in_utf8_on_request(tmp_path):
    df, geoms = _community_table(["东园社区", "西湖社区"])
    out = tmp_path / "u" / "community.shp"
    out.parent.mkdir()
    _write(df, geoms, 4490, "community", "shp", out, encoding="UTF-8")
    _, records = _dbf_names(out.with_suffix(".dbf"))
    assert "东园社区".encode() in records
    assert out.with_suffix(".cpg").read_text() == "UTF-8"
    assert read_vector(out).columns["name"].tolist() == ["东园社区", "西湖社区"]


def test_gbk_export_refuses_a_character_gbk_cannot_write(tmp_path):
    """GDAL writes a blank field for a value it cannot encode: refused instead, naming record and character."""
    df, geoms = _community_table(["𠮷祥社区", "西湖社区"])
    with pytest.raises(UsageError) as e:
        _write(df, geoms, 4490, "community", "shp", tmp_path / "community.shp")
    assert "𠮷" in str(e.value) and COMM_A in str(e.value) and "--encoding utf-8" in str(e.value)
    _write(df, geoms, 4490, "community", "shp", tmp_path / "community.shp", encoding="UTF-8")
    assert read_vector(tmp_path / "community.shp").columns["name"].tolist() == ["𠮷祥社区", "西湖社区"]


def test_export_encoding_option_is_checked(tmp_path):
    with pytest.raises(UsageError, match="gbk"):
        export_level(None, "community", "shp", tmp_path / "c.shp", encoding="big5")  # type: ignore[arg-type]


def test_export_level_shapefile_round_trip_in_gbk(city, tmp_path):
    out = tmp_path / "exp" / "community.shp"
    n = export_level(city, "community", "shp", out)
    assert n == 2
    _, records = _dbf_names(out.with_suffix(".dbf"))
    assert "东园社区".encode("gbk") in records
    assert out.with_suffix(".cpg").read_text() == "GBK"
    out2 = tmp_path / "exp8" / "community.shp"
    export_level(city, "community", "shp", out2, encoding="utf-8")
    assert "东园社区".encode() in _dbf_names(out2.with_suffix(".dbf"))[1]


def test_point_layer_export_in_gbk(tmp_path):
    df = pd.DataFrame({"code": ["F1"], "name": ["社区卫生服务站"], "category": ["卫生"]})
    out = tmp_path / "facility.shp"
    _write(df, np.array([Point(117.21, 31.81)], dtype=object), 4490, "facility", "shp", out)
    assert read_vector(out).columns["name"].tolist() == ["社区卫生服务站"]


def test_cli_and_api_export_encoding(city, tmp_path, monkeypatch):
    """`gisgov export --format shp --encoding utf-8` and `GET /api/export?format=shp&encoding=utf-8`."""
    import io
    import zipfile

    from typer.testing import CliRunner

    from gisgov.cli.main import app
    from gisgov.config import get_settings

    url = city.url.render_as_string(hide_password=False)
    monkeypatch.setenv("GISGOV_DATABASE_URL", url)
    get_settings.cache_clear()
    runner = CliRunner()
    for enc, cpg in (("gbk", "GBK"), ("utf-8", "UTF-8")):
        out = tmp_path / enc / "community.shp"
        out.parent.mkdir()
        r = runner.invoke(
            app, ["export", "--level", "community", "--format", "shp", "--out", str(out), "--encoding", enc]
        )
        assert r.exit_code == 0, r.output
        assert out.with_suffix(".cpg").read_text().strip().upper() == cpg
    r = runner.invoke(app, ["export", "--level", "community", "--format", "shp", "--encoding", "big5"])
    assert r.exit_code == 2

    from auth_helpers import signed_in_client

    with signed_in_client(get_settings(), url, role="admin") as client:
        resp = client.get("/api/export", params={"level": "community", "format": "shp", "encoding": "utf-8"})
        assert resp.status_code == 200, resp.text
        z = zipfile.ZipFile(io.BytesIO(resp.content))
        [cpg_name] = [n for n in z.namelist() if n.endswith(".cpg")]
        assert z.read(cpg_name).decode().strip().upper() == "UTF-8"
        assert (
            client.get("/api/export", params={"level": "community", "format": "shp", "encoding": "latin1"}).status_code
            == 422
        )
