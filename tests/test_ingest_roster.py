"""Resident rosters: CSV (UTF-8/GBK) and XLSX, ID-number checks, PII never in clear, roster beats estimate."""

from __future__ import annotations

import pandas as pd
import pytest
from ingest_helpers import COMM_A, gdf, load_city, snapshot
from openpyxl import load_workbook
from shapely.geometry import box
from sqlalchemy import create_engine, pool, text

from gisgov.ingest.export import write_roster_template
from gisgov.ingest.loader import UsageError
from gisgov.ingest.roster import TEMPLATE_HEADERS, ids_valid, load_roster
from gisgov.security.pii import Vault, id_check_digit, is_valid_id

B1, B2 = f"{COMM_A}00001", f"{COMM_A}00002"


def make_id(region: str, birth: str, seq: str) -> str:
    first = region + birth + seq
    return first + id_check_digit(first)


GOOD = [
    make_id("340104", "19560312", "031"),
    make_id("340104", "19600101", "042"),
    make_id("340104", "19851120", "123"),
]


@pytest.fixture(scope="module")
def vault():
    return Vault(b"k" * 32)


@pytest.fixture(scope="module")
def town(db_factory, tmp_path_factory):
    url = db_factory.create()
    eng = create_engine(url, poolclass=pool.NullPool)
    tmp = tmp_path_factory.mktemp("town")
    load_city(eng, tmp)
    from gisgov.ingest.loader import load_file

    p = tmp / "楼栋.geojson"
    gdf(
        [
            {"楼栋编码": B1, "地址": "东园路1号", "层数": 6, "geometry": box(117.2030, 31.8050, 117.2035, 31.8055)},
            {
                "楼栋编码": B2,
                "地址": "东园路2号",
                "层数": 3,
                "户数": 12,
                "geometry": box(117.2040, 31.8050, 117.2045, 31.8055),
            },
        ]
    ).to_file(p, driver="GeoJSON")
    rep = load_file(p, "building", engine=eng)
    assert rep.status == "loaded", [i.line() for i in rep.issues]
    yield eng
    eng.dispose()


def roster_frame(ids=GOOD) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "楼栋编码": [B1, B1, None],
            "地址": [None, None, "东园路2号"],
            "户号": ["101", "101", "2单元301"],
            "姓名": ["张三", "李四", "王五"],
            "性别": ["男", None, None],
            "与户主关系": ["户主", "妻子", "本人"],
            "身份证号": ids,
            "联系电话": ["13800138000", None, "0551-62345678"],
            "特殊人群": ["独居老人;低保", None, "残疾"],
        }
    )


def test_vectorised_id_check_matches_reference():
    vals = [*GOOD, GOOD[0][:-1] + ("0" if GOOD[0][-1] != "0" else "1"), "12345", "110105194912310021", None]
    assert list(ids_valid(pd.Series(vals))) == [v is not None and is_valid_id(v) for v in vals]


def test_bad_check_digit_rejects_whole_roster(town, tmp_path, vault):
    bad = GOOD[1][:-1] + ("1" if GOOD[1][-1] != "1" else "2")
    p = tmp_path / "名册_gbk.csv"
    roster_frame([GOOD[0], bad, GOOD[2]]).to_csv(p, index=False, encoding="gbk")
    before = snapshot(town)
    rep = load_roster(p, engine=town, vault=vault)
    assert rep.status == "rejected"
    assert [(i.record, i.rule) for i in rep.rejected] == [("row 3", "id_number")]
    issue = rep.rejected[0]
    assert "校验位" in issue.message and bad not in issue.value and issue.value.endswith(bad[-4:])
    assert snapshot(town) == before


def test_roster_loads_pii_protected_and_wins_over_estimate(town, tmp_path, vault):
    p = tmp_path / "名册.csv"
    roster_frame().to_csv(p, index=False, encoding="gbk")
    with town.connect() as c:
        assert c.execute(text("SELECT households_estimated FROM building WHERE code = :b"), {"b": B1}).scalar() is True
    rep = load_roster(p, engine=town, vault=vault)
    assert rep.status == "loaded", [i.line() for i in rep.issues]
    assert rep.counts["written"] == 3 and rep.counts["households_created"] == 2
    with town.connect() as c:
        hh = c.execute(text("SELECT code, building_code, door_no FROM household ORDER BY code")).all()
        assert hh == [(f"{B1}0101", B1, "101"), (f"{B2}0001", B2, "2单元301")]
        rows = c.execute(
            text(
                "SELECT r.name, r.gender, r.birth_year, r.role, r.id_last4, r.id_cipher, r.phone_masked, "
                "ST_Equals(r.geom, b.pos) FROM resident r JOIN household h ON h.id = r.household_id "
                "JOIN building b ON b.code = h.building_code ORDER BY r.id"
            )
        ).all()
        assert [r[:5] for r in rows] == [
            ("张三", "男", 1956, "户主", GOOD[0][-4:]),
            ("李四", "女", 1960, "配偶", GOOD[1][-4:]),
            ("王五", "男", 1985, "户主", GOOD[2][-4:]),
        ]
        assert vault.decrypt(rows[0][5]) == GOOD[0] and rows[0][6] == "138****8000" and all(r[7] for r in rows)
        dump = " ".join(
            str(x) for t in ("resident", "household") for x in c.execute(text(f"SELECT x::text FROM {t} x")).scalars()
        )
        for v in [*GOOD, "13800138000"]:
            assert v not in dump and v.encode().hex() not in dump  # never stored in clear
        groups = c.execute(
            text(
                "SELECT r.name, array_agg(g.group_code ORDER BY g.group_code) FROM resident_group g "
                "JOIN resident r ON r.id = g.resident_id GROUP BY r.name ORDER BY r.name"
            )
        ).all()
        assert dict(groups) == {"张三": ["dibao", "dujulaoren"], "王五": ["canji"]}
        # the roster's household count replaces the estimate; a surveyed count stays
        assert c.execute(
            text("SELECT households, households_estimated FROM building WHERE code = :b"), {"b": B1}
        ).one() == (1, False)
        assert c.execute(
            text("SELECT households, households_estimated FROM building WHERE code = :b"), {"b": B2}
        ).one() == (12, False)
    # loading it again: the ID numbers are already there
    before = snapshot(town)
    rep2 = load_roster(p, engine=town, vault=vault)
    assert rep2.status == "rejected" and {i.rule for i in rep2.rejected} == {"id_exists"}
    assert snapshot(town) == before


def test_unknown_building_group_and_duplicate_ids(town, tmp_path, vault):
    fresh_id = make_id("340104", "19700101", "555")
    df = roster_frame([fresh_id, fresh_id, None])
    df.loc[0, "楼栋编码"] = f"{COMM_A}09999"
    df.loc[2, "特殊人群"] = "外星人"
    df.loc[2, "地址"] = "不存在路9号"
    p = tmp_path / "名册.xlsx"
    df.to_excel(p, index=False)
    before = snapshot(town)
    rep = load_roster(p, engine=town, vault=vault)
    got = sorted((i.record, i.rule) for i in rep.rejected)
    assert got == [
        ("row 2", "building_unknown"),
        ("row 3", "id_duplicate"),
        ("row 4", "address_unknown"),
        ("row 4", "group_unknown"),
    ]
    assert snapshot(town) == before


def test_template_has_chinese_headers_and_loads(town, tmp_path, vault):
    p = write_roster_template(tmp_path / "居民名册模板.xlsx")
    wb = load_workbook(p)
    ws = wb["居民名册"]
    assert [c.value for c in ws[1]] == TEMPLATE_HEADERS and "填写说明" in wb.sheetnames
    # a grid worker fills it in: replace the example row
    ws.delete_rows(2)
    ws.append(
        [B2, None, "0202", "赵六", "女", 1990, "户主", make_id("340104", "19900505", "066"), None, "失业", "流动"]
    )
    ws.append([B2, None, "0202", "赵小六", None, 2015, "子女", None, None, None, "流动"])
    wb.save(p)
    rep = load_roster(p, engine=town, vault=vault, dry_run=True)
    assert rep.status == "dry-run", [i.line() for i in rep.issues]
    assert rep.counts["written"] == 2 and rep.counts["households_created"] == 1


def test_roster_without_required_columns_is_a_usage_error(town, tmp_path, vault):
    p = tmp_path / "乱表.csv"
    pd.DataFrame({"甲": [1], "乙": [2]}).to_csv(p, index=False)
    with pytest.raises(UsageError, match="template"):
        load_roster(p, engine=town, vault=vault)
