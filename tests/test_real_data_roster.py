"""Resident rosters as communities really keep them (issue 11, item 3): title rows, two-row merged headers,
blank and total rows, full-width characters, IDs that Excel turned into numbers, ID birth date and region,
the template's text columns, 居住类型 per person."""

from __future__ import annotations

import pandas as pd
import pytest
from ingest_helpers import COMM_A, gdf, load_city, snapshot
from openpyxl import Workbook, load_workbook
from shapely.geometry import box
from sqlalchemy import create_engine, pool, text

from gisgov.domain.idnumber import id_problem
from gisgov.ingest.export import write_roster_template
from gisgov.ingest.loader import UsageError, load_file
from gisgov.ingest.roster import load_roster
from gisgov.security.pii import Vault, id_check_digit

B1, B2 = f"{COMM_A}00001", f"{COMM_A}00002"


def make_id(region: str, birth: str, seq: str) -> str:
    first = region + birth + seq
    return first + id_check_digit(first)


ID1 = make_id("340104", "19560312", "031")  # 男
ID2 = make_id("340104", "19600101", "042")  # 女
ID3 = make_id("340104", "19851120", "123")
ID4 = make_id("340104", "20100606", "011")
FULLWIDTH = str.maketrans("0123456789X", "０１２３４５６７８９ｘ")


@pytest.fixture(scope="module")
def vault():
    return Vault(b"r" * 32)


@pytest.fixture(scope="module")
def town(db_factory, tmp_path_factory):
    eng = create_engine(db_factory.create(), poolclass=pool.NullPool)
    tmp = tmp_path_factory.mktemp("town")
    load_city(eng, tmp)
    p = tmp / "楼栋.geojson"
    gdf(
        [
            {"楼栋编码": B1, "地址": "东园路1号", "geometry": box(117.2030, 31.8050, 117.2035, 31.8055)},
            {"楼栋编码": B2, "地址": "东园路2号", "geometry": box(117.2040, 31.8050, 117.2045, 31.8055)},
        ]
    ).to_file(p, driver="GeoJSON")
    assert load_file(p, "building", engine=eng).status == "loaded"
    yield eng
    eng.dispose()


def messy_workbook(path, people: list[list]) -> None:
    """As a community office sends it: a title, a 填报单位 line, a two-row header with merged group titles
    (楼栋编码/户号 merged down, 居民信息 merged across), a blank row in the middle, a 合计 row and a
    sign-off line at the end."""
    wb = Workbook()
    ws = wb.active
    ws.title = "花名册"
    ws.append(["东园社区居民花名册"])
    ws.merge_cells("A1:J1")
    ws.append(["填报单位：东园社区居委会", None, None, None, None, None, "填报日期：2026年5月"])
    ws.append(["楼栋编码", "户号", "居民信息", None, None, None, None, "联系方式", "居住类型", "备注"])
    ws.append([None, None, "姓名", "性别", "出生年份", "与户主关系", "身份证号", "联系电话", None, None])
    for rng in ("A3:A4", "B3:B4", "C3:G3", "I3:I4", "J3:J4"):
        ws.merge_cells(rng)
    for k, p in enumerate(people):
        if k == 2:
            ws.append([None] * 10)  # a blank row between households
        ws.append(p)
    ws.append(["合计", None, f"{len(people)}人"])
    ws.append(["填表人：李梅", None, None, None, None, "审核人：王强"])
    wb.save(path)


def person(b, door, name, gender, year, role, idn, phone, res="常住"):
    return [b, door, name, gender, year, role, idn, phone, res, None]


def rows_of(rep, action="rejected"):
    return [(i.record, i.rule) for i in rep.issues if i.action == action]


def test_messy_workbook_loads_with_notes_for_skipped_rows(town, tmp_path, vault):
    p = tmp_path / "东园社区花名册.xlsx"
    messy_workbook(
        p,
        [
            person(B1, "101", "张三", "男", 1956, "户主", ID1.translate(FULLWIDTH), "１３８００１３８０００"),
            person(B1, "１０１", "李四", "女", 1960, "配偶", ID2, None),
            person(B2, "2单元301", "王五", None, None, "户主", ID3, "0551-62345678"),
        ],
    )
    before = snapshot(town)
    rep = load_roster(p, engine=town, vault=vault, dry_run=True)
    assert rep.status == "dry-run", [i.line() for i in rep.issues]
    assert rep.counts["written"] == 3 and rep.counts["households_created"] == 2  # １０１ and 101: one household
    info = {(i.record, i.rule): i for i in rep.issues if i.action == "info"}
    assert "3–4" in info[("(file)", "header")].value
    assert info[("(file)", "row_skipped")].value == "7"  # the blank row between the households
    assert ("row 9", "row_skipped") in info and ("row 10", "row_skipped") in info  # 合计, 填表人
    assert snapshot(town) == before


def test_error_rows_are_named_as_the_spreadsheet_numbers_them(town, tmp_path, vault):
    p = tmp_path / "花名册.xlsx"
    bad = ID2[:-1] + ("1" if ID2[-1] != "1" else "2")
    messy_workbook(
        p,
        [
            person(B1, "101", "张三", "男", 1956, "户主", ID1, None),
            person(B1, "101", "李四", "女", 1960, "配偶", ID3, None),
            person(B2, "201", "王五", None, None, "户主", bad, None),
        ],
    )
    rep = load_roster(p, engine=town, vault=vault, dry_run=True)
    assert rows_of(rep) == [("row 8", "id_number")]  # rows 5, 6, blank 7, then 8


def test_header_row_can_be_given(town, tmp_path, vault):
    p = tmp_path / "名册.xlsx"
    wb = Workbook()
    ws = wb.active
    ws.append(["说明：姓名、户号必填"])  # mentions field names, but is not the header
    ws.append(["楼栋编码", "户号", "姓名", "身份证号"])
    ws.append([B1, "101", "张三", ID1])
    wb.save(p)
    rep = load_roster(p, engine=town, vault=vault, dry_run=True, header_row=2)
    assert rep.status == "dry-run" and rep.counts["written"] == 1, [i.line() for i in rep.issues]
    assert any(i.rule == "header" and "given" in i.value for i in rep.issues)
    with pytest.raises(UsageError, match="header-row 9"):
        load_roster(p, engine=town, vault=vault, dry_run=True, header_row=9)


def test_id_turned_into_a_number_by_excel_is_explained(town, tmp_path, vault):
    p = tmp_path / "名册.xlsx"
    wb = Workbook()
    ws = wb.active
    ws.append(["楼栋编码", "户号", "姓名", "身份证号", "联系电话"])
    ws.append([B1, 101, "张三", float(ID1[:17] + "0"), 13800138000])  # Excel keeps 15 digits: 3.40104195603120E+17
    ws.append([B1, 101, "李四", ID2[:15] + "000", None])  # a CSV round trip through Excel: last digits 000
    wb.save(p)
    rep = load_roster(p, engine=town, vault=vault, dry_run=True)
    assert rows_of(rep) == [("row 2", "id_number"), ("row 3", "id_number")]
    first, second = rep.rejected
    assert "Excel" in first.message and "15" in first.message and "E+17" in first.message
    assert "Excel" in second.message and "000" in second.message
    # the phone Excel stored as a number is fine
    assert not any(i.rule == "phone" for i in rep.issues)


def test_csv_with_excel_scientific_id(town, tmp_path, vault):
    p = tmp_path / "名册.csv"
    pd.DataFrame({"楼栋编码": [B1], "户号": ["101"], "姓名": ["张三"], "身份证号": ["3.40104195603120E+17"]}).to_csv(
        p, index=False, encoding="gbk"
    )
    rep = load_roster(p, engine=town, vault=vault, dry_run=True)
    assert rows_of(rep) == [("row 2", "id_number")] and "Excel" in rep.rejected[0].message


@pytest.mark.parametrize(
    "idn,words",
    [
        (make_id("340104", "19560230", "031"), "birth date"),  # 30 February
        (make_id("340104", "20990101", "031"), "birth date"),  # in the future
        (make_id("990104", "19560312", "031"), "region code"),  # no province 99
        (make_id("349999", "19560312", "031"), "region code"),  # no such county in Anhui
    ],
)
def test_id_birth_date_and_region_are_checked(town, tmp_path, vault, idn, words):
    assert id_problem(idn) is not None and words in id_problem(idn)
    p = tmp_path / "名册.csv"
    pd.DataFrame({"楼栋编码": [B1], "户号": ["101"], "姓名": ["张三"], "身份证号": [idn]}).to_csv(p, index=False)
    rep = load_roster(p, engine=town, vault=vault, dry_run=True)
    assert rows_of(rep) == [("row 2", "id_number")] and words in rep.rejected[0].message


def test_region_code_newer_than_the_birth_year_is_accepted():
    # 340104 was 西市区 until 2001 and is 蜀山区 since: a person born in 1950 registered there later is valid
    assert id_problem(make_id("340104", "19500101", "031")) is None


def test_template_id_and_phone_columns_are_text_for_every_row(town, tmp_path, vault):
    p = write_roster_template(tmp_path / "模板.xlsx")
    ws = load_workbook(p)["居民名册"]
    header = [c.value for c in ws[1]]
    for h in ("楼栋编码", "户号", "身份证号", "联系电话"):
        col = "ABCDEFGHIJK"[header.index(h)]
        assert ws.column_dimensions[col].number_format == "@", h  # the column, not only rows 1–2


def test_residence_is_kept_per_person(town, tmp_path, vault):
    p = tmp_path / "名册.xlsx"
    wb = Workbook()
    ws = wb.active
    ws.append(["楼栋编码", "户号", "姓名", "与户主关系", "身份证号", "居住类型"])
    ws.append([B2, "0305", "租客甲", "其他", ID4, "流动"])  # listed first, not the head
    ws.append([B2, "0305", "户主乙", "户主", ID3, "户籍"])
    wb.save(p)
    rep = load_roster(p, engine=town, vault=vault)
    assert rep.status == "loaded", [i.line() for i in rep.issues]
    with town.connect() as c:
        hh_res = c.execute(text("SELECT residence FROM household WHERE code = :c"), {"c": f"{B2}0305"}).scalar()
        per = dict(c.execute(text("SELECT name, residence FROM resident WHERE name IN ('租客甲', '户主乙')")).all())
        c.execute(text("DELETE FROM household WHERE code = :c"), {"c": f"{B2}0305"})
        c.commit()
    assert hh_res == "户籍"  # the head's, not the first row's
    assert per == {"租客甲": "流动", "户主乙": "户籍"}


def test_header_row_through_load_file(town, tmp_path, vault):
    p = tmp_path / "名册.xlsx"
    wb = Workbook()
    ws = wb.active
    ws.append(["东园社区居民花名册"])
    ws.append(["楼栋编码", "户号", "姓名", "身份证号"])
    ws.append([B1, "101", "张三", ID1])
    wb.save(p)
    rep = load_file(p, "resident", engine=town, vault=vault, dry_run=True, header_row=2)
    assert rep.status == "dry-run" and rep.counts["written"] == 1, [i.line() for i in rep.issues]
    with pytest.raises(UsageError, match="header-row"):
        load_file(p, "street", engine=town, header_row=2)
    with pytest.raises(UsageError, match="header-row"):
        load_file(p, "resident", engine=town, vault=vault, header_row=0)
