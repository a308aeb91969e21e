"""A city's roll-up file (``gisgov rollup export``): its ``/api/stats`` blocks for the city, every street
and every community, as the aggregate-only roles see them (special-group counts below k suppressed, the
same statuses as on every statistics page), the street and community outlines simplified (public
geography, WGS84), and a manifest (city code and name, dataset, export time, schema revision, k, coverage
circle, checksum). Nothing personal: :func:`gisgov.rollup.figures.validate` is run on the document before
it is written, and refuses it otherwise.
"""

from __future__ import annotations

import gzip
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from gisgov.coverage.catalog import Catalog
from gisgov.errors import InvalidInput
from gisgov.rollup import figures
from gisgov.stats import privacy, queries, service, units

SIMPLIFY_M = 10.0  # outline simplification tolerance (metres)
OUTLINE_DIGITS = 6  # ≈ 0.1 m


def _outlines(conn: Connection, tolerance_m: float) -> dict[tuple[str, str], Any]:
    metric = conn.execute(text("SELECT (value #>> '{}')::int FROM gisgov_meta WHERE key = 'metric_srid'")).scalar()
    if metric:
        simple = f"ST_Transform(ST_SimplifyPreserveTopology(ST_Transform(geom, {int(metric)}), :tol), 4326)"
        tol = tolerance_m
    else:  # no metric CRS recorded: simplify in degrees (≈ 111 km per degree)
        simple = "ST_SimplifyPreserveTopology(ST_Transform(geom, 4326), :tol)"
        tol = tolerance_m / 111_000
    sql = f"""
        SELECT 'street' AS level, code, ST_AsGeoJSON({simple}, {OUTLINE_DIGITS}) AS g FROM street
        UNION ALL
        SELECT 'community', code, ST_AsGeoJSON({simple}, {OUTLINE_DIGITS}) FROM community"""
    return {(r.level, r.code): json.loads(r.g) if r.g else None for r in conn.execute(text(sql), {"tol": tol})}


def schema_revision(conn: Connection) -> str | None:
    return conn.execute(text("SELECT version_num FROM alembic_version LIMIT 1")).scalar()


def build(
    conn: Connection,
    *,
    city_code: str | None = None,
    small_cell_k: int = 5,
    catalog: Catalog | None = None,
    exported_at: datetime | None = None,
    simplify_m: float = SIMPLIFY_M,
) -> dict[str, Any]:
    """The roll-up document of the city in ``conn``'s database (checked by
    :func:`~gisgov.rollup.figures.validate`, checksum filled in)."""
    ds = queries.dataset(conn) or {}
    code = str(city_code or ds.get("county_code") or ds.get("city_code") or "")
    if not code:
        raise InvalidInput(
            "未给出城市代码 no city code: the dataset records none, pass --city-code (rule: rollup_city_code)"
        )
    city_name = units.city_name(ds)
    # the suppression universe once for the whole city (as every statistics page of an aggregate-only
    # role sees it: the same statuses as service.unit_stats(small_cell_k=k), without rebuilding it per page)
    area = units.Area()
    universe = privacy.build(queries.cells(conn, area), [g["code"] for g in queries.special_groups(conn)], small_cell_k)

    def page(level: str, unit_code: str | None) -> dict[str, Any]:
        doc = service.unit_stats(conn, level, unit_code, catalog=catalog)
        privacy.apply(universe, queries.resolve(conn, level, unit_code, city=city_name, area=area), doc)
        return doc

    top = page("city", None)
    outlines = _outlines(conn, simplify_m)
    out_units: list[dict[str, Any]] = [
        {
            "level": "city",
            "code": code,
            "name": city_name,
            "parent_code": None,
            "figures": figures.flatten(top["stats"]),
        }
    ]
    for street in top["children"]["items"]:
        street_page = page("street", street["code"])
        out_units.append(
            {
                "level": "street",
                "code": street["code"],
                "name": street["name"],
                "parent_code": code,
                "figures": figures.flatten(street_page["stats"]),
                "outline": outlines.get(("street", street["code"])),
            }
        )
        for com in street_page["children"]["items"]:
            out_units.append(
                {
                    "level": "community",
                    "code": com["code"],
                    "name": com["name"],
                    "parent_code": street["code"],
                    "figures": figures.flatten(com["stats"]),
                    "outline": outlines.get(("community", com["code"])),
                }
            )
    stamp = exported_at or datetime.now(UTC)
    cov = top.get("coverage")
    manifest = {
        "city_code": code,
        "city_name": city_name,
        "dataset": ds.get("name"),
        "synthetic": bool(ds.get("synthetic")),
        "exported_at": stamp.isoformat(),
        "schema_revision": schema_revision(conn),
        "small_cell_k": small_cell_k,
        "coverage": None
        if not cov or not cov.get("available")
        else {
            k: cov.get(k)
            for k in (
                "standard",
                "name_zh",
                "circle",
                "circle_zh",
                "minutes",
                "profile",
                "profile_zh",
                "categories",
                "run",
            )
        },
        "units": len(out_units),
    }
    doc: dict[str, Any] = {
        "format": figures.FORMAT,
        "manifest": manifest,
        "labels": {k: top["labels"][k] for k in ("special_groups", "staff_roles", "age_bands")},
        "units": out_units,
    }
    figures.validate(doc)  # aggregates only, or nothing is written
    doc["manifest"]["checksum"] = figures.checksum(doc)
    return doc


def write(doc: dict[str, Any], path: str | Path) -> Path:
    """Write the document (gzip when the name ends in ``.gz``) atomically: a temporary file renamed."""
    path = Path(path)
    data = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    tmp = path.with_name(f".{path.name}.part")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
