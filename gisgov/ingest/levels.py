"""What each loadable level is: table, code length, parent, geometry kind, attribute fields."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Level:
    name: str
    zh: str
    table: str
    code_len: int | None  # None: free-text code (facility) or no code (road)
    parent: str | None  # parent level name
    parent_col: str | None  # FK column holding the parent code
    geom: str  # polygon | point_or_polygon | line
    fields: tuple[str, ...]  # canonical attribute fields besides code and geometry

    @property
    def seq_width(self) -> int | None:
        if self.code_len is None or self.parent is None:
            return None
        parent = LEVELS[self.parent]
        return None if parent.code_len is None else self.code_len - parent.code_len


LEVELS: dict[str, Level] = {
    "street": Level("street", "街道", "street", 9, None, None, "polygon", ("name",)),
    "community": Level(
        "community",
        "社区",
        "community",
        12,
        "street",
        "street_code",
        "polygon",
        ("name", "street_code", "class", "kind", "rule_set"),
    ),
    "grid": Level(
        "grid", "网格", "grid", 15, "community", "community_code", "polygon", ("name", "community_code", "grid_level")
    ),
    "compound": Level(
        "compound",
        "小区",
        "compound",
        16,
        "community",
        "community_code",
        "polygon",
        ("name", "community_code", "year_built", "property_mode", "has_party_org"),
    ),
    "building": Level(
        "building",
        "楼栋",
        "building",
        17,
        "community",
        "community_code",
        "point_or_polygon",
        (
            "name",
            "community_code",
            "compound_code",
            "grid_code",
            "address",
            "floors",
            "units",
            "households",
            "households_estimated",
            "year_built",
        ),
    ),
    "facility": Level(
        "facility",
        "设施",
        "facility",
        None,
        "community",
        "community_code",
        "point_or_polygon",
        ("name", "community_code", "category", "kind", "address", "source"),
    ),
    "road": Level(
        "road", "道路", "road_edge", None, None, None, "line", ("name", "road_class", "highway", "foot", "oneway_foot")
    ),
}

# Order in which a whole city is loaded (parents first).
LOAD_ORDER = ("street", "community", "grid", "compound", "building", "facility", "road")
SPATIAL_LEVELS = tuple(LEVELS)
ALL_LEVELS = (*SPATIAL_LEVELS, "resident")
