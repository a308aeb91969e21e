"""The statistics' coverage figures on a city database: the coverage statement alone (the packed distances
read by slot, as the statistics run it, and optionally the old statement through the ``building_access`` view,
the reference of tests/test_stats_coverage_scale.py) and the whole ``service.unit_stats`` for the city and a
street, as an admin of the whole city (the owner's connection; read only, rolled back)::

    GISGOV_HOME=<home> python bench/stats_coverage.py [--street <code>] [--old] [--repeat 3]

Prints the median and each time in seconds (first = first statement after connecting) as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, pool, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from gisgov.coverage.catalog import load_catalog  # noqa: E402
from gisgov.db.engine import database_url  # noqa: E402
from gisgov.stats import queries, service  # noqa: E402
from gisgov.stats.circles import circle_spec  # noqa: E402
from gisgov.stats.units import CITY, Area  # noqa: E402


def timed(fn, repeat: int) -> dict:
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(round(time.perf_counter() - t, 3))
    return {"median_s": statistics.median(ts), "times_s": ts}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--street")
    ap.add_argument("--old", action="store_true", help="also time the old statement (through the view)")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    eng = create_engine(database_url(), poolclass=pool.NullPool)
    catalog = load_catalog()
    spec = circle_spec(catalog)
    out: dict = {}
    with eng.connect() as conn:
        street = a.street or conn.execute(text("SELECT min(code) FROM street")).scalar()
        out["buildings"] = conn.execute(text("SELECT count(*) FROM building")).scalar()
        for level, code in ((CITY, None), ("street", street)):
            key = "city" if level == CITY else f"street {street}"
            unit = queries.resolve(conn, level, code, area=Area())
            frag, params = unit.fragments(Area())["building"], unit.params() | Area().params()
            if hasattr(queries, "coverage"):  # not on commits before it (then time --old and unit_stats only)
                out[f"coverage new, {key}"] = timed(
                    lambda f=frag, p=params: queries.coverage(conn, f, p, spec), a.repeat
                )
            if a.old:
                from test_stats_coverage_scale import OLD_SQL

                sql = text(OLD_SQL.format(**frag))
                out[f"coverage old, {key}"] = timed(
                    lambda q=sql, p=params: conn.execute(q, p | spec.params()).all(), max(1, a.repeat - 2)
                )
            out[f"unit_stats, {key}"] = timed(
                lambda v=level, c=code: service.unit_stats(conn, v, c, catalog=catalog), a.repeat
            )
        conn.rollback()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
