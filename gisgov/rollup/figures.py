"""The roll-up's figures (pure, no I/O): a statistics block flattened into named counts, the rules a
roll-up file must keep (a fixed vocabulary of aggregate indicators, no personal data, small special-group
counts suppressed), its checksum, and the province sums with shares recomputed from summed numerators
and denominators (never averaged).

A figure's value is an ``int``, or a suppression label as the aggregate-only roles see it: ``"<k"``,
``"≥k"`` (``None``: a cell never shown). Sums over cities with a label in them are lower bounds, shown
as ``"≥N"``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from gisgov.errors import InvalidInput
from gisgov.security.pii import is_valid_id

FORMAT = "gisgov-rollup/1"
LEVELS = ("city", "street", "community")
AGE_BANDS = ("0-14", "15-59", "60+", "80+", "unknown")

Value = int | str | None

# The whole vocabulary: every figure a roll-up file may carry. Nothing else is accepted (no column
# of a person can be smuggled in under another name).
INDICATOR_RE = re.compile(
    r"^(?:households|residents|buildings|compounds|old_compounds|grids"
    r"|age\.(?:0-14|15-59|60\+|80\+|unknown)"
    r"|special\.people|special\.group\.[A-Za-z0-9_-]{1,40}"
    r"|staff\.total|staff\.role\.[^ .]{1,20}"
    r"|coverage\.households|coverage\.category\.[A-Za-z0-9_-]{1,40}"
    r"|coverage\.complete\.(?:households|households_in))$"
)
SENSITIVE_PREFIX = "special."
UNIT_KEYS = {"level", "code", "name", "parent_code", "figures", "outline"}
TOP_KEYS = {"format", "manifest", "labels", "units"}
# Keys that name a person's field: refused anywhere in a file, at any depth.
PERSONAL_KEYS = frozenset(
    {
        "id_number",
        "id_last4",
        "id_enc",
        "id_hash",
        "phone",
        "phone_masked",
        "phone_enc",
        "birth_year",
        "birth_date",
        "gender",
        "resident_name",
        "household_id",
        "resident_id",
        "staff_list",
        "address",
        "room",
    }
)
_ID_RE = re.compile(r"(?<![0-9.])([1-9][0-9]{16}[0-9Xx])(?![0-9])")
_HEX_TOKEN = re.compile(r"(?<![0-9A-Za-z])[0-9a-f]{32,}(?![0-9A-Za-z])")
_MOBILE_RE = re.compile(r"(?<![0-9.])(1[3-9][0-9]{9})(?![0-9])")
_LABEL_RE = re.compile(r"^[<≥]([0-9]+)$")


def flatten(stats: Mapping[str, Any]) -> dict[str, Value]:
    """One indicator block of ``/api/stats`` as named counts (shares left out: they are recomputed)."""
    out: dict[str, Value] = {}
    for key in ("households", "residents", "buildings", "compounds", "old_compounds", "grids"):
        out[key] = stats[key]
    for band in AGE_BANDS:
        out[f"age.{band}"] = stats["age"][band]
    special = stats["special"]
    out["special.people"] = special["people"]
    for group, n in special["groups"].items():
        out[f"special.group.{group}"] = n
    staff = stats.get("staff")
    if staff is not None:
        out["staff.total"] = staff["total"]
        for role, n in staff["roles"].items():
            out[f"staff.role.{role}"] = n
    cov = stats.get("coverage")
    if cov is not None:
        out["coverage.households"] = cov["households"]
        for cat, c in cov["categories"].items():
            out[f"coverage.category.{cat}"] = c["households_in"]
        out["coverage.complete.households"] = cov["complete"]["households"]
        out["coverage.complete.households_in"] = cov["complete"]["households_in"]
    return out


# -- the rules of a roll-up file -----------------------------------------------------------------------


def canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def checksum(doc: Mapping[str, Any]) -> str:
    """sha256 of the file's canonical JSON without the manifest's ``checksum`` field."""
    manifest = {k: v for k, v in doc["manifest"].items() if k != "checksum"}
    body = {k: v for k, v in doc.items() if k != "manifest"} | {"manifest": manifest}
    return "sha256:" + hashlib.sha256(canonical(body)).hexdigest()


def _walk_keys(obj: Any) -> Iterable[str]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield str(k)
            yield from _walk_keys(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk_keys(v)


def personal_data(doc: Mapping[str, Any]) -> list[str]:
    """What in ``doc`` looks like a person's data: a personal field name, a clear ID number (valid
    check character) or a mobile number. Empty when there is none."""
    found = sorted({f"field {k}" for k in _walk_keys(doc) if k.lower() in PERSONAL_KEYS})
    # hashes (a checksum, a signature: 32+ lowercase hex characters) are no one's data, and a run of
    # their digits can look like a mobile or ID number (a flaky false refusal of a signed export)
    body = _HEX_TOKEN.sub(" ", canonical(doc).decode("utf-8"))
    found += [f"ID number {m[:3]}…{m[-2:]}" for m in _ID_RE.findall(body) if is_valid_id(m.upper())]
    found += [f"mobile number {m[:3]}…{m[-2:]}" for m in _MOBILE_RE.findall(body)]
    return found


def _refuse(zh: str, en: str, rule: str) -> InvalidInput:
    return InvalidInput(f"{zh} {en} (rule: {rule})")


def validate(doc: Any) -> None:
    """Refuse (InvalidInput naming the rule) a roll-up document that is not aggregate-only: unknown
    keys or indicators, personal data, an exact special-group count below the file's k."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _refuse("不是汇总文件", f"not a roll-up file (expected format {FORMAT})", "rollup_file_format")
    extra = set(doc) - TOP_KEYS
    if extra or not isinstance(doc.get("units"), list) or not isinstance(doc.get("manifest"), dict):
        raise _refuse("汇总文件结构不符", f"roll-up file structure: keys {sorted(extra)}", "rollup_file_format")
    found = personal_data(doc)
    if found:
        raise _refuse(
            "汇总文件含个人信息", f"roll-up file holds personal data: {', '.join(found[:5])}", "rollup_no_personal_data"
        )
    m = doc["manifest"]
    k = m.get("small_cell_k")
    if not isinstance(k, int) or k < 2:
        raise _refuse("小数抑制阈值无效", f"small_cell_k must be an integer ≥ 2 (got {k!r})", "rollup_small_cell")
    if not re.fullmatch(r"[0-9]{2,12}", str(m.get("city_code", ""))):
        raise _refuse("城市代码无效", f"city_code must be 2–12 digits (got {m.get('city_code')!r})", "rollup_city_code")
    seen: set[tuple[str, str]] = set()
    for u in doc["units"]:
        if not isinstance(u, dict) or set(u) - UNIT_KEYS or u.get("level") not in LEVELS:
            raise _refuse("汇总单元结构不符", f"roll-up unit structure: {str(u)[:80]}", "rollup_file_format")
        key = (u["level"], str(u["code"]))
        if key in seen:
            raise _refuse("单元重复", f"unit listed twice: {key}", "rollup_file_format")
        seen.add(key)
        for name, v in u["figures"].items():
            if not INDICATOR_RE.match(name):
                raise _refuse("未知指标", f"unknown indicator {name!r} (aggregates only)", "rollup_indicator")
            if isinstance(v, bool) or not (
                (isinstance(v, int) and v >= 0) or v is None or (isinstance(v, str) and _LABEL_RE.match(v))
            ):
                raise _refuse("指标值无效", f"indicator {name} of {key}: {v!r}", "rollup_indicator")
            if name.startswith(SENSITIVE_PREFIX) and isinstance(v, int) and 0 < v < k:
                raise _refuse(
                    "特殊人群小数未抑制",
                    f"special-group count {name} of {key} is {v} < {k}: small counts must be suppressed",
                    "rollup_small_cell",
                )
    if sum(1 for u in doc["units"] if u["level"] == "city") != 1:
        raise _refuse("须有且仅有一个全市单元", "exactly one city unit expected", "rollup_file_format")


# -- province sums -------------------------------------------------------------------------------------


def lower_bound(v: Value) -> int:
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.startswith("≥"):
        return int(v[1:])
    return 0


def add(values: Iterable[Value]) -> Value:
    """Sum of figures: exact when every one is a number, else a lower bound ``"≥N"``."""
    vals = list(values)
    if all(isinstance(v, int) for v in vals):
        return sum(vals)  # type: ignore[arg-type]
    return f"≥{sum(lower_bound(v) for v in vals)}"


def total(rows: Iterable[Mapping[str, Value]]) -> dict[str, Value]:
    """Indicator-wise sums of figure dicts (an indicator absent from a city is left out of that city's
    part: coverage of a city that has not computed it adds nothing to numerator or denominator)."""
    parts: dict[str, list[Value]] = {}
    for r in rows:
        for name, v in r.items():
            parts.setdefault(name, []).append(v)
    return {name: add(vs) for name, vs in sorted(parts.items())}


def ratio(part: Value, whole: Value, scale: float = 1.0, digits: int = 4) -> float | None:
    if not isinstance(part, int) or not isinstance(whole, int) or whole == 0:
        return None
    return round(scale * part / whole, digits)


def shares(f: Mapping[str, Value]) -> dict[str, float | None]:
    """Shares recomputed from the (summed) numerators and denominators, as ``/api/stats`` defines them."""
    out: dict[str, float | None] = {
        "old_compound_share": ratio(f.get("old_compounds"), f.get("compounds")),
        "elderly_share": ratio(f.get("age.60+"), f.get("residents")),
        "special_per_1000": ratio(f.get("special.people"), f.get("residents"), 1000, 2),
    }
    if "coverage.households" in f:
        for name in sorted(f):
            if name.startswith("coverage.category."):
                out[f"coverage.{name.rsplit('.', 1)[1]}.share"] = ratio(f[name], f["coverage.households"])
        out["coverage.complete.share"] = ratio(
            f.get("coverage.complete.households_in"), f.get("coverage.complete.households")
        )
    return out
