"""End-to-end scaling curves: what a user runs, at 10k, 100k and 1M buildings (issue 14).

For each size: a scratch database of its own (an embedded cluster under ``--base``), the scale city
(:mod:`bench.scale_city`) loaded with COPY, then ``gisgov coverage compute`` as a user runs it (a separate
process: wall time and peak RSS from ``/usr/bin/time -v``, per-step seconds from the run record), then the
first coverage request of a freshly started service (reading the persisted model), and the database size.
Results go to ``bench/results/scaling.json`` (merged by size) and are rendered to
``bench/results/scaling.md`` and ``scaling.png``::

    python bench/scaling.py --sizes 10000 100000 1000000

Columns not measured by this script yet (grids propose, tiles, API p50/p99) are shown as such.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PY = sys.executable
GISGOV = str(Path(PY).with_name("gisgov"))
STEPS = ["load_city", "model", "distances", "write_snaps", "write_access", "figures", "write_figures"]
FIRST_REQUEST = r"""
import json, sys, time
from sqlalchemy import create_engine, text
from gisgov.db.engine import database_url, sqlalchemy_url
from gisgov.coverage.service import CoverageService
eng = create_engine(sqlalchemy_url(database_url()))
t0 = time.perf_counter()
svc = CoverageService()
with eng.connect() as c:
    code = c.execute(text("SELECT code FROM street ORDER BY code LIMIT 1")).scalar()
    rows = svc.summary(c, "street", code)["rows"]
first = time.perf_counter() - t0
t1 = time.perf_counter()
with eng.connect() as c:
    svc.summary(c, "street", code)
print(json.dumps({"first_request_s": first, "second_request_s": time.perf_counter() - t1,
                  "model_from_file": svc.model_loads == 1, "rows": len(rows)}))
"""


def timed(cmd: list[str], env: dict, log: Path) -> dict:
    """Run under /usr/bin/time -v: wall seconds, peak RSS (GiB), output kept in ``log``."""
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v", "nice", "-n", "10", *cmd], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    log.write_text(p.stdout + p.stderr)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed, see {log}")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    return {"wall_s": wall, "peak_gib": int(m.group(1)) / 2**20 if m else None, "stdout": p.stdout}


def psql_value(env: dict, sql: str):
    code = (
        "from sqlalchemy import create_engine, text\n"
        "from gisgov.db.engine import database_url, sqlalchemy_url\n"
        f"e = create_engine(sqlalchemy_url(database_url()))\nwith e.connect() as c: print(c.execute(text({sql!r})).scalar())"
    )
    return subprocess.run([PY, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()


def measure(n: int, base: Path, reuse: bool) -> dict:
    home = base / f"h{n}"
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GISGOV_HOME=str(home), COLUMNS="200")
    subprocess.run([GISGOV, "db", "up"], env=env, check=True, capture_output=True)
    subprocess.run([GISGOV, "db", "migrate"], env=env, check=True, capture_output=True)
    out: dict = {"buildings": n}
    have = int(psql_value(env, "SELECT count(*) FROM building") or 0)
    if not (reuse and have == n):
        r = timed([PY, str(ROOT / "bench" / "scale_city.py"), "--buildings", str(n)], env, home / "load.log")
        out.update(load_s=r["wall_s"], load_peak_gib=r["peak_gib"])
    else:
        out.update(load_s=None, load_peak_gib=None)
    out["residents"] = int(psql_value(env, "SELECT count(*) FROM resident"))
    r = timed([GISGOV, "coverage", "compute"], env, home / "compute.log")
    out.update(compute_wall_s=r["wall_s"], compute_peak_gib=r["peak_gib"])
    stats = json.loads(psql_value(env, "SELECT stats::text FROM coverage_run ORDER BY id DESC LIMIT 1"))
    out["steps"] = stats.get("seconds", {})
    r = subprocess.run([PY, "-c", FIRST_REQUEST], env=env, capture_output=True, text=True)
    if r.returncode == 0:
        out.update(json.loads(r.stdout.strip().splitlines()[-1]))
    out["db_gib"] = int(psql_value(env, "SELECT pg_database_size(current_database())")) / 2**30
    out["coverage_gib"] = (
        int(
            psql_value(
                env,
                "SELECT sum(pg_total_relation_size(c)) FROM unnest(ARRAY['building_access_packed', 'building_snap', "
                "'coverage_figure_item', 'coverage_figure_total', 'coverage_figure_level', 'coverage_group_figure', "
                "'facility_snap']::regclass[]) c",
            )
        )
        / 2**30
    )
    out["measured_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return out


def fmt(v, spec="{:.1f}") -> str:
    return "—" if v is None else spec.format(v)


def render(results: list[dict]) -> None:
    results = sorted(results, key=lambda r: r["buildings"])
    lines = [
        "# Scaling: what a user runs, end to end",
        "",
        f"Made with `python bench/scaling.py` on {platform.machine()} · {os.cpu_count()} cores · Python "
        f"{platform.python_version()} (other jobs shared the CPU: long runs under `nice -n 10`). Synthetic scale city "
        "(bench/scale_city.py: the coverage benchmark city as PostGIS rows, ~3 residents per building as minimal "
        "resident rows, 46 service categories, 4 levels of figures).",
        "",
        "`coverage compute` = the `gisgov coverage compute` process, wall clock from start to exit (interpreter start, "
        "reading PostGIS, graph and snaps, distances, writing snaps, distances and figures, commit). The step columns "
        "come from the run record. First request = a fresh service answering one street's coverage summary "
        "(persisted model read, stored distances read, figures built).",
        "",
        "| buildings | residents | load s | compute s (wall) | load_city | graph+snaps | distances | write_snaps "
        "| write_access | figures | write_figures | peak RSS GiB | first request s | DB GiB (coverage part) "
        "| grids propose | tiles p50/p99 | API p50/p99 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for r in results:
        st = r.get("steps", {})
        lines.append(
            f"| {r['buildings']:,} | {r.get('residents', 0):,} | {fmt(r.get('load_s'))} | **{fmt(r['compute_wall_s'])}** | "
            + " | ".join(fmt(st.get(k), "{:.2f}") for k in STEPS)
            + f" | {fmt(r.get('compute_peak_gib'), '{:.2f}')} | {fmt(r.get('first_request_s'), '{:.2f}')} | "
            f"{fmt(r.get('db_gib'), '{:.2f}')} ({fmt(r.get('coverage_gib'), '{:.2f}')}) "
            "| not measured yet | not measured yet | not measured yet |"
        )
    lines += [
        "",
        "Before (issue 14, same kind of synthetic city in PostGIS, one row per building × category and the long figure "
        "table): 100k buildings 819 s / 4.46 GiB peak; first request after a start 89 s.",
        "",
        "![scaling](scaling.png)",
        "",
        *[f"- {r['buildings']:,} buildings: {r['note']}" for r in results if r.get("note")],
        "",
        "Measured at: " + ", ".join(f"{r['buildings']:,} → {r.get('measured_at', '?')}" for r in results),
        "",
    ]
    (RESULTS / "scaling.md").write_text("\n".join(lines))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    xs = [r["buildings"] for r in results]
    bottom = [0.0] * len(xs)
    for k in STEPS:
        ys = [r.get("steps", {}).get(k, 0.0) for r in results]
        a1.bar([str(f"{x:,}") for x in xs], ys, bottom=bottom, label=k)
        bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
    a1.plot([str(f"{x:,}") for x in xs], [r["compute_wall_s"] for r in results], "k.-", label="process wall")
    a1.axhline(120, color="r", ls="--", lw=0.8, label="target 1M: 120 s")
    a1.set_ylabel("seconds")
    a1.set_title("gisgov coverage compute, per step")
    a1.legend(fontsize=7)
    a2.plot(xs, [r.get("compute_peak_gib") or 0 for r in results], "o-", label="compute peak RSS (GiB)")
    a2.plot(xs, [r.get("db_gib") or 0 for r in results], "s-", label="database size (GiB)")
    a2.axhline(6, color="r", ls="--", lw=0.8, label="peak target 6 GiB")
    a2.set_xscale("log")
    a2.set_xlabel("buildings")
    a2.set_title("memory and storage")
    a2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "scaling.png", dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--base", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "gisgov-scaling")
    ap.add_argument("--reuse", action="store_true", help="keep a database already holding a city of that size")
    ap.add_argument("--render-only", action="store_true")
    a = ap.parse_args()
    store = RESULTS / "scaling.json"
    results = {r["buildings"]: r for r in (json.loads(store.read_text()) if store.exists() else [])}
    if not a.render_only:
        for n in a.sizes:
            print(f"== {n:,} buildings", flush=True)
            results[n] = measure(n, a.base, a.reuse)
            print(json.dumps(results[n]), flush=True)
            store.write_text(json.dumps(sorted(results.values(), key=lambda r: r["buildings"]), indent=1))
    render(list(results.values()))


if __name__ == "__main__":
    main()
