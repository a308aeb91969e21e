"""Staff 一格三员 and compound rules, pure: gaps, caseload, the import rows and headers, compound
breaches, property-mode shares and the 老旧小区 ratio on hand-built data with known answers."""

from __future__ import annotations

from collections import Counter

import pytest

from gisgov.governance import compounds as cr
from gisgov.governance import staff as st
from gisgov.governance.settings import GovernanceSettings


def test_grid_gaps_and_caseload():
    assert st.grid_gaps(["网格长", "专职网格员", "兼职网格员"]) == []
    assert st.grid_gaps(["专职网格员", "专职网格员"]) == ["no_leader"]
    assert st.grid_gaps(["网格长", "兼职网格员", "信息员"]) == ["no_full_time"]
    assert st.grid_gaps([]) == ["no_leader", "no_full_time"]
    assert st.caseload(450, 1) == 450.0
    assert st.caseload(1001, 3) == 333.7  # 1001 / 3 = 333.67
    assert st.caseload(300, 0) is None
    a = st.assess({"code": "g", "households": 1001}, Counter({"网格长": 1, "专职网格员": 2}), 500)
    assert (a["caseload"], a["caseload_over"], a["gaps"], a["ok"]) == (500.5, True, [], False)
    a = st.assess({"code": "g", "households": 1000}, Counter({"网格长": 1, "专职网格员": 2}), 500)
    assert (a["caseload"], a["caseload_over"], a["ok"]) == (500.0, False, True)  # at the ceiling: not over
    a = st.assess({"code": "g", "households": 90}, Counter({"网格长": 1}), 500)
    assert (a["caseload"], a["caseload_over"], a["gaps"], a["full_time"]) == (None, False, ["no_full_time"], 0)


def test_default_ceiling_is_the_grid_size_rule(monkeypatch):
    monkeypatch.delenv("GISGOV_STAFF_MAX_CASELOAD", raising=False)
    assert GovernanceSettings().staff_max_caseload == 500
    monkeypatch.setenv("GISGOV_STAFF_MAX_CASELOAD", "300")
    assert GovernanceSettings().staff_max_caseload == 300


@pytest.mark.parametrize(
    "headers",
    [
        ["网格编码", "角色", "姓名", "手机号"],
        [" 网格编码 ", "角　色", "姓名＊", "手机号（必填）"],  # spaces, ideographic space, full-width * and ()
        ["网格 编码", "职务", "姓 名", "联系电话"],  # synonyms
        ["ＧＲＩＤ＿ＣＯＤＥ", "Role", "NAME", "Phone"],  # full-width and English
    ],
)
def test_messy_headers_map_to_the_template(headers):
    found, missing = st.map_headers(headers)
    assert missing == [] and list(found) == list(st.HEADERS)
    assert [found[h] for h in st.HEADERS] == headers


def test_missing_headers_are_named():
    found, missing = st.map_headers(["网格编码", "姓名", "备注"])
    assert missing == ["角色", "手机号"] and found == {"网格编码": "网格编码", "姓名": "姓名"}


def test_rows_checked_with_row_and_rule():
    grids = {"340104001001001", "340104001001002"}
    recs = [
        {"网格编码": "340104001001001", "角色": "网格长", "姓名": "张三", "手机号": "138 1234 5678"},
        {
            "网格编码": "340104001001001",
            "角色": "ｆｕｌｌ-time grid worker",
            "姓名": "李四",
            "手机号": "+8613912345678",
        },
        {"网格编码": None, "角色": None, "姓名": None, "手机号": None},  # blank line: skipped
        {"网格编码": "34010400100100", "角色": "网格长", "姓名": "王五", "手机号": None},  # 14 digits
        {"网格编码": "340104001009001", "角色": "组长", "姓名": "", "手机号": "12345"},  # 3 column errors
        {"网格编码": "340104001001001", "角色": "网格长", "姓名": "张三", "手机号": None},  # duplicate
        {"网格编码": "340104001001002", "角色": "网格长", "姓名": "赵六", "手机号": "0551-12345678"},
        {"网格编码": "340104001001002", "角色": "网格长", "姓名": "钱七", "手机号": None},  # second leader
        {"网格编码": "340104001001002", "角色": "信息员", "姓名": "孙" * 51, "手机号": None},
    ]
    rows, errors = st.parse_rows(recs, grids)
    assert [(e.row, e.column, e.rule) for e in errors] == [
        (5, "网格编码", "grid_code_format"),
        (6, "网格编码", "grid_unknown"),
        (6, "角色", "role_unknown"),
        (6, "姓名", "name_required"),
        (6, "手机号", "phone_format"),
        (7, "姓名", "duplicate_row"),
        (9, "角色", "two_leaders"),
        (10, "姓名", "name_too_long"),
    ]
    assert [(r.row, r.grid_code, r.role, r.name, r.phone) for r in rows] == [
        (2, "340104001001001", "网格长", "张三", "13812345678"),
        (3, "340104001001001", "专职网格员", "李四", "13912345678"),
        (8, "340104001001002", "网格长", "赵六", "0551-12345678"),
    ]
    msg = errors[0].public()["message"]
    assert "第5行" in msg and "row 5" in msg and "grid_code_format" in msg and "网格编码" in msg


def test_phone_cleaning():
    assert st.clean_phone("13812345678.0") == "13812345678"  # a number cell
    assert st.clean_phone(" ") is None and st.clean_phone(None) is None
    for bad in ("1381234567", "23812345678", "abc", "138123456789"):
        with pytest.raises(ValueError):
            st.clean_phone(bad)


RULES = cr.parse_rules(
    {
        "large_households": 200,
        "old_before_year": 2000,
        "managed_modes": ["物业公司", "业主自治", "社区兜底"],
        "rules": {c: {"zh": "{large_households}户/{old_before_year}", "en": c} for c in cr.RULE_CODES},
    }
)


def C(code, comm, hh, year, mode, party, point):
    return cr.Compound(code, comm, f"小区{code[-2:]}", hh, year, mode, party, point)


HAND = [
    C("3401040010010001", "340104001001", 250, 1995, "物业公司", False, True),  # large, no party org
    C("3401040010010002", "340104001001", 200, 2005, "物业公司", True, False),  # exactly 200: no service point
    C("3401040010010003", "340104001001", 199, 1990, None, False, False),  # not large; old, unmanaged
    C("3401040010010004", "340104001001", 120, 1999, "社区兜底", False, False),  # old but managed: fine
    C("3401040010020001", "340104001002", 600, None, None, False, False),  # large, both; year unknown
    C("3401040010020002", "340104001002", 80, 2000, "业主自治", False, False),  # 2000 is not "before 2000"
]


def test_compound_breaches_exact():
    out = cr.check(HAND, RULES)
    assert [(b["code"], b["rules"]) for b in out["breaches"]] == [
        ("3401040010010001", ["large_no_party_org"]),
        ("3401040010010002", ["large_no_service_point"]),
        ("3401040010010003", ["old_no_property"]),
        ("3401040010020001", ["large_no_party_org", "large_no_service_point"]),
    ]
    assert out["breaches"][0]["labels"] == ["200户/2000 large_no_party_org"]


def test_community_shares_and_old_ratio():
    out = cr.check(HAND, RULES)
    a, b = out["communities"]
    assert a["code"] == "340104001001" and a["compounds"] == 4 and a["large"] == 2
    assert (a["old"], a["known_year"], a["unknown_year"], a["old_ratio"]) == (3, 4, 0, 0.75)
    assert {k: v["n"] for k, v in a["property_modes"].items()} == {"物业公司": 2, "业主自治": 0, "社区兜底": 1, "无": 1}
    assert a["property_modes"]["物业公司"]["share"] == 0.5 and a["property_modes"]["无"]["share"] == 0.25
    assert a["old_property_modes"] == {"物业公司": 1, "业主自治": 0, "社区兜底": 1, "无": 1}
    assert a["breaches"] == {"large_no_party_org": 1, "large_no_service_point": 1, "old_no_property": 1}
    assert (b["old"], b["known_year"], b["unknown_year"], b["old_ratio"]) == (0, 1, 1, 0.0)
    assert b["breaches"] == {"large_no_party_org": 1, "large_no_service_point": 1, "old_no_property": 0}
    t = out["totals"]
    assert (t["compounds"], t["old"], t["known_year"], t["old_ratio"], t["households"]) == (6, 3, 5, 0.6, 1449)


def test_reports_ratio_and_configurable_thresholds():
    # the reports' street: 267 compounds, 177 built before 2000
    cs = [
        C(f"340104001001{i:04d}", "340104001001", 10, 1990 if i < 177 else 2010, "物业公司", True, True)
        for i in range(267)
    ]
    assert cr.check(cs, RULES)["totals"]["old_ratio"] == round(177 / 267, 4)
    strict = cr.parse_rules(
        {
            "large_households": 100,
            "old_before_year": 2001,
            "rules": {
                "large_no_party_org": {"zh": "a", "en": "b"},
                "old_no_property": {"zh": "c", "en": "d", "enabled": False},
            },
        }
    )
    out = cr.check(HAND, strict)
    assert [(b["code"], b["rules"]) for b in out["breaches"]] == [
        ("3401040010010001", ["large_no_party_org"]),
        ("3401040010010003", ["large_no_party_org"]),
        ("3401040010010004", ["large_no_party_org"]),
        ("3401040010020001", ["large_no_party_org"]),
    ]
    assert out["communities"][1]["old"] == 1  # built in 2000 < 2001


def test_bad_rules_file_is_refused():
    with pytest.raises(cr.RulesError, match="unknown compound rules"):
        cr.parse_rules({"rules": {"nope": {"zh": "x", "en": "y"}}})
    with pytest.raises(cr.RulesError, match="managed_modes"):
        cr.parse_rules({"managed_modes": ["开发商"], "rules": {}})
    assert cr.load_rules().large_households == 200 and cr.load_rules().old_before_year == 2000
