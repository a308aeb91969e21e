"""Levels of the drill-down and the SQL fragments that select a unit and key its children (pure).

A *unit* is the whole city, a street 街道, a community 社区, a grid 网格 or a compound 小区. Its
direct children: city → streets, street → communities, community → its current grids (active plan,
or grids made outside plans) or, when it has none, its compounds, grid → the compounds that have
buildings in it, compound → none.

The fragments below are fixed strings chosen by level (never built from request text); values
(``:code``, ``:unit_id``) are bound parameters. Aliases: ``b`` building, ``g`` its current grid /
a row of ``grid_current()``, ``cp`` its compound / a compound row.

Every figure is also limited to the caller's *area* (:class:`Area`): the node an account is bound
to (a street or community code prefix, or the buildings of one current grid). A unit inside the area
is counted whole; a unit that only overlaps it (the city, or the street of a community-bound account)
is counted over its part inside the area and marked ``limited``; children outside the area are left
out rather than shown as zeros.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gisgov.domain.staff import STAFF_ROLES as _STAFF_ROLES
from gisgov.errors import InvalidInput, NotFound

CITY = "city"
LEVELS = ("street", "community", "grid", "compound")
CODE_DIGITS = {"street": 9, "community": 12, "grid": 15, "compound": 16}
LEVEL_LABELS = {
    CITY: ("全市", "City"),
    "street": ("街道", "Street"),
    "community": ("社区", "Community"),
    "grid": ("网格", "Grid"),
    "compound": ("小区", "Compound"),
}

# Staff roles of the schema (grid_staff.role), in the order grids.sql counts them (role_1 … role_5).
STAFF_ROLES = _STAFF_ROLES

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

# The caller's area, by code length of the account's node ('' = whole city; 15 = one grid's buildings).
BUILDING_AREA = {
    0: "TRUE",
    9: "b.community_code LIKE :area_like",
    12: "b.community_code LIKE :area_like",
    15: "b.grid_id = ANY(CAST(:area_grids AS bigint[]))",
}
COMPOUND_AREA = {
    0: "TRUE",
    9: "cp.community_code LIKE :area_like",
    12: "cp.community_code LIKE :area_like",
    15: "cp.id IN (SELECT ab.compound_id FROM building ab WHERE ab.grid_id = ANY(CAST(:area_grids AS bigint[])))",
}
GRID_AREA = {
    0: "TRUE",
    9: "g.community_code LIKE :area_like",
    12: "g.community_code LIKE :area_like",
    15: "g.id = ANY(CAST(:area_grids AS bigint[]))",
}
# Children (alias x) inside the area, by child level.
CHILD_AREA = {
    "street": {
        0: "TRUE",
        9: "x.code = left(:area_like, 9)",
        12: "x.code = left(:area_like, 9)",
        15: "x.code = left(:area_like, 9)",
    },
    "community": {0: "TRUE", 9: "x.code LIKE :area_like", 12: "x.code LIKE :area_like", 15: "x.code LIKE :area_like"},
    "grid": {k: v.replace("g.", "x.") for k, v in GRID_AREA.items()},
    "compound": {k: v.replace("cp.", "x.") for k, v in COMPOUND_AREA.items()},
}

_CODE_RE = re.compile(r"^[0-9]+$")


class UnknownLevel(NotFound):
    """A level that is not part of the drill-down."""


def check_level(level: str) -> str:
    if level not in LEVELS:
        raise UnknownLevel(
            f"未知层级 unknown level {level!r}: one of {', '.join(LEVELS)} (or /api/stats for the whole city)"
        )
    return level


def check_code(level: str, code: str | None) -> str:
    """A code of ``level`` has exactly its number of digits (street 9, community 12, grid 15, compound 16)."""
    check_level(level)
    n = CODE_DIGITS[level]
    if code is None or len(code) != n or not _CODE_RE.match(code):
        zh = LEVEL_LABELS[level][0]
        raise InvalidInput(f"{zh}编码应为{n}位数字 {level} code must be {n} digits, got {code!r}")
    return code


def child_level(level: str, *, has_grids: bool = False) -> str | None:
    """The level of a unit's direct children (``None`` for a compound)."""
    return {
        CITY: "street",
        "street": "community",
        "community": "grid" if has_grids else "compound",
        "grid": "compound",
        "compound": None,
    }[level]


@dataclass(frozen=True)
class Area:
    """The part of the city a caller's figures come from: ``code`` '' (whole city), a street (9) or
    community (12) code prefix, or a grid code (15) whose current grid(s) are ``grid_ids``."""

    code: str = ""
    grid_ids: tuple[int, ...] = ()

    @property
    def everything(self) -> bool:
        return self.code == ""

    @property
    def size(self) -> int:
        return len(self.code)

    def params(self) -> dict[str, Any]:
        # a grid area's non-building fragments use its community (left 12)
        return {"area_like": self.code[:12] + "%", "area_grids": list(self.grid_ids)}

    def fragments(self) -> dict[str, str]:
        n = self.size
        return {"building": BUILDING_AREA[n], "compound": COMPOUND_AREA[n], "grid": GRID_AREA[n]}

    def child_filter(self, child: str | None) -> str:
        return "TRUE" if child is None else CHILD_AREA[child][self.size]

    def contains(self, level: str, code: str | None) -> bool | None:
        """True if the unit lies wholly inside the area, False if it only overlaps it (an ancestor),
        None when only the database can tell (a compound and a grid area)."""
        if self.everything:
            return True
        if level == CITY or code is None:
            return False
        if self.size == 15:
            if level == "grid":
                return code == self.code
            if level == "compound":
                return None
            return False
        return code.startswith(self.code)

    def overlaps(self, level: str, code: str | None) -> bool | None:
        """True if the unit and the area share ground (inside, or an ancestor of the area); None when
        only the database can tell (a compound and a grid area)."""
        if self.everything or level == CITY or code is None:
            return True
        if self.size == 15 and level == "compound":
            return None
        if self.size == 15 and level == "grid":
            return code == self.code
        return code.startswith(self.code) or self.code.startswith(code)


@dataclass(frozen=True)
class Unit:
    """One resolved unit: its level, code, display name, database id (grid/compound) and ancestors."""

    level: str
    code: str | None
    name: str
    unit_id: int | None = None
    path: tuple[dict[str, Any], ...] = field(default_factory=tuple)  # ancestors, city first: {level, code, name}
    has_grids: bool = False
    limited: bool = False  # figures cover only the part inside the caller's area

    @property
    def child(self) -> str | None:
        return child_level(self.level, has_grids=self.has_grids)

    def params(self) -> dict[str, Any]:
        return {"code": self.code, "unit_id": self.unit_id}

    def fragments(self, area: Area | None = None) -> dict[str, dict[str, str]]:
        """SQL fragments per source table (building / compound / grid) for this unit and its children,
        limited to ``area`` (default: the whole city)."""
        child = self.child
        a = (area or Area()).fragments()

        def both(scope: str, limit: str) -> str:
            return scope if limit == "TRUE" else f"({scope}) AND ({limit})"

        return {
            "building": {
                "scope": both(BUILDING_SCOPE[self.level], a["building"]),
                "child_key": BUILDING_CHILD_KEY[child],
            },
            "compound": {
                "scope": both(COMPOUND_SCOPE[self.level], a["compound"]),
                "child_key": COMPOUND_CHILD_KEY.get(child, "NULL::text"),
            },
            "grid": {
                "scope": both(GRID_SCOPE.get(self.level, "FALSE"), a["grid"]),
                "child_key": GRID_CHILD_KEY.get(child, "NULL::text"),
            },
        }


def city_name(dataset: dict[str, Any] | None) -> str:
    """Root label of the breadcrumb: the dataset name's first word (``示例城``), else 全市."""
    name = str((dataset or {}).get("name") or "").strip()
    return name.split()[0] if name else "全市"


def reference_year(dataset: dict[str, Any] | None, today_year: int) -> int:
    """Year ages are counted at: the dataset's ``reference_date`` (survey date), else this year."""
    ref = str((dataset or {}).get("reference_date") or "")
    m = re.match(r"^(\d{4})", ref)
    return int(m.group(1)) if m else today_year
