"""Roles, permissions and hierarchy scope (pure: no database, no HTTP).

Every account has ONE role and is bound to ONE node of the hierarchy (its *scope*):

| role | 中文 | bound to | may |
|---|---|---|---|
| admin | 管理员 | the whole city | everything, incl. accounts, audit, unmasking |
| street_leader | 街道领导 | a street | see everything in the street incl. named residents; activate plans |
| community_staff | 社区工作者 | a community | residents of the community; rosters; unmask ID/phone (audited) |
| grid_worker | 网格员 | a grid | residents of the own grid (active plan) |
| planner | 规划人员 | a street (or community) | edit grid plans, run analyses; aggregates only |
| viewer | 只读 | any node | aggregates only |

A scope is a code prefix: a street code (9 digits) covers its communities, grids, compounds,
buildings and households; a community code (12) likewise; a grid code (15) covers that grid of the
active plan (resident rows: enforced by PostgreSQL row-level security, see migration 0005). For
non-personal data (outlines, buildings, compounds) a grid-bound account sees its community.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Role(StrEnum):
    admin = "admin"
    street_leader = "street_leader"
    community_staff = "community_staff"
    grid_worker = "grid_worker"
    planner = "planner"
    viewer = "viewer"


ROLE_LABELS: dict[Role, str] = {
    Role.admin: "管理员",
    Role.street_leader: "街道领导",
    Role.community_staff: "社区工作者",
    Role.grid_worker: "网格员",
    Role.planner: "规划人员",
    Role.viewer: "只读",
}

# Code lengths an account of each role may be bound to ('' = whole city).
SCOPE_LEVELS: dict[Role, tuple[int, ...]] = {
    Role.admin: (0,),
    Role.street_leader: (9,),
    Role.community_staff: (12,),
    Role.grid_worker: (15,),
    Role.planner: (9, 12),
    Role.viewer: (9, 12, 15),
}


class Perm(StrEnum):
    """What a role may do (scope limits where)."""

    read_aggregates = "read_aggregates"  # counts, coverage figures, maps of outlines
    read_personal = "read_personal"  # named residents, households, staff contacts, resident layer
    read_special_groups = "read_special_groups"  # special-group membership of a named person
    unmask = "unmask"  # full ID number / phone (audited)
    export_personal = "export_personal"  # resident exports
    import_data = "import_data"  # file imports and rosters
    edit_plans = "edit_plans"  # propose / repair / edit sessions / save drafts
    activate_plans = "activate_plans"
    run_analyses = "run_analyses"  # coverage compute, what-if commit, siting
    manage_users = "manage_users"
    read_audit = "read_audit"


_ALL = frozenset(Perm)
PERMISSIONS: dict[Role, frozenset[Perm]] = {
    Role.admin: _ALL,
    Role.street_leader: frozenset(
        {
            Perm.read_aggregates,
            Perm.read_personal,
            Perm.read_special_groups,
            Perm.export_personal,
            Perm.edit_plans,
            Perm.activate_plans,
            Perm.run_analyses,
        }
    ),
    Role.community_staff: frozenset(
        {
            Perm.read_aggregates,
            Perm.read_personal,
            Perm.read_special_groups,
            Perm.unmask,
            Perm.export_personal,
            Perm.import_data,
        }
    ),
    Role.grid_worker: frozenset({Perm.read_aggregates, Perm.read_personal, Perm.read_special_groups}),
    Role.planner: frozenset({Perm.read_aggregates, Perm.edit_plans, Perm.run_analyses}),
    Role.viewer: frozenset({Perm.read_aggregates}),
}

# Catalog (layers/*.yaml) trust levels each role reaches: min_role of a layer must be in this set.
CATALOG_LEVEL: dict[Role, str] = {
    Role.admin: "admin",
    Role.street_leader: "street",
    Role.community_staff: "community",
    Role.grid_worker: "grid_worker",
    Role.planner: "public",
    Role.viewer: "public",
}

_CODE = re.compile(r"^([0-9]{9}|[0-9]{12}|[0-9]{15})?$")


def check_scope(role: Role | str, scope_code: str) -> str:
    """The scope code if a ``role`` may be bound to it, else ValueError naming the rule."""
    role = Role(role)
    scope_code = (scope_code or "").strip()
    if not _CODE.match(scope_code):
        raise ValueError(f"scope {scope_code!r} is not a street (9), community (12) or grid (15) code")
    if len(scope_code) not in SCOPE_LEVELS[role]:
        allowed = " / ".join(
            {0: "全市 whole city", 9: "街道 street", 12: "社区 community", 15: "网格 grid"}[n]
            for n in SCOPE_LEVELS[role]
        )
        raise ValueError(f"role {role.value} ({ROLE_LABELS[role]}) must be bound to: {allowed}")
    return scope_code


@dataclass(frozen=True)
class Principal:
    """Who is making a request: the signed-in account, its role and scope."""

    user_id: int
    username: str
    display_name: str
    role: Role
    scope_code: str  # '' = whole city
    auth: str = "cookie"  # cookie | bearer
    csrf: str | None = None
    session_key: bytes | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return ROLE_LABELS[self.role]

    def can(self, perm: Perm) -> bool:
        return perm in PERMISSIONS[self.role]

    @property
    def exact_special_groups(self) -> bool:
        """The one rule for special-group figures: exact counts (within the own scope) for roles with
        ``read_special_groups``; every other role sees them with small cells suppressed (statistics,
        service circles) or not at all (grid plans)."""
        return self.can(Perm.read_special_groups)

    @property
    def db_scope(self) -> str:
        """Value of the transaction setting ``gisgov.scope`` (row-level security)."""
        return self.scope_code or "*"

    @property
    def area_prefix(self) -> str:
        """Code prefix of the area whose NON-personal data this account sees ('' = all).
        A grid-bound account sees its community's outlines, buildings and compounds."""
        return self.scope_code[:12]

    def covers(self, code: str | None) -> bool:
        """True if a hierarchy code (street/community/grid/compound/building/household) lies in the
        account's area, or is an ancestor of it (a community leader may see its street's outline)."""
        if code is None:
            return False
        p = self.area_prefix
        return code.startswith(p) or p.startswith(code)

    def contains(self, code: str | None) -> bool:
        """True if ``code`` lies inside the area (ancestors excluded)."""
        return code is not None and code.startswith(self.area_prefix)

    @property
    def catalog_level(self) -> str:
        return CATALOG_LEVEL[self.role]

    def public(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "display_name": self.display_name,
            "role": self.role.value,
            "role_label": self.label,
            "scope": self.scope_code,
            "permissions": sorted(p.value for p in PERMISSIONS[self.role]),
        }
