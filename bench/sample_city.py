"""Benchmark: `gisgov sample` end to end (target < 60 s including the load).

    python bench/sample_city.py [--scale 1.0] [--out bench/results/sample.md]

Uses GISGOV_DATABASE_URL's server or the embedded cluster (GISGOV_HOME), in throw-away databases
``gisgov_bench_*`` dropped afterwards. Timed twice:
1. the real command line in a fresh process (`python -m gisgov.cli.main sample`): interpreter start,
   imports, schema migration of an empty database, generation, GeoPackage, load — wall clock;
2. the same stages in-process, each timed (generate, write GeoPackage, load).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from gisgov.db import migrate
from gisgov.db.engine import database_url, psycopg_conninfo
from gisgov.sample import generate_city
from gisgov.sample.gpkg import write_gpkg
from gisgov.sample.load import load_city
from gisgov.security.pii import Vault


def _create(server, admin: str) -> tuple[str, str]:
    name = f"gisgov_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'")
    url = server.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(psycopg_conninfo(url), autocommit=True) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    return name, url


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sample.md")
    args = ap.parse_args()

    server = make_url(database_url(start=True))
    admin = psycopg_conninfo(server.set(database="postgres").render_as_string(hide_password=False))
    made: list[str] = []
    try:
        with tempfile.TemporaryDirectory() as td:
            name, url = _create(server, admin)
            made.append(name)
            env = {**os.environ, "GISGOV_DATABASE_URL": url, "GISGOV_HOME": td}
            t = time.perf_counter()
            r = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "gisgov.cli.main",
                    "sample",
                    "--scale",
                    str(args.scale),
                    "--out",
                    str(Path(td) / "sample_city.gpkg"),
                ],
                env=env,
                capture_output=True,
                text=True,
            )
            cli_s = time.perf_counter() - t
            if r.returncode != 0:
                raise SystemExit(f"gisgov sample failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
            gpkg_mb = (Path(td) / "sample_city.gpkg").stat().st_size / 1e6

            name, url = _create(server, admin)
            made.append(name)
            migrate.upgrade(url)
            t = time.perf_counter()
            city = generate_city(scale=args.scale)
            gen_s = time.perf_counter() - t
            t = time.perf_counter()
            write_gpkg(city, Path(td) / "again.gpkg")
            gpkg_s = time.perf_counter() - t
            t = time.perf_counter()
            counts = load_city(url, city, vault=Vault(os.urandom(32)))
            load_s = time.perf_counter() - t
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            for name in made:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    lines = [
        "# Sample city benchmark: `gisgov sample`",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `python bench/sample_city.py --scale {args.scale}`"
        f" on {platform.machine()} · {os.cpu_count()} cores · Python {platform.python_version()}"
        " (other jobs may share the CPU).",
        "",
        "| scale | compounds | buildings | households | residents | GeoPackage | `gisgov sample` wall | target |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| {args.scale} | {counts['compound']:,} | {counts['building']:,} | {counts['household']:,} | "
        f"{counts['resident']:,} | {gpkg_mb:.0f} MB | **{cli_s:.1f} s** | < 60 s: {'met' if cli_s < 60 else 'NOT met'} |",
        "",
        f"In-process stages: generate {gen_s:.1f} s, write GeoPackage {gpkg_s:.1f} s, load (protect IDs + COPY + "
        f"triggers + ANALYZE, one transaction) {load_s:.1f} s. The command-line figure also includes interpreter "
        "start-up, imports and migrating an empty database.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
