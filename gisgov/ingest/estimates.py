"""Household estimates for buildings without a count: footprint area × floors ÷ dwelling size.

Estimated counts carry ``building.households_estimated = true`` (shown in exports and maps); a
count from the source file or from an imported roster is never flagged, and a roster always
replaces an estimate (:func:`roster_wins`).
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import Connection, text

from gisgov.ingest.settings import IngestSettings, get_ingest_settings


def estimate_households(area_m2, floors, *, dwelling_m2: float, default_floors: int = 1) -> np.ndarray:
    """Households = round(area × floors ÷ dwelling_m2); unknown floors → ``default_floors``."""
    area = np.asarray(area_m2, dtype=float)
    fl = np.asarray(floors, dtype=float)
    fl = np.where(np.isnan(fl) | (fl <= 0), default_floors, fl)
    return np.rint(np.maximum(area, 0) * fl / dwelling_m2).astype(np.int64)


def apply_estimates(
    conn: Connection,
    codes: list[str] | None = None,
    settings: IngestSettings | None = None,
    floors_override: dict[str, float] | None = None,
) -> int:
    """Estimate households for buildings (all, or ``codes``) that have a footprint and no count."""
    s = settings or get_ingest_settings()
    where = "households IS NULL AND geom IS NOT NULL"
    params: dict = {}
    if codes is not None:
        where += " AND code = ANY(:codes)"
        params["codes"] = list(codes)
    rows = conn.execute(text(f"SELECT code, gisgov_area_m2(geom), floors FROM building WHERE {where}"), params).all()
    if not rows:
        return 0
    bcodes = [r[0] for r in rows]
    floors = [r[2] if r[2] is not None else (floors_override or {}).get(r[0], np.nan) for r in rows]
    est = estimate_households(
        [r[1] for r in rows], np.array(floors, dtype=float), dwelling_m2=s.dwelling_m2, default_floors=s.default_floors
    )
    conn.execute(
        text("""
        UPDATE building b SET households = e.n, households_estimated = true
        FROM unnest(CAST(:codes AS text[]), CAST(:n AS integer[])) AS e(code, n)
        WHERE b.code = e.code"""),
        {"codes": bcodes, "n": [int(x) for x in est]},
    )
    return len(bcodes)


def roster_wins(conn: Connection, building_codes: list[str]) -> int:
    """Replace estimated (or missing) household counts with the roster's household count."""
    if not building_codes:
        return 0
    r = conn.execute(
        text("""
        UPDATE building b SET households = s.n, households_estimated = false
        FROM (SELECT building_code, count(*) AS n FROM household
              WHERE building_code = ANY(:codes) GROUP BY building_code) s
        WHERE b.code = s.building_code AND (b.households IS NULL OR b.households_estimated)"""),
        {"codes": list(building_codes)},
    )
    return r.rowcount
