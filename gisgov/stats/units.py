"""Levels of the drill-down and the SQL fragments that select a unit and key its children (pure).

A *unit* is the whole city, a street 街道, a community 社区, a grid 网格 or a compound 小区. Its
direct children: city → streets, street → communities, community → its current grids (active plan,
or grids made outside plans) or, when it has none, its compounds, grid → the compounds that have
buildings in it, compound → none.

The fragments below are fixed strings chosen by level (never built from request text); values
(``:code``, ``:unit_id``) are bound parameters. Aliases: ``b`` building, ``g`` its current grid /
a row of ``grid_current()``, ``cp`` its compound / a compound row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gisgov.errors import InvalidInput, NotFound

CITY = "city"
LEVELS = ("street", "community", "grid", "compound")
CODE_DIGITS = {"street": 9, "community": 12, "grid": 15, "compound": 16}
LEVEL_LABELS = {CITY: ("全市", "City"), "street": ("街道", "Street"), "community": ("社区", "Community"),
                "grid": ("网格", "Grid"), "compound": ("小区", "Compound")}

# Staff roles of the schema (grid_staff.role), in the order grids.sql counts them (role_1 … role_5).
STAFF_ROLES = (("网格长", "Grid chief"), ("专职网格员", "Full-time grid worker"),
               ("兼职网格员", "Part-time grid worker"), ("网格指导员", "Grid instructor"), ("信息员", "Informant"))

_STREET_COMMUNITIES = "(SELECT c.code FROM community c WHERE c.street_code = :code)"

# Buildings of the unit (building b).
BUILDING_SCOPE = {
    CITY: "TRUE",
    "street": f"b.community_code IN {_STREET_COMMUNITIES}",
    "community": "b.community_code = :code",
    "grid": "b.grid_id = :unit_id",
    "compound": "b.compound_id = :unit_id",
}
# The child a building belongs to, by child level.
BUILDING_CHILD_KEY = {
    "street": "left(b.community_code, 9)",
    "community": "b.community_code",
    "grid": "g.code",
    "compound": "cp.code",
    None: "NULL::text",
}
# Compounds of the unit (compound cp): registered in the area; for a grid, those with a building in it.
COMPOUND_SCOPE = {
    CITY: "TRUE",
    "street": f"cp.community_code IN {_STREET_COMMUNITIES}",
    "community": "cp.community_code = :code",
    "grid": "cp.id IN (SELECT b.compound_id FROM building b WHERE b.grid_id = :unit_id)",
    "compound": "cp.id = :unit_id",
}
COMPOUND_CHILD_KEY = {
    "street": "left(cp.community_code, 9)",
    "community": "cp.community_code",
    "compound": "cp.code",
    None: "NULL::text",
}
# Current grids of the unit (g = grid_current()).
GRID_SCOPE = {
    CITY: "TRUE",
    "street": f"g.community_code IN {_STREET_COMMUNITIES}",
    "community": "g.community_code = :code",
    "grid": "g.id = :unit_id",
}
GRID_CHILD_KEY = {
    "street": "left(g.community_code, 9)",
    "community": "g.community_code",
    "grid": "g.code",
    None: "NULL::text",
}

_CODE_RE = re.compile(r"^[0-9]+$")


class UnknownLevel(NotFound):
    """A level that is not part of the drill-down."""


def check_level(level: str) -> str:
    if level not in LEVELS:
        raise UnknownLevel(
            f"未知层级 unknown level {level!r}: one of {', '.join(LEVELS)} (or /api/stats for the whole city)")
    return level


def check_code(level: str, code: str) -> str:
    """A code of ``level`` has exactly its number of digits (street 9, community 12, grid 15, compound 16)."""
    check_level(level)
    n = CODE_DIGITS[level]
    if len(code) != n or not _CODE_RE.match(code):
        zh = LEVEL_LABELS[level][0]
        raise InvalidInput(f"{zh}编码应为{n}位数字 {level} code must be {n} digits, got {code!r}")
    return code


def child_level(level: str, *, has_grids: bool = False) -> str | None:
    """The level of a unit's direct children (``None`` for a compound)."""
    return {CITY: "street", "street": "community", "community": "grid" if has_grids else "compound",
            "grid": "compound", "compound": None}[level]


@dataclass(frozen=True)
class Unit:
    """One resolved unit: its level, code, display name, database id (grid/compound) and ancestors."""

    level: str
    code: str | None
    name: str
    unit_id: int | None = None
    path: tuple[dict, ...] = field(default_factory=tuple)  # ancestors, city first: {level, code, name}
    has_grids: bool = False

    @property
    def child(self) -> str | None:
        return child_level(self.level, has_grids=self.has_grids)

    def params(self) -> dict:
        return {"code": self.code, "unit_id": self.unit_id}

    def fragments(self) -> dict[str, dict[str, str]]:
        """SQL fragments per source table (building / compound / grid) for this unit and its children."""
        child = self.child
        return {
            "building": {"scope": BUILDING_SCOPE[self.level], "child_key": BUILDING_CHILD_KEY[child]},
            "compound": {"scope": COMPOUND_SCOPE[self.level],
                         "child_key": COMPOUND_CHILD_KEY.get(child, "NULL::text")},
            "grid": {"scope": GRID_SCOPE.get(self.level, "FALSE"),
                     "child_key": GRID_CHILD_KEY.get(child, "NULL::text")},
        }


def city_name(dataset: dict | None) -> str:
    """Root label of the breadcrumb: the dataset name's first word (``示例城``), else 全市."""
    name = str((dataset or {}).get("name") or "").strip()
    return name.split()[0] if name else "全市"


def reference_year(dataset: dict | None, today_year: int) -> int:
    """Year ages are counted at: the dataset's ``reference_date`` (survey date), else this year."""
    ref = str((dataset or {}).get("reference_date") or "")
    m = re.match(r"^(\d{4})", ref)
    return int(m.group(1)) if m else today_year
