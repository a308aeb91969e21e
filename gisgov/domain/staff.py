"""Grid staff roles (一格三员 and helpers): the one list of ``grid_staff.role`` values and their names.

Order = the ``grid_staff.role`` CHECK constraint (migration 0001) and the per-role counts of
``gisgov/stats/sql/grids.sql`` (role_1 … role_5). English names are lower case; pages capitalise.
"""

from __future__ import annotations

# (中文 role as stored, English name)
STAFF_ROLES: tuple[tuple[str, str], ...] = (
    ("网格长", "grid leader"),
    ("专职网格员", "full-time grid worker"),
    ("兼职网格员", "part-time grid worker"),
    ("网格指导员", "grid instructor"),
    ("信息员", "informant"),
)
ROLES: tuple[str, ...] = tuple(r for r, _ in STAFF_ROLES)
ROLE_EN: dict[str, str] = dict(STAFF_ROLES)
LEADER, FULL_TIME = "网格长", "专职网格员"
