"""Pure parts of the drill-down: levels and codes, reference year, the document's rest/share logic,
the circle spec from the catalog, the dashboard page's asset slots, the caller's area and small-cell
suppression (no database)."""

from __future__ import annotations

import pytest

from gisgov.api.pages import PageMissing
from gisgov.api.routes.dashboard import PAGE
from gisgov.config import REPO_ROOT
from gisgov.coverage.catalog import load_catalog
from gisgov.errors import InvalidInput, NotFound
from gisgov.security import suppress
from gisgov.stats import privacy, shape, units
from gisgov.stats.circles import circle_spec


def test_codes_and_children_levels():
    assert units.check_code("grid", "340104001001001") == "340104001001001"
    with pytest.raises(InvalidInput, match="16 digits"):
        units.check_code("compound", "340104001001001")
    with pytest.raises(NotFound, match="unknown level"):
        units.check_level("resident")
    assert [units.child_level(lv) for lv in ("city", "street", "grid", "compound")] == [
        "street",
        "community",
        "compound",
        None,
    ]
    assert units.child_level("community", has_grids=True) == "grid"
    assert units.child_level("community", has_grids=False) == "compound"


def test_reference_year_and_city_name():
    assert units.reference_year({"reference_date": "2024-11-23"}, 2030) == 2024
    assert units.reference_year({}, 2030) == units.reference_year(None, 2030) == 2030
    assert units.city_name({"name": "示例城 Sample City（合成示例 synthetic）"}) == "示例城"
    assert units.city_name(None) == "全市"


def test_document_puts_unmatched_buildings_in_rest_and_computes_shares():
    unit = units.Unit("community", "340104001001", "甲社区", has_grids=True)
    people = {
        "kind": "people",
        "buildings": 2,
        "households": 10,
        "residents": 20,
        "age_0_14": 2,
        "age_15_59": 10,
        "age_60": 8,
        "age_80": 1,
        "age_unknown": 0,
        "special_people": 3,
    }
    rows = {
        "people": [
            people | {"is_total": True, "ck": None, "buildings": 3, "households": 12, "residents": 25, "age_15_59": 15},
            people | {"is_total": False, "ck": "340104001001001"},
            people
            | {
                "is_total": False,
                "ck": None,
                "buildings": 1,
                "households": 2,
                "residents": 5,
                "age_0_14": 0,
                "age_15_59": 5,
                "age_60": 0,
                "age_80": 0,
                "special_people": 0,
            },
        ],
        "groups": [
            {"is_total": True, "ck": None, "group_code": "dibao", "members": 3},
            {"is_total": False, "ck": "340104001001001", "group_code": "dibao", "members": 3},
        ],
    }
    doc = shape.document(
        unit,
        [{"code": "340104001001001", "name": "网格001"}],
        rows,
        groups=[{"code": "dibao", "name_zh": "低保", "name_en": "x"}],
        circles=None,
        coverage_run=None,
        ref_year=2024,
        dataset={"synthetic": True},
    )
    assert doc["children"]["rest"]["buildings"] == 1 and doc["children"]["rest"]["households"] == 2
    assert doc["stats"]["elderly_share"] == round(8 / 25, 4)
    assert doc["stats"]["special"]["per_1000"] == 120.0
    assert doc["children"]["items"][0]["stats"]["special"]["groups"]["dibao"] == 3
    assert doc["children"]["basis"] == "grids" and doc["synthetic"] is True and doc["coverage"] is None
    assert shape.share(1, 0) is None and shape.share(1, 3) == 0.3333


def test_circle_spec_from_the_catalog():
    cat = load_catalog(REPO_ROOT / "layers" / "service_circles.yaml")
    spec = circle_spec(cat)
    assert (spec.standard, spec.circle, spec.profile, spec.rule_sets) == (
        "report16_town",
        "c15",
        "standard",
        ("urban",),
    )
    assert len(spec.categories) == 16 and spec.categories[0][1] == "党建"
    assert spec.params()["req_circles"] == ["c15"] * 16
    with pytest.raises(InvalidInput, match="walking profile"):
        circle_spec(cat, profile="running")


def test_page_fills_asset_slots_and_escapes_the_config(tmp_path):
    page = PAGE.render(
        REPO_ROOT / "web", basemap_url="http://10.0.0.5/t/{z}/{x}/{y}.png", basemap_attribution="</script><b>x</b>"
    )
    assert "{{" not in page
    assert "/static/vendor/leaflet/dist/leaflet.js" in page and "/static/dashboard/dashboard.js?v=" in page
    assert "</script><b>" not in page and "<\\/script>" in page
    (tmp_path / "dashboard").mkdir()
    with pytest.raises(PageMissing, match=r"index\.html"):
        PAGE.render(tmp_path, basemap_url=None, basemap_attribution="")


# --- the caller's area and small-cell suppression (pure) ------------------------------------------------


def test_area_contains_and_overlaps():
    street, comm, grid = units.Area("340104001"), units.Area("340104001001"), units.Area("340104001001002", (7,))
    assert units.Area().contains("city", None) and units.Area().fragments()["building"] == "TRUE"
    assert not street.contains("city", None) and street.overlaps("city", None)
    assert street.contains("community", "340104001003") and not street.overlaps("community", "340104002001")
    assert comm.overlaps("street", "340104001") and not comm.contains("street", "340104001")
    assert not comm.overlaps("community", "340104001002") and not comm.overlaps("compound", "3401040010020001")
    assert grid.contains("grid", "340104001001002") and not grid.overlaps("grid", "340104001001001")
    assert grid.overlaps("community", "340104001001") and not grid.contains("community", "340104001001")
    assert grid.contains("compound", "3401040010010001") is None  # the database decides by its buildings
    assert grid.params() == {"area_like": "340104001001%", "area_grids": [7]}
    frag = units.Unit("street", "340104001", "x").fragments(comm)
    assert frag["building"]["scope"].endswith("AND (b.community_code LIKE :area_like)")
    assert units.Unit("street", "340104001", "x").fragments()["building"]["scope"].startswith("b.community_code IN")


def _recover(total, parts):
    lo_sum, hi_sum = sum(p[0] for p in parts), sum(p[1] for p in parts)
    return [(max(p[0], total[0] - (hi_sum - p[1])), min(p[1], total[1] - (lo_sum - p[0]))) for p in parts]


def _known(value, status, residents, k=5):
    return suppress.bounds(status, value, residents, k)


def test_labels_and_structural_zeros():
    assert suppress.label(7, suppress.SHOWN, 5) == 7
    assert suppress.label(0, suppress.PRIMARY, 5) == "<5" and suppress.label(2, suppress.PRIMARY, 10) == "<10"
    assert suppress.label(9, suppress.COMPLEMENT, 5) == "≥5" and suppress.label(1, suppress.HIDDEN, 5) is None
    assert suppress.small(0, 12, 5) and suppress.small(4, 12, 5) and not suppress.small(5, 12, 5)
    assert not suppress.small(0, 0, 5)  # nobody lives there: a structural zero is shown as 0
    assert suppress.bounds(suppress.PRIMARY, 3, 2, 5) == (0, 2)  # never above the resident count


def test_one_small_child_gets_a_complement_and_stays_unrecoverable():
    values = {"T": 20, "a": 2, "b": 8, "c": 10}
    res = {"T": 300, "a": 100, "b": 100, "c": 100}
    rel = [suppress.Relation("T", ("a", "b", "c"))]
    assert suppress.exposed(values, res, suppress.initial(values, res, values, 5), rel, 5) == ["a"]
    st = suppress.protect(values, res, rel, values, 5)
    assert st == {"T": "shown", "a": "primary", "b": "complement", "c": "shown"}
    ranges = _recover((20, 20), [_known(values[p], st[p], res[p]) for p in "abc"])
    assert ranges[0][0] < ranges[0][1]  # "a" is not pinned
    assert suppress.exposed(values, res, st, rel, 5) == []


def test_a_complement_of_exactly_k_is_not_enough_then_the_total_goes():
    values = {"T": 5, "a": 0, "b": 5}
    res = {"T": 13, "a": 3, "b": 10}
    rel = [suppress.Relation("T", ("a", "b"))]
    st = suppress.protect(values, res, rel, values, 5)
    assert st["a"] == "primary" and st["b"] == "complement" and st["T"] == "complement"
    assert suppress.exposed(values, res, st, rel, 5) == []


def test_two_levels_are_protected_together_and_zeros_with_people_are_small():
    # city = A + B, A = a1 + a2 + a3: a1 small; B's parts all shown
    values = {"city": 40, "A": 15, "B": 25, "a1": 0, "a2": 6, "a3": 9, "b1": 12, "b2": 13}
    res = dict.fromkeys(values, 50) | {"city": 100}
    rel = [
        suppress.Relation("city", ("A", "B")),
        suppress.Relation("A", ("a1", "a2", "a3")),
        suppress.Relation("B", ("b1", "b2")),
    ]
    st = suppress.protect(values, res, rel, values, 5)
    assert st["a1"] == "primary" and st["a2"] == "complement"  # the next-smallest, not the larger a3
    assert suppress.exposed(values, res, st, rel, 5) == []
    assert {c for c, s in st.items() if s == "shown"} == {"city", "A", "B", "a3", "b1", "b2"}
    # deterministic: the same statuses every time
    assert suppress.protect(values, res, rel, values, 5) == st


def test_privacy_universe_is_consistent_across_pages():
    rows = [
        {
            "kind": "cell",
            "community_code": "340104001001",
            "grid_code": None,
            "compound_code": "3401040010010001",
            "group_code": None,
            "residents": 100,
            "n": 12,
        },
        {
            "kind": "cell",
            "community_code": "340104001001",
            "grid_code": None,
            "compound_code": "3401040010010002",
            "group_code": None,
            "residents": 80,
            "n": 3,
        },
        {
            "kind": "cell",
            "community_code": "340104001002",
            "grid_code": None,
            "compound_code": "3401040010020001",
            "group_code": None,
            "residents": 90,
            "n": 20,
        },
        {
            "kind": "cell",
            "community_code": "340104001002",
            "grid_code": None,
            "compound_code": None,
            "group_code": None,
            "residents": 0,
            "n": 0,
        },
    ]
    u = privacy.build(rows, [], 5)
    street = units.Unit("street", "340104001", "s")
    total, kids, rest = privacy.page_cells(u, street, ["340104001001", "340104001002"])
    assert u.lookup(privacy.PEOPLE, total) == "shown" and rest == ()
    comm = units.Unit("community", "340104001001", "c")
    c_total, c_kids, _ = privacy.page_cells(u, comm, ["3401040010010001", "3401040010010002"])
    assert c_total == kids["340104001001"]  # the same cell on both pages
    assert u.lookup(privacy.PEOPLE, c_kids["3401040010010002"]) == "primary"
    assert (
        u.lookup(privacy.PEOPLE, c_kids["3401040010010001"]) != "shown" or u.lookup(privacy.PEOPLE, c_total) != "shown"
    )
    block = {"special": {"people": 3, "per_1000": 37.5, "groups": {}}}
    privacy.apply_block(u, block, c_kids["3401040010010002"])
    assert block["special"] == {"people": "<5", "per_1000": None, "groups": {}}
