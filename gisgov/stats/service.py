"""The drill-down statistics as functions of a connection (no HTTP): the API and tests call these."""

from __future__ import annotations

from sqlalchemy import Connection

from gisgov.coverage.catalog import Catalog
from gisgov.stats import queries, shape, units
from gisgov.stats.circles import DEFAULT_PROFILE, circle_spec


def unit_stats(conn: Connection, level: str, code: str | None, *, catalog: Catalog | None = None,
               profile: str = DEFAULT_PROFILE) -> dict:
    """Indicators of one unit (``level='city'`` for the whole city) and of each direct child.

    ``catalog`` = the service-circle catalog (coverage figures are left out without it)."""
    ds = queries.dataset(conn)
    unit = queries.resolve(conn, level, code, city=units.city_name(ds))
    spec = circle_spec(catalog, profile=profile) if catalog is not None else None
    run = queries.coverage_run(conn, spec.profile, spec.circle) if spec is not None else None
    ref_year = units.reference_year(ds, queries.today_year())
    rows = queries.aggregates(conn, unit, ref_year=ref_year, circles=spec if run else None)
    return shape.document(unit, queries.children(conn, unit), rows, groups=queries.special_groups(conn),
                          circles=spec, coverage_run=run, ref_year=ref_year, dataset=ds)


def unit_features(conn: Connection, level: str, code: str | None) -> str:
    """GeoJSON FeatureCollection text: the unit's outline and its children's polygons (WGS84)."""
    ds = queries.dataset(conn)
    unit = queries.resolve(conn, level, code, city=units.city_name(ds))
    head = queries.dumps({"type": "FeatureCollection", "level": unit.level, "code": unit.code,
                          "child_level": unit.child})
    return head[:-1] + ',"features":' + queries.features(conn, unit) + "}"
