"""Aggregate rows → the statistics document of one unit and its children (pure, no I/O).

Every unit (and child) gets the same indicator block, see :func:`empty_stats`. Shares are
fractions 0–1 rounded to 4 decimals, ``None`` when the denominator is 0. ``rest`` sums the
buildings of the unit that belong to none of the listed children (e.g. buildings outside every
grid), so that children + rest = unit for every additive count.
"""

from __future__ import annotations

from typing import Any

from gisgov.stats.circles import CircleSpec
from gisgov.stats.units import LEVEL_LABELS, STAFF_ROLES, Unit

AGE_BANDS = ("0-14", "15-59", "60+", "80+", "unknown")
_AGE_COLUMNS = {"0-14": "age_0_14", "15-59": "age_15_59", "60+": "age_60", "80+": "age_80", "unknown": "age_unknown"}


def share(part: float | None, whole: float | None) -> float | None:
    if part is None or not whole:
        return None
    return round(float(part) / float(whole), 4)


def empty_stats(group_codes: list[str], circles: CircleSpec | None, *, staff: bool = True) -> dict[str, Any]:
    return {
        "households": 0,
        "residents": 0,
        "buildings": 0,
        "compounds": 0,
        "old_compounds": 0,
        "old_compound_share": None,
        "age": dict.fromkeys(AGE_BANDS, 0),
        "elderly_share": None,
        "special": {"people": 0, "per_1000": None, "groups": dict.fromkeys(group_codes, 0)},
        "grids": 0,
        "staff": {"total": 0, "roles": {r: 0 for r, _ in STAFF_ROLES}} if staff else None,
        "coverage": None
        if circles is None
        else {
            "households": 0,
            "categories": {c: {"households_in": 0, "share": None} for c, _, _ in circles.categories},
            "complete": {"households": 0, "households_in": 0, "share": None},
        },
    }


def _add_people(s: dict[str, Any], r: dict[str, Any]) -> None:
    for k in ("households", "residents", "buildings"):
        s[k] += int(r[k])
    for band, col in _AGE_COLUMNS.items():
        s["age"][band] += int(r[col])
    s["special"]["people"] += int(r["special_people"])


def _add_group(s: dict[str, Any], r: dict[str, Any]) -> None:
    groups = s["special"]["groups"]
    groups[r["group_code"]] = groups.get(r["group_code"], 0) + int(r["members"])


def _add_compounds(s: dict[str, Any], r: dict[str, Any]) -> None:
    s["compounds"] += int(r["compounds"])
    s["old_compounds"] += int(r["old_compounds"])


def _add_grids(s: dict[str, Any], r: dict[str, Any]) -> None:
    s["grids"] += int(r["grids"])
    if "staff" in r and s["staff"] is not None:
        s["staff"]["total"] += int(r["staff"])
        for i, (role, _) in enumerate(STAFF_ROLES, 1):
            s["staff"]["roles"][role] += int(r[f"role_{i}"])


def _add_coverage(s: dict[str, Any], r: dict[str, Any]) -> None:
    cov = s["coverage"]
    if cov is None:
        return
    if r["item_kind"] == "complete":
        cov["complete"]["households"] += int(r["households"])
        cov["complete"]["households_in"] += int(r["households_in"])
    elif r["item"] in cov["categories"]:
        cov["categories"][r["item"]]["households_in"] += int(r["households_in"])


_BASIS: dict[str | None, str] = {
    "street": "streets",
    "community": "communities",
    "grid": "grids",
    "compound": "compounds",
}
_ADDERS = {
    "people": _add_people,
    "groups": _add_group,
    "compounds": _add_compounds,
    "grids": _add_grids,
    "coverage": _add_coverage,
}
# Topics keyed by the building a count comes from: their rows without a child go to ``rest``.
_BUILDING_TOPICS = ("people", "groups", "coverage")


def finish(s: dict[str, Any]) -> dict[str, Any]:
    """Fill in the shares of one indicator block (in place) and return it."""
    s["old_compound_share"] = share(s["old_compounds"], s["compounds"])
    s["elderly_share"] = share(s["age"]["60+"], s["residents"])
    s["special"]["per_1000"] = None if not s["residents"] else round(1000 * s["special"]["people"] / s["residents"], 2)
    cov = s["coverage"]
    if cov is not None:
        cov["households"] = s["households"]
        for c in cov["categories"].values():
            c["share"] = share(c["households_in"], s["households"])
        cov["complete"]["share"] = share(cov["complete"]["households_in"], cov["complete"]["households"])
    return s


def document(
    unit: Unit,
    kids: list[dict[str, Any]],
    rows: dict[str, list[dict[str, Any]]],
    *,
    groups: list[dict[str, Any]],
    circles: CircleSpec | None,
    coverage_run: dict[str, Any] | None,
    ref_year: int,
    dataset: dict[str, Any] | None,
) -> dict[str, Any]:
    """The JSON document of ``unit``: its indicators, its children's (same block) and the labels."""
    codes = [g["code"] for g in groups]
    child = unit.child
    unit_has_staff = unit.level != "compound"
    child_has_staff = child not in (None, "compound")
    spec = circles
    circles = circles if coverage_run is not None else None  # blocks carry coverage only when computed
    total = empty_stats(codes, circles, staff=unit_has_staff)
    by_code = {k["code"]: empty_stats(codes, circles, staff=child_has_staff) for k in kids}
    rest = empty_stats(codes, circles, staff=False)
    for topic, topic_rows in rows.items():
        add = _ADDERS[topic]
        for r in topic_rows:
            if r["is_total"]:
                add(total, r)
            elif child is None:
                continue
            elif r["ck"] in by_code:
                add(by_code[r["ck"]], r)
            elif topic in _BUILDING_TOPICS:
                add(rest, r)
    items = [
        {
            "level": child,
            "code": k["code"],
            "name": k["name"],
            "partial": bool(k.get("partial")),
            "stats": finish(by_code[k["code"]]),
        }
        for k in kids
    ]
    finish(rest)
    zh, en = LEVEL_LABELS[unit.level]
    return {
        "level": unit.level,
        "level_label": {"zh": zh, "en": en},
        "code": unit.code,
        "name": unit.name,
        "path": list(unit.path),
        "reference_year": ref_year,
        "synthetic": bool((dataset or {}).get("synthetic")),
        "stats": finish(total),
        "children": {
            "level": child,
            "level_label": None if child is None else dict(zip(("zh", "en"), LEVEL_LABELS[child], strict=True)),
            "basis": _BASIS.get(child),
            "items": items,
            "rest": rest if rest["buildings"] else None,
        },
        "labels": {
            "special_groups": groups,
            "staff_roles": [{"role": r, "name_en": e} for r, e in STAFF_ROLES],
            "age_bands": list(AGE_BANDS),
        },
        "coverage": None
        if spec is None
        else spec.meta() | {"available": coverage_run is not None, "run": coverage_run},
    }
