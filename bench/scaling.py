"""End-to-end scaling curves: what a user runs, at 10k, 100k and 1M buildings (issue 14).

For each size: a scratch database of its own (an embedded cluster under ``--base``), the scale city
(:mod:`bench.scale_city`) loaded with COPY, then ``gisgov coverage compute`` as a user runs it (a separate
process: wall time and peak RSS from ``/usr/bin/time -v``, per-step seconds from the run record), then the
first coverage request of a freshly started service (reading the persisted model), and the database size.
Results go to ``bench/results/scaling.json`` (merged by size) and are rendered to
``bench/results/scaling.md`` and ``scaling.png``::

    python bench/scaling.py --sizes 10000 100000 1000000

Then what else a user runs on the same database (:mod:`bench.scaling_api`): ``gisgov grids propose`` for every
community (a seeded sample, extrapolated, past ``--full-propose-max`` communities), the validator, a street's
``coverage report``, and against a real ``gisgov serve``: the coverage page's service areas and gaps, building
and grid tiles at z14–z17 (cold and warm), the API (hierarchy, stats, a community and its buildings) and the
server's peak memory. ``--only-user`` runs just those on databases already loaded and computed (the earlier
columns of that size are kept); ``--no-user`` skips them. A size whose new columns were not run says so.
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


def prepare(n: int, base: Path) -> tuple[Path, dict]:
    home = base / f"h{n}"
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GISGOV_HOME=str(home), COLUMNS="200")
    subprocess.run([GISGOV, "db", "up"], env=env, check=True, capture_output=True)
    subprocess.run([GISGOV, "db", "migrate"], env=env, check=True, capture_output=True)
    return home, env


def measure_user(n: int, base: Path, extra: list[str]) -> dict:
    """bench/scaling_api.py on the database of that size (loaded and computed already)."""
    home, env = prepare(n, base)
    p = subprocess.run([PY, str(ROOT / "bench" / "scaling_api.py"), *extra], env=env, capture_output=True, text=True)
    (home / "user.log").write_text(p.stdout + p.stderr)
    if p.returncode != 0:
        raise RuntimeError(f"bench/scaling_api.py failed at {n:,} buildings, see {home / 'user.log'}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def measure(n: int, base: Path, reuse: bool) -> dict:
    home, env = prepare(n, base)
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


NOT_RUN = "not measured (time)"


def ms(d: dict | None) -> str:
    """'p50 / p99' in ms."""
    return NOT_RUN if not d else f"{d['p50_ms']:.0f} / {d['p99_ms']:.0f}"


def first_warm(d: dict | None) -> str:
    return NOT_RUN if not d else f"{d['first_s']:.2f} s / {d['p50_ms']:.0f} ms"


API = ("hierarchy", "stats_city", "stats_street", "community", "community_buildings")


def api(d: dict | None) -> str:
    """'first s · p50 / p99 ms'."""
    return NOT_RUN if not d else f"{d['first_s']:.2f} s · {d['p50_ms']:.0f} / {d['p99_ms']:.0f}"


def code_note(r: dict) -> str:
    c = (r.get("user") or {}).get("code")
    if not c:
        return ""
    extra = f" + {len(c['uncommitted'])} uncommitted files ({', '.join(c['uncommitted'])})" if c["uncommitted"] else ""
    return f"- {r['buildings']:,} buildings, these tables measured on commit {c['commit']}{extra}, schema {c['schema']}"


def user_tables(results: list[dict]) -> list[str]:
    """The second and third tables: batch commands, then the server (from bench/scaling_api.py)."""
    lines = [
        "",
        "## What else a user runs (same databases)",
        "",
        "Batch commands, each a separate process (wall clock from start to exit, peak RSS from `/usr/bin/time -v`). "
        "`grids propose` = `gisgov grids propose --all --json` (rules 300–500 households, ≤ 1,000 people per grid; "
        "drafts saved); past 500 communities a seeded random sample is proposed one process per community and the "
        "total is **extrapolated** (one process start-up + communities × (mean process wall − start-up); start-up = "
        "the same command for a community that does not exist). Validator = "
        "`POST /api/grids/validate` on each draft just proposed (the full check: counts, compactness, every rule break "
        "located), through the server below. `coverage report` = `gisgov coverage report --code <first street>`.",
        "",
        "| buildings | communities | grids propose s (peak GiB) | planned · grids within bounds | validator p50 / p99 ms "
        "| coverage report s (peak GiB) |",
        "|---:|---:|---:|---|---:|---:|",
    ]
    for r in results:
        u = r.get("user")
        if not u:
            lines.append(f"| {r['buildings']:,} | — | {NOT_RUN} | {NOT_RUN} | {NOT_RUN} | {NOT_RUN} |")
            continue
        ext = " **extrapolated**" if u.get("propose_extrapolated") else ""
        sample = f" (sample {u['propose_communities']})" if u.get("propose_extrapolated") else ""
        share = u.get("propose_within_share")
        lines.append(
            f"| {r['buildings']:,} | {u['propose_total_communities']:,}{sample} | {u['propose_wall_s']:.1f}{ext} "
            f"({fmt(u.get('propose_peak_gib'), '{:.2f}')}) | {u['propose_planned']}/{u['propose_communities']} planned "
            f"· {fmt(None if share is None else 100 * share, '{:.1f}')} % of {u['propose_grids']} grids "
            f"| {ms(u.get('validate'))} (n={u.get('validate', {}).get('n', 0)}) "
            f"| {u['report_wall_s']:.1f} ({fmt(u.get('report_peak_gib'), '{:.2f}')}) |"
        )
    lines += [
        "",
        "Server: `gisgov serve --workers 1` started on the database after the commands above, signed in as an admin "
        "account (bearer token), requests one at a time from the bench process. Coverage page: service areas and "
        "gaps of the first catalog category (c15, standard profile); **first** = first request after the server "
        "start with the run's cached answers removed, i.e. the first request after a `coverage compute` (reads the "
        "persisted model, builds and stores the run's cached answer), then p50 of the warm repeats. Tiles: a "
        "seeded random sample of up to 100 tiles per zoom at z14–z17 over the city's box; **cold** = first fetch after "
        "the tile data version moved (nothing cached), **warm** = the same tiles again. API: p50 / p99 of the warm "
        "repeats (20, or n in scaling.json) after a first request (`/api/layers/building?bbox=<community box>&limit=10000` = a community's "
        "buildings as a map page loads them). Server peak = sum of the peak RSS of its processes.",
        "",
        "| buildings | areas first / warm | gaps (city) first / warm | gaps (street) first / warm "
        "| building tiles cold · warm p50/p99 ms | grid tiles cold · warm p50/p99 ms | hierarchy first · p50/p99 ms "
        "| stats (city) | stats (street) | community | community's buildings | server peak GiB "
        "| load avg before → after |",
        "|---:|---|---|---|---|---|---|---|---|---|---|---:|---|",
    ]
    for r in results:
        u = r.get("user")
        if not u:
            lines.append(f"| {r['buildings']:,} |" + f" {NOT_RUN} |" * 12)
            continue
        a = u.get("api", {})
        la = " ".join(f"{x:.2f}" for x in u["loadavg_before"]) + " → "
        la += " ".join(f"{x:.2f}" for x in u.get("loadavg_after", []))
        if u.get("partial"):
            la += " (run stopped for time: later cells not measured)"
        lines.append(
            f"| {r['buildings']:,} | {first_warm(u.get('areas'))} | {first_warm(u.get('gaps'))} "
            f"| {first_warm(u.get('gaps_street'))} "
            f"| {ms(u.get('tiles_building_cold'))} · {ms(u.get('tiles_building_warm'))} "
            f"| {ms(u.get('tiles_grid_cold'))} · {ms(u.get('tiles_grid_warm'))} "
            + "".join(f"| {api(a.get(k))} " for k in API)
            + f"| {fmt(u.get('server_peak_gib'), '{:.2f}')} | {la} |"
        )
    lines += [""] + [code_note(r) for r in results if code_note(r)]
    errs = [(r["buildings"], e) for r in results for e in (r.get("user") or {}).get("errors", [])]
    lines += [
        "",
        "Errors during these requests: " + ("none" if not errs else "; ".join(f"{n:,}: {e}" for n, e in errs)),
    ]
    notok = [(r["buildings"], x) for r in results for x in (r.get("user") or {}).get("propose_not_ok", [])]
    if notok:
        lines.append(
            "Proposals not ok: "
            + "; ".join(f"{n:,}: community {x['community']} {x['status']} ({x['why']})" for n, x in notok)
        )
    return lines


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
        "| write_access | figures | write_figures | peak RSS GiB | first request s | DB GiB (coverage part) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        st = r.get("steps", {})
        lines.append(
            f"| {r['buildings']:,} | {r.get('residents', 0):,} | {fmt(r.get('load_s'))} | **{fmt(r.get('compute_wall_s'))}** | "
            + " | ".join(fmt(st.get(k), "{:.2f}") for k in STEPS)
            + f" | {fmt(r.get('compute_peak_gib'), '{:.2f}')} | {fmt(r.get('first_request_s'), '{:.2f}')} | "
            f"{fmt(r.get('db_gib'), '{:.2f}')} ({fmt(r.get('coverage_gib'), '{:.2f}')}) |"
        )
    lines += user_tables(results)
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

    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(16, 4.2))
    xs = [r["buildings"] for r in results]
    bottom = [0.0] * len(xs)
    for k in STEPS:
        ys = [r.get("steps", {}).get(k, 0.0) for r in results]
        a1.bar([str(f"{x:,}") for x in xs], ys, bottom=bottom, label=k)
        bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
    a1.plot([str(f"{x:,}") for x in xs], [r.get("compute_wall_s") or 0 for r in results], "k.-", label="process wall")
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
    users = [r for r in results if r.get("user")]
    ux = [r["buildings"] for r in users]
    series = {
        "hierarchy": lambda u: u["api"]["hierarchy"],
        "stats (street)": lambda u: u["api"]["stats_street"],
        "stats (city)": lambda u: u["api"]["stats_city"],
        "community's buildings": lambda u: u["api"]["community_buildings"],
        "validator": lambda u: u["validate"],
        "building tile cold": lambda u: u["tiles_building_cold"],
        "building tile warm": lambda u: u["tiles_building_warm"],
        "service areas warm": lambda u: u["areas"],
    }

    def point(u: dict, get) -> float:
        try:
            return get(u)["p50_ms"]
        except (KeyError, TypeError):
            return float("nan")

    for label, get in series.items():
        a3.plot(ux, [point(r["user"], get) for r in users], "o-", label=f"{label} p50")
    a3.plot(
        ux,
        [1000 * (r["user"].get("areas") or {}).get("first_s", float("nan")) for r in users],
        "k^--",
        label="service areas first request",
    )
    a3.set_xscale("log")
    a3.set_yscale("log")
    a3.set_xlabel("buildings")
    a3.set_ylabel("ms")
    a3.set_title("server answers (gisgov serve, 1 worker)")
    a3.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(RESULTS / "scaling.png", dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--base", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "gisgov-scaling")
    ap.add_argument("--reuse", action="store_true", help="keep a database already holding a city of that size")
    ap.add_argument("--render-only", action="store_true")
    ap.add_argument("--only-user", action="store_true", help="only the bench/scaling_api.py steps (keep the rest)")
    ap.add_argument("--no-user", action="store_true", help="skip the bench/scaling_api.py steps")
    ap.add_argument(
        "--take-partial",
        action="store_true",
        help="store what a stopped bench/scaling_api.py run measured (<base>/h<size>/user-partial.json), then render",
    )
    ap.add_argument("--propose-sample", type=int, default=60, help="communities proposed past --full-propose-max")
    ap.add_argument("--repeat", type=int, default=20, help="warm repeats per API route")
    ap.add_argument("--full-propose-max", type=int, default=500, help="propose every community up to this many")
    a = ap.parse_args()
    store = RESULTS / "scaling.json"
    results = {r["buildings"]: r for r in (json.loads(store.read_text()) if store.exists() else [])}
    if a.take_partial:
        for n in a.sizes:
            results.setdefault(n, {"buildings": n})["user"] = json.loads(
                (a.base / f"h{n}" / "user-partial.json").read_text()
            )
        store.write_text(json.dumps(sorted(results.values(), key=lambda r: r["buildings"]), indent=1))
    elif not a.render_only:
        for n in a.sizes:
            print(f"== {n:,} buildings", flush=True)
            if not a.only_user:
                user = results.get(n, {}).get("user")
                results[n] = measure(n, a.base, a.reuse)
                if user and a.no_user:
                    results[n]["user"] = user
            if not a.no_user:
                extra = ["--propose-sample", str(a.propose_sample), "--full-propose-max", str(a.full_propose_max)]
                extra += ["--repeat", str(a.repeat)]
                results.setdefault(n, {"buildings": n})["user"] = measure_user(n, a.base, extra)
            print(json.dumps(results[n]), flush=True)
            store.write_text(json.dumps(sorted(results.values(), key=lambda r: r["buildings"]), indent=1))
    render(list(results.values()))


if __name__ == "__main__":
    main()
