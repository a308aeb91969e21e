"""Codes Excel stored as numbers in level tables (issue 11, item 1, spreadsheets): a number of 16+ digits cannot
be an exact code (Excel keeps 15 significant digits) and is refused; a shorter whole number is read exactly
and noted."""

from __future__ import annotations

import pytest
from ingest_helpers import COMM_A, load_city, snapshot
from openpyxl import Workbook
from sqlalchemy import create_engine, pool

from gisgov.ingest.loader import load_file
from gisgov.ingest.readers import read_any


def workbook(path, rows):
    wb = Workbook()
    ws = wb.active
    ws.append(["楼栋编码", "楼栋名称", "经度", "纬度"])
    for r in rows:
        ws.append(r)
    wb.save(path)
    return path


@pytest.fixture(scope="module")
def city(db_factory, tmp_path_factory):
    eng = create_engine(db_factory.create(), poolclass=pool.NullPool)
    load_city(eng, tmp_path_factory.mktemp("city"))
    yield eng
    eng.dispose()


def test_17_digit_code_typed_as_a_number_is_refused(city, tmp_path):
    """Excel turns 34010400100100013 typed into a cell into 3.4010400100100E+16 (…100010): before, the cell
    was silently read as "34010400100100010"."""
    typed = int(f"{COMM_A}00013")
    p = workbook(
        tmp_path / "楼栋.xlsx",
        [
            [float(f"{typed:.15g}"), "1号楼", 117.2051, 31.8151],  # what Excel keeps of it
            [f"{COMM_A}00014", "2号楼", 117.2061, 31.8151],  # a text cell: fine
        ],
    )
    before = snapshot(city)
    rep = load_file(p, "building", engine=city)
    assert rep.status == "rejected"
    bad = [i for i in rep.rejected if i.rule == "code_inexact"]
    assert [i.record for i in bad] == ["row 2"], [i.line() for i in rep.issues]
    assert "floating-point" in bad[0].message and bad[0].value == "3.40104001001e+16"
    assert snapshot(city) == before


def test_sixteen_digit_integer_cells_are_refused_too(tmp_path):
    p = workbook(tmp_path / "b.xlsx", [[3401040010010001, "1号楼", 117.2051, 31.8151]])
    raw = read_any(p)
    assert raw.inexact == {"楼栋编码": {0: "3401040010010001 (number)"}}


def test_code_below_the_limit_is_exact_and_noted(city, tmp_path):
    """A 12-digit community code stored as a number is read exactly, with a note that the column should be
    text; small numbers (floors, households) are not noted."""
    wb = Workbook()
    ws = wb.active
    ws.append(["小区编码", "小区名称", "所属社区编码", "建成年份", "wkt"])
    ws.append(
        [
            f"{COMM_A}0091",
            "桃源小区",
            int(COMM_A),
            1998,
            "POLYGON ((117.2051 31.8151, 117.2061 31.8151, 117.2061 31.8161, 117.2051 31.8161, 117.2051 31.8151))",
        ]
    )
    p = tmp_path / "小区.xlsx"
    wb.save(p)
    raw = read_any(p)
    assert raw.columns["所属社区编码"].tolist() == [COMM_A] and raw.inexact == {}
    [note] = [n for n in raw.notes if "所属社区编码" in n]
    assert "text" in note and COMM_A in note
    assert not any("建成年份" in n for n in raw.notes)
    rep = load_file(p, "compound", engine=city, dry_run=True)
    assert rep.status == "dry-run", [i.line() for i in rep.issues]
    assert any(i.action == "info" and "所属社区编码" in i.value for i in rep.issues)
