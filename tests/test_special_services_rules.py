"""Special-group service rules (pure): the configuration file, beyond-the-circle and visit-overdue
decisions, name masking."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from gisgov.coverage.catalog import load_catalog
from gisgov.services import rules

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def catalog():
    return load_catalog("layers/service_circles.yaml")


def test_packaged_file_resolves_against_the_catalog(catalog):
    cfg = rules.load_config(None, catalog)
    assert cfg.circle == "c10" and cfg.profile == "elderly"
    assert cfg.budget_m(catalog) == pytest.approx(10 * 60 * 0.8)
    byg = {n.group: [s.code for s in n.services] for n in cfg.needs}
    assert byg["dujulaoren"] == ["gb_daycare", "gb_nursing_home"]
    assert byg["canji"] == ["canlian"]
    assert byg["kunjingertong"] == ["child_home"] == byg["liushouertong"]
    child = cfg.need("liushouertong").services[0]
    assert child.select[0].category == "minzheng" and "儿童之家" in child.select[0].kinds
    assert cfg.visits["dujulaoren"] == 30 and cfg.visit_category == "teshu"
    rules.check_groups(
        cfg, {"dujulaoren", "canji", "kunjingertong", "liushouertong", "tekun", "jingshen", "shequjiaozheng"}
    )
    with pytest.raises(rules.ConfigError, match="group_exists"):
        rules.check_groups(cfg, {"dujulaoren"})


@pytest.mark.parametrize(
    "doc, rule",
    [
        ({"needs": [{"services": ["canlian"]}]}, "required_field"),
        ({"needs": [{"group": "canji", "services": []}]}, "services_required"),
        ({"needs": [{"group": "canji", "services": ["no_such"]}]}, "service_exists"),
        (
            {"needs": [{"group": "canji", "services": ["canlian"]}, {"group": "canji", "services": ["canlian"]}]},
            "unique_group",
        ),
        ({"needs": [{"group": "canji", "services": [{"code": "x"}]}]}, "required_field"),
        ({"needs": [{"group": "canji", "services": [3]}]}, "service_shape"),
        ({"visits": {"canji": 0}}, "visit_days"),
        ({"visits": {"canji": "30"}}, "visit_days"),
        ([1, 2], "config_shape"),
    ],
)
def test_config_errors_name_the_rule(catalog, doc, rule):
    with pytest.raises(rules.ConfigError, match=rule):
        rules.parse_config(doc, catalog)


def test_unknown_circle_or_profile_refused(catalog):
    with pytest.raises(Exception, match="unknown circle"):
        rules.parse_config({"circle": "c99"}, catalog)
    with pytest.raises(Exception, match="unknown profile"):
        rules.parse_config({"profile": "runner"}, catalog)


def test_beyond_decision():
    res = [
        {"id": 1, "building_id": 10, "groups": ["dujulaoren"]},
        {"id": 2, "building_id": 11, "groups": ["dujulaoren", "canji"]},
        {"id": 3, "building_id": 12, "groups": ["canji"]},
        {"id": 4, "building_id": 13, "groups": ["dibao"]},
    ]
    dist = {"dujulaoren": {10: 480.0, 11: 480.01}, "canji": {11: math.inf, 12: 12.0}}
    got = rules.beyond(res, dist, 480.0, ["dujulaoren", "canji"])
    assert [(r["id"], r["group"], r["distance_m"]) for r in got] == [(2, "dujulaoren", 480.0), (2, "canji", None)]
    assert rules.is_beyond(None, 1) and rules.is_beyond(float("nan"), 1) and not rules.is_beyond(1.0, 1)


def test_overdue_decision():
    visits = {"dujulaoren": 30, "canji": 60}
    res = [
        {"id": 1, "groups": ["dujulaoren"], "last_visit": NOW - timedelta(days=10)},
        {"id": 2, "groups": ["dujulaoren"], "last_visit": NOW - timedelta(days=45)},
        {"id": 3, "groups": ["canji"], "last_visit": NOW - timedelta(days=45)},
        {"id": 4, "groups": ["canji", "dujulaoren"], "last_visit": NOW - timedelta(days=45)},  # strictest: 30
        {"id": 5, "groups": ["canji"], "last_visit": None},
        {"id": 6, "groups": ["dibao"], "last_visit": None},  # no rule
    ]
    got = {r["id"]: r for r in rules.overdue(res, visits, NOW)}
    assert set(got) == {2, 4, 5}
    assert got[2]["days_overdue"] == 15 and got[2]["due"] == NOW - timedelta(days=15)
    assert got[4]["rule_group"] == "dujulaoren" and got[4]["days"] == 30
    assert got[5]["due"] is None and got[5]["days_overdue"] is None
    assert rules.group_overdue(["canji", "dujulaoren"], NOW - timedelta(days=45), visits, NOW) == {"dujulaoren"}
    assert rules.group_overdue(["canji"], None, visits, NOW) == {"canji"}


def test_mask_name():
    assert rules.mask_name("张三") == "张*"
    assert rules.mask_name("欧阳娜娜") == "欧***"
    assert rules.mask_name("李") == "李*"
    assert rules.mask_name("") is None and rules.mask_name(None) is None
