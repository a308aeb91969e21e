"""Grid staff 一格三员 (pure: no database).

- Roles (``grid_staff.role``): 网格长 (grid leader), 专职网格员 (full-time grid worker), 兼职网格员
  (part-time), 网格指导员 (instructor), 信息员 (informant).
- The rule: every grid has a 网格长 (``no_leader``) and at least one 专职网格员 (``no_full_time``).
- Caseload: households of the grid / its 专职网格员; flagged (``caseload_over``) above the ceiling
  ``GISGOV_STAFF_MAX_CASELOAD`` (500: grids are drawn at 300-500 households with one full-time worker).
  A grid without a full-time worker has no caseload (it is a ``no_full_time`` gap instead).
- The XLSX template: headers 网格编码, 角色, 姓名, 手机号 (spaces, full-width characters, a trailing
  ``*`` and a few synonyms tolerated); :func:`parse_rows` checks every row and names row and rule.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

from gisgov.domain.staff import FULL_TIME, LEADER, ROLE_EN, ROLES

GAPS = {
    "no_leader": "缺网格长 no grid leader (网格长)",
    "no_full_time": "缺专职网格员 no full-time grid worker (专职网格员)",
}
CASELOAD_OVER = "caseload_over"
MAX_NAME = 50

HEADERS = ("网格编码", "角色", "姓名", "手机号")
HEADER_EN = {"网格编码": "grid code", "角色": "role", "姓名": "name", "手机号": "mobile phone"}
_SYNONYMS = {
    "网格编码": ("网格编码", "网格代码", "网格编号", "gridcode", "grid"),
    "角色": ("角色", "职务", "岗位", "role"),
    "姓名": ("姓名", "名字", "name"),
    "手机号": ("手机号", "手机号码", "手机", "联系电话", "电话", "phone", "mobile"),
}
_ROLE_ALIASES = {unicodedata.normalize("NFKC", k).lower().replace(" ", ""): r for r in ROLES for k in (r, ROLE_EN[r])}
_MOBILE = re.compile(r"^1[3-9][0-9]{9}$")
_LANDLINE = re.compile(r"^0[1-9][0-9]{1,2}-?[0-9]{7,8}$")
_GRID = re.compile(r"^[0-9]{15}$")

ROW_RULES = {
    "grid_code_format": "网格编码应为15位数字 grid code must be 15 digits",
    "grid_unknown": "网格不存在或不在您的辖区 no current grid with this code in your area",
    "role_unknown": f"角色无效 unknown role ({'/'.join(ROLES)})",
    "name_required": "姓名不能为空 name is required",
    "name_too_long": f"姓名过长 name longer than {MAX_NAME} characters",
    "phone_format": "手机号格式错误 phone must be an 11-digit mobile (1[3-9]…) or a landline (0xx-xxxxxxx)",
    "duplicate_row": "重复行 the same grid, role and name appear twice",
    "two_leaders": "同一网格有多名网格长 more than one 网格长 for one grid",
}


def role_of(value: str | None) -> str | None:
    """The schema role for a cell (Chinese or English, full-width or spaced), or None."""
    if value is None:
        return None
    return _ROLE_ALIASES.get(unicodedata.normalize("NFKC", str(value)).lower().replace(" ", ""))


def normalize_header(h: str | None) -> str:
    """NFKC (full-width → half-width), no whitespace anywhere, no required-marks (*), lower case."""
    s = unicodedata.normalize("NFKC", "" if h is None else str(h))
    s = re.sub(r"\s+", "", s).strip("*＊:：")
    s = re.sub(r"[（(].*?[)）]$", "", s)  # "手机号(必填)" → "手机号"
    return s.lower().replace("_", "")


def map_headers(headers: list[str]) -> tuple[dict[str, str], list[str]]:
    """{template header: the file's column} and the template headers missing from the file."""
    found: dict[str, str] = {}
    for col in headers:
        key = normalize_header(col)
        for want, names in _SYNONYMS.items():
            if want not in found and key in names:
                found[want] = col
                break
    return found, [h for h in HEADERS if h not in found]


def clean_phone(value) -> str | None:
    """Digits of a mobile (``+86``/``86`` prefix, spaces and dashes dropped) or a landline; None if blank."""
    if value is None:
        return None
    s = unicodedata.normalize("NFKC", str(value)).strip()
    if s.endswith(".0"):  # a number cell read as float text
        s = s[:-2]
    s = re.sub(r"[\s()]", "", s)
    if not s:
        return None
    if s.startswith("+86"):
        s = s[3:]
    elif s.startswith("86") and len(s) == 13:
        s = s[2:]
    if _MOBILE.match(s.replace("-", "")):
        return s.replace("-", "")
    if _LANDLINE.match(s):
        return s
    raise ValueError("phone_format")


def check_name(value) -> str:
    # whitespace (incl. the ideographic space) collapsed; no NFKC: names keep their full-width （合成） label
    name = re.sub(r"\s+", " ", ("" if value is None else str(value)).replace("\x00", "")).strip()
    if not name:
        raise ValueError("name_required")
    if len(name) > MAX_NAME:
        raise ValueError("name_too_long")
    return name


@dataclass(frozen=True)
class StaffRow:
    row: int  # the spreadsheet row (header = 1)
    grid_code: str
    role: str
    name: str
    phone: str | None = field(repr=False)  # clear; protect before storing, never print


@dataclass(frozen=True)
class RowError:
    row: int
    column: str
    rule: str

    def public(self) -> dict:
        col = f"{self.column} {HEADER_EN.get(self.column, '')}".strip()
        return {
            "row": self.row,
            "column": col,
            "rule": self.rule,
            "message": f"第{self.row}行 row {self.row}，{col}：{ROW_RULES[self.rule]} (rule: {self.rule})",
        }


def parse_rows(
    records: list[dict], known_grids: set[str], *, first_row: int = 2
) -> tuple[list[StaffRow], list[RowError]]:
    """Check every row of an import (``records``: template header → cell) against the rules; rows
    come back only when there is no error at all (all or nothing is the caller's job)."""
    rows: list[StaffRow] = []
    errors: list[RowError] = []
    seen: Counter = Counter()
    for i, rec in enumerate(records):
        n = first_row + i
        if all(v is None or str(v).strip() == "" for v in rec.values()):
            continue  # blank line
        bad = len(errors)
        code = unicodedata.normalize("NFKC", str(rec.get("网格编码") or "")).strip()
        if code.endswith(".0"):
            code = code[:-2]
        if not _GRID.match(code):
            errors.append(RowError(n, "网格编码", "grid_code_format"))
        elif code not in known_grids:
            errors.append(RowError(n, "网格编码", "grid_unknown"))
        role = role_of(rec.get("角色"))
        if role is None:
            errors.append(RowError(n, "角色", "role_unknown"))
        try:
            name = check_name(rec.get("姓名"))
        except ValueError as exc:
            errors.append(RowError(n, "姓名", str(exc)))
            name = ""
        try:
            phone = clean_phone(rec.get("手机号"))
        except ValueError as exc:
            errors.append(RowError(n, "手机号", str(exc)))
            phone = None
        if len(errors) > bad:
            continue
        key = (code, role, name)
        if seen[key]:
            errors.append(RowError(n, "姓名", "duplicate_row"))
            continue
        seen[key] += 1
        if role == LEADER and seen[(code, LEADER)]:
            errors.append(RowError(n, "角色", "two_leaders"))
            continue
        if role == LEADER:
            seen[(code, LEADER)] += 1
        rows.append(StaffRow(n, code, role, name, phone))
    return rows, errors


def grid_gaps(roles: list[str] | Counter) -> list[str]:
    """Rule codes a grid's staff break: ``no_leader``, ``no_full_time`` (in that order)."""
    c = roles if isinstance(roles, Counter) else Counter(roles)
    out = []
    if c[LEADER] < 1:
        out.append("no_leader")
    if c[FULL_TIME] < 1:
        out.append("no_full_time")
    return out


def caseload(households: int, full_time: int) -> float | None:
    """Households per full-time grid worker (None without one)."""
    return None if full_time <= 0 else round(households / full_time, 1)


def assess(grid: dict, roles: Counter, ceiling: float) -> dict:
    """One grid's figures: counts by role, gaps, households, caseload and its flag."""
    gaps = grid_gaps(roles)
    load = caseload(int(grid.get("households") or 0), roles[FULL_TIME])
    over = load is not None and load > ceiling
    return {
        **grid,
        "staff": sum(roles.values()),
        "roles": {r: roles[r] for r in ROLES},
        "full_time": roles[FULL_TIME],
        "caseload": load,
        "caseload_over": over,
        "gaps": gaps,
        "gap_labels": [GAPS[g] for g in gaps],
        "ok": not gaps and not over,
    }
