"""The drill-down statistics as functions of a connection (no HTTP): the API and tests call these.

``scope`` is the caller's node ('' = whole city): figures count only what lies inside it, units
outside it answer 404, children outside it are left out (see :class:`gisgov.stats.units.Area`).
``small_cell_k`` (aggregate-only roles) suppresses small special-group counts
(:mod:`gisgov.stats.privacy`); ``None`` gives exact numbers. ``staff_names`` adds a grid's staff
(role, name, masked phone) for roles that may read personal data.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from gisgov.coverage.catalog import Catalog
from gisgov.stats import privacy, queries, shape, units
from gisgov.stats.circles import DEFAULT_PROFILE, circle_spec

LIMITED_NOTE = "仅统计您辖区内的部分 figures cover only the part inside your area"


def unit_stats(
    conn: Connection,
    level: str,
    code: str | None,
    *,
    catalog: Catalog | None = None,
    profile: str = DEFAULT_PROFILE,
    scope: str = "",
    small_cell_k: int | None = None,
    staff_names: bool = False,
) -> dict[str, Any]:
    """Indicators of one unit (``level='city'`` for the whole city) and of each direct child.

    ``catalog`` = the service-circle catalog (coverage figures are left out without it)."""
    ds = queries.dataset(conn)
    area = queries.area_of(conn, scope)
    unit = queries.resolve(conn, level, code, city=units.city_name(ds), area=area)
    spec = circle_spec(catalog, profile=profile) if catalog is not None else None
    run = queries.coverage_run(conn, spec.profile, spec.circle) if spec is not None else None
    ref_year = units.reference_year(ds, queries.today_year())
    rows = queries.aggregates(conn, unit, ref_year=ref_year, circles=spec if run else None, area=area)
    groups = queries.special_groups(conn)
    doc = shape.document(
        unit,
        queries.children(conn, unit, area),
        rows,
        groups=groups,
        circles=spec,
        coverage_run=run,
        ref_year=ref_year,
        dataset=ds,
    )
    doc["area"] = {"scope": scope, "limited": unit.limited, "note": LIMITED_NOTE if unit.limited else None}
    doc["suppression"] = None
    if small_cell_k is not None:
        universe = privacy.build(queries.cells(conn, area), [g["code"] for g in groups], small_cell_k)
        privacy.apply(universe, unit, doc)
        doc["suppression"] = {
            "k": small_cell_k,
            "below": f"<{small_cell_k}",
            "complement": f"≥{small_cell_k}",
            "note": f"特殊人群人数少于{small_cell_k}人显示为“<{small_cell_k}”，为防止由合计推算，部分数字显示为"
            f"“≥{small_cell_k}” special-group counts below {small_cell_k} are shown as "
            f"'<{small_cell_k}'; some others as '≥{small_cell_k}' so totals do not reveal them",
        }
    doc["staff_list"] = (
        [
            {"role": r["role"], "name": r["name"], "phone_masked": r["phone_masked"]}
            for r in queries.grid_staff(conn, unit)
        ]
        if staff_names and unit.level == "grid"
        else None
    )
    return doc


def unit_features(conn: Connection, level: str, code: str | None, *, scope: str = "") -> str:
    """GeoJSON FeatureCollection text: the unit's outline and its children's polygons (WGS84), children
    inside the caller's area only."""
    ds = queries.dataset(conn)
    area = queries.area_of(conn, scope)
    unit = queries.resolve(conn, level, code, city=units.city_name(ds), area=area)
    head = queries.dumps(
        {"type": "FeatureCollection", "level": unit.level, "code": unit.code, "child_level": unit.child}
    )
    return head[:-1] + ',"features":' + queries.features(conn, unit, area) + "}"
