"""Resident ID numbers (居民身份证号码, GB 11643-1999): the one check used by rosters and the vault.

A number is accepted when it has 18 characters, 17 digits and a check character (ISO 7064 MOD 11-2, via
python-stdnum's ``stdnum.cn.ric``), a real birth date (not in the future, not before 1880) and a known
region code (province and county, from stdnum's administrative-division table). The region code is the
county where the number was *issued* (1984 onwards), so a county created after the holder's birth is
fine: only codes that never existed are refused.
"""

from __future__ import annotations

import datetime as _dt
import unicodedata
from functools import lru_cache

from stdnum import numdb
from stdnum.cn import ric
from stdnum.exceptions import ValidationError


def normalize_id(value: object) -> str:
    """NFKC (full-width digits and Ｘ become ASCII), upper case, spaces and dashes dropped."""
    v = unicodedata.normalize("NFKC", str(value)).upper()
    return "".join(ch for ch in v if ch not in " \t\u3000-_")


@lru_cache(maxsize=8192)
def region_problem(code6: str) -> str | None:
    """Why a 6-digit region code is not a known county code, or None."""
    info: dict[str, str] = {}
    for _part, props in numdb.get("cn/loc").info(code6):
        info.update(props)
    if "province" not in info:
        return f"地区码 {code6[:2]} 不是省级行政区 region code {code6}: {code6[:2]} is not a province"
    if not info.get("county"):
        return f"地区码 {code6} 不存在（{info['province']}） region code {code6} is not a county of {info['province']}"
    return None


def id_problem(value: str | None, *, today: _dt.date | None = None) -> str | None:
    """Why an ID number is not valid (Chinese + English), or None when it is."""
    v = normalize_id(value or "")
    if len(v) != 18:
        return f"身份证号应为18位 ID number must have 18 characters (got {len(v)})"
    if not v[:17].isdigit() or not (v[17].isdigit() or v[17] == "X"):
        return "身份证号应为17位数字加校验位（数字或X） ID number: 17 digits and a check character (digit or X)"
    try:
        born = _dt.date(int(v[6:10]), int(v[10:12]), int(v[12:14]))
    except ValueError:
        return f"身份证号中的出生日期不存在 the birth date in the ID number does not exist ({v[6:14]})"
    if born.year < 1880 or born > (today or _dt.date.today()):
        return f"身份证号中的出生日期不合理 the birth date in the ID number is impossible ({v[6:14]})"
    try:
        expected = ric.calc_check_digit(v)
    except (ValueError, ValidationError):
        return "身份证号格式错误 ID number malformed"
    if expected != v[17]:
        return f"身份证号校验位错误 ID number check digit wrong (expected {expected}, got {v[17]})"
    return region_problem(v[:6])


def is_valid_id(value: str | None) -> bool:
    return id_problem(value) is None
