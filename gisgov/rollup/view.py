"""The province view for the app (``/api/rollup/...`` and the ``/province`` page): the roll-up tables read
as the API gives them. Everything here is an aggregate of the cities' exports (no person anywhere: the
tables have no column for one); sums are :func:`gisgov.rollup.figures.total` (exact, or a lower bound
``"≥N"`` over a suppressed figure), shares recomputed from summed numerators and denominators.

A city's roll-up is *stale* when its export is older than ``stale_hours`` (a nightly export plus a margin by
default): the page marks it, the figures are still shown (the last export the province has).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, text

from gisgov.crs import GEOJSON_PRECISION
from gisgov.errors import NotFound
from gisgov.rollup import figures, load

#: a city's export older than this (hours) is marked stale (nightly exports + a margin)
STALE_AFTER_H = 26
#: figures listed per unit on the map's features (the rest is in /api/rollup/units)
FEATURE_FIGURES = ("households", "residents", "buildings", "grids")


def _age_h(stamp: str, now: datetime) -> float:
    return round((now - datetime.fromisoformat(stamp)).total_seconds() / 3600, 2)


def province(conn: Connection, *, stale_hours: int = STALE_AFTER_H, now: datetime | None = None) -> dict[str, Any]:
    """:func:`gisgov.rollup.load.province` with each city's export age and stale marker, the labels of
    special groups / staff roles (union over cities) and the time of the answer."""
    now = now or datetime.now(UTC)
    view = load.province(conn)
    for row in view["cities"]:
        row["age_hours"] = _age_h(row["exported_at"], now)
        row["stale"] = row["age_hours"] > stale_hours
    labels: dict[str, list[Any]] = {}
    seen: set[str] = set()
    for (raw,) in conn.execute(text("SELECT labels FROM rollup_city ORDER BY city_code")):
        for kind, items in (raw or {}).items():
            for item in items if isinstance(items, list) else []:
                key = json.dumps([kind, item], sort_keys=True, ensure_ascii=False)
                if key not in seen:
                    seen.add(key)
                    labels.setdefault(str(kind), []).append(item)
    view["labels"] = labels
    view["generated_at"] = now.isoformat()
    view["stale_hours"] = stale_hours
    view["province"]["stale_cities"] = sum(1 for r in view["cities"] if r["stale"])
    return view


def _city_exists(conn: Connection, city: str) -> None:
    if conn.execute(text("SELECT 1 FROM rollup_city WHERE city_code = :c"), {"c": city}).first() is None:
        raise NotFound(f"未载入该市的汇总 no roll-up loaded for city {city}")


def units(conn: Connection, level: str, city: str | None = None) -> dict[str, Any]:
    """Every loaded unit of ``level`` (of one city, or of all), with its figures and shares."""
    if city is not None:
        _city_exists(conn, city)
    rows = conn.execute(
        text("""
        SELECT u.city_code, u.code, u.name, u.parent_code, c.name AS city_name
        FROM rollup_unit u JOIN rollup_city c USING (city_code)
        WHERE u.level = :l AND (CAST(:c AS text) IS NULL OR u.city_code = :c)
        ORDER BY u.city_code, u.code"""),
        {"l": level, "c": city},
    ).all()
    figs = load.city_figures(conn, level)
    items = []
    for r in rows:
        f = figs.get((r.city_code, r.code), {})
        items.append(
            {
                "city_code": r.city_code,
                "city_name": r.city_name,
                "level": level,
                "code": r.code,
                "name": r.name,
                "parent_code": r.parent_code,
                "figures": f,
                "shares": figures.shares(f),
            }
        )
    return {
        "level": level,
        "city_code": city,
        "items": items,
        "total": {"units": len(items), "figures": figures.total(i["figures"] for i in items)},
    }


def features(conn: Connection, level: str, city: str | None = None) -> dict[str, Any]:
    """The outlines the cities exported (WGS84, simplified at export) as a GeoJSON FeatureCollection with a
    few headline figures per unit. A city's outline is the union of its streets' outlines (the export
    carries no city outline of its own); a unit exported without an outline is left out (``missing``)."""
    if city is not None:
        _city_exists(conn, city)
    if level == "city":
        sql = """
        SELECT u.city_code, u.code, u.name, c.exported_at,
               ST_AsGeoJSON(s.geom, :prec) AS g
        FROM rollup_unit u JOIN rollup_city c USING (city_code)
        LEFT JOIN LATERAL (SELECT ST_Union(geom) AS geom FROM rollup_unit s
                           WHERE s.city_code = u.city_code AND s.level = 'street' AND s.geom IS NOT NULL) s ON true
        WHERE u.level = 'city' AND (CAST(:c AS text) IS NULL OR u.city_code = :c)
        ORDER BY u.city_code"""
    else:
        sql = """
        SELECT u.city_code, u.code, u.name, c.exported_at, ST_AsGeoJSON(u.geom, :prec) AS g
        FROM rollup_unit u JOIN rollup_city c USING (city_code)
        WHERE u.level = :l AND (CAST(:c AS text) IS NULL OR u.city_code = :c)
        ORDER BY u.city_code, u.code"""
    rows = conn.execute(text(sql), {"l": level, "c": city, "prec": GEOJSON_PRECISION}).all()
    figs = load.city_figures(conn, level)
    feats, missing = [], 0
    for r in rows:
        if not r.g:
            missing += 1
            continue
        f = figs.get((r.city_code, r.code), {})
        feats.append(
            {
                "type": "Feature",
                "geometry": json.loads(r.g),
                "properties": {
                    "city_code": r.city_code,
                    "level": level,
                    "code": r.code,
                    "name": r.name,
                    "exported_at": r.exported_at.isoformat(),
                    **{k: f.get(k) for k in FEATURE_FIGURES if k in f},
                },
            }
        )
    return {"type": "FeatureCollection", "features": feats, "missing": missing}
