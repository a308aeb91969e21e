"""Pure parts of the drill-down: levels and codes, reference year, the document's rest/share logic,
the circle spec from the catalog, and the dashboard page's asset slots (no database)."""

from __future__ import annotations

import pytest

from gisgov.api.pages import PageMissing
from gisgov.api.routes.dashboard import PAGE
from gisgov.config import REPO_ROOT
from gisgov.coverage.catalog import load_catalog
from gisgov.errors import InvalidInput, NotFound
from gisgov.stats import shape, units
from gisgov.stats.circles import circle_spec


def test_codes_and_children_levels():
    assert units.check_code("grid", "340104001001001") == "340104001001001"
    with pytest.raises(InvalidInput, match="16 digits"):
        units.check_code("compound", "340104001001001")
    with pytest.raises(NotFound, match="unknown level"):
        units.check_level("resident")
    assert [units.child_level(lv) for lv in ("city", "street", "grid", "compound")] == ["street", "community", "compound", None]
    assert units.child_level("community", has_grids=True) == "grid"
    assert units.child_level("community", has_grids=False) == "compound"


def test_reference_year_and_city_name():
    assert units.reference_year({"reference_date": "2024-11-23"}, 2030) == 2024
    assert units.reference_year({}, 2030) == units.reference_year(None, 2030) == 2030
    assert units.city_name({"name": "示例城 Sample City（合成示例 synthetic）"}) == "示例城"
    assert units.city_name(None) == "全市"


def test_document_puts_unmatched_buildings_in_rest_and_computes_shares():
    unit = units.Unit("community", "340104001001", "甲社区", has_grids=True)
    people = {"kind": "people", "buildings": 2, "households": 10, "residents": 20, "age_0_14": 2, "age_15_59": 10,
              "age_60": 8, "age_80": 1, "age_unknown": 0, "special_people": 3}
    rows = {
        "people": [people | {"is_total": True, "ck": None, "buildings": 3, "households": 12, "residents": 25,
                             "age_15_59": 15},
                   people | {"is_total": False, "ck": "340104001001001"},
                   people | {"is_total": False, "ck": None, "buildings": 1, "households": 2, "residents": 5,
                             "age_0_14": 0, "age_15_59": 5, "age_60": 0, "age_80": 0, "special_people": 0}],
        "groups": [{"is_total": True, "ck": None, "group_code": "dibao", "members": 3},
                   {"is_total": False, "ck": "340104001001001", "group_code": "dibao", "members": 3}],
    }
    doc = shape.document(unit, [{"code": "340104001001001", "name": "网格001"}], rows,
                         groups=[{"code": "dibao", "name_zh": "低保", "name_en": "x"}], circles=None, coverage_run=None,
                         ref_year=2024, dataset={"synthetic": True})
    assert doc["children"]["rest"]["buildings"] == 1 and doc["children"]["rest"]["households"] == 2
    assert doc["stats"]["elderly_share"] == round(8 / 25, 4)
    assert doc["stats"]["special"]["per_1000"] == 120.0
    assert doc["children"]["items"][0]["stats"]["special"]["groups"]["dibao"] == 3
    assert doc["children"]["basis"] == "grids" and doc["synthetic"] is True and doc["coverage"] is None
    assert shape.share(1, 0) is None and shape.share(1, 3) == 0.3333


def test_circle_spec_from_the_catalog():
    cat = load_catalog(REPO_ROOT / "layers" / "service_circles.yaml")
    spec = circle_spec(cat)
    assert (spec.standard, spec.circle, spec.profile, spec.rule_sets) == ("report16_town", "c15", "standard", ("urban",))
    assert len(spec.categories) == 16 and spec.categories[0][1] == "党建"
    assert spec.params()["req_circles"] == ["c15"] * 16
    with pytest.raises(InvalidInput, match="walking profile"):
        circle_spec(cat, profile="running")


def test_page_fills_asset_slots_and_escapes_the_config(tmp_path):
    page = PAGE.render(REPO_ROOT / "web", basemap_url="http://10.0.0.5/t/{z}/{x}/{y}.png",
                       basemap_attribution="</script><b>x</b>")
    assert "{{" not in page
    assert "/static/vendor/leaflet/dist/leaflet.js" in page and "/static/dashboard/dashboard.js?v=" in page
    assert "</script><b>" not in page and "<\\/script>" in page
    (tmp_path / "dashboard").mkdir()
    with pytest.raises(PageMissing, match="index.html"):
        PAGE.render(tmp_path, basemap_url=None, basemap_attribution="")
