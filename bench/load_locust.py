"""Load test with locust (issue 14, item 3): 200 concurrent users, each signed in as an account of its own —
street leaders, viewers and community staff browsing the dashboard, drill-downs, maps and layers; planners
editing grids in edit sessions — for a bounded time against gisgov on 127.0.0.1 (bench/locustfile.py holds
the scenario and the cross-scope check).

    python bench/load_locust.py [--users 200] [--spawn-rate 10] [--minutes 3] [--workers 2] [--home DIR]
    python bench/load_locust.py --url http://127.0.0.1:8000 --home DIR   # a demo already running there

Without ``--url`` it starts ``gisgov demo --workers N`` in ``--home`` (default: a temporary folder; the
first run loads the synthetic sample city and computes its analyses) with the pool settings given, makes
the accounts (one per virtual user, in the areas of the sample city, one password), runs locust headless
(``--users`` at ``--spawn-rate`` per second, then the rest of ``--minutes``), and stops the server.
Written to ``bench/results/load.md`` (the section between the ``locust`` markers): requests, failures,
cross-scope answers, req/s and p50/p95/p99/max overall and per request name, the settings, the load
average. The target is p99 < 500 ms with 0 errors and 0 cross-scope rows.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_test import free_port, wait_up

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "load.md"
PASSWORD = "Load-user-2024"


def markers(users: int) -> tuple[str, str]:
    """The section of one user count in the results file (each count keeps its own)."""
    return f"<!-- locust {users} -->", f"<!-- /locust {users} -->"


#: virtual users per kind follow the locustfile's weights; one account per user
KINDS = {
    "leader": ("street_leader", 9),
    "viewer": ("viewer", 9),
    "staff": ("community_staff", 12),
    "planner": ("planner", 12),
}

MAKE_ACCOUNTS = r"""
import json, sys
from sqlalchemy import create_engine, text
from gisgov.db.engine import database_url, sqlalchemy_url
from gisgov.security import accounts
kinds, per_kind, password = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
eng = create_engine(sqlalchemy_url(database_url()))
out = []
with eng.begin() as c:
    areas = {}
    q = {
        9: "SELECT street_code, ST_Extent(ST_Transform(geom, 4326)) FROM community GROUP BY 1 ORDER BY 1",
        12: "SELECT code, ST_Extent(ST_Transform(geom, 4326)) FROM community GROUP BY 1 ORDER BY 1",
    }
    for n, sql in q.items():
        for code, ext in c.execute(text(sql)).all():
            box = [float(v) for v in ext[4:-1].replace(",", " ").split()]  # BOX(minx miny,maxx maxy)
            if n == 9:
                kids = [("community", k) for k in c.execute(text(
                    "SELECT code FROM community WHERE street_code = :s ORDER BY code"), {"s": code}).scalars()]
            else:
                kids = [("grid", k) for k in c.execute(text(
                    "SELECT DISTINCT code FROM grid_current() WHERE community_code = :c ORDER BY code"),
                    {"c": code}).scalars()]
            areas.setdefault(n, []).append({"scope": code, "bbox": box, "children": kids})
    for kind, (role, digits) in kinds.items():
        scopes = areas[digits]
        for i in range(per_kind[kind]):
            a = scopes[i % len(scopes)]
            name = f"load_{kind}_{i:03d}"
            if c.execute(text("SELECT 1 FROM app_user WHERE username = :u"), {"u": name}).first() is None:
                accounts.add_user(c, name, password, role, a["scope"])
            out.append({"kind": kind, "username": name, "password": password, "role": role, **a})
print(json.dumps(out, ensure_ascii=False))
"""


def start_demo(home: Path, args, port: int, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GISGOV_")}
    env.update(
        {
            "GISGOV_HOME": str(home),
            "GISGOV_LOGIN_RATE_PER_MINUTE": "1000",  # every virtual user signs in from 127.0.0.1
            "GISGOV_POOL_SIZE": str(args.pool_size),
            "GISGOV_POOL_OVERFLOW": str(args.pool_overflow),
        }
    )
    return subprocess.Popen(
        [sys.executable, "-m", "gisgov.cli.main", "demo", "--workers", str(args.workers), "--port", str(port)],
        env=env,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        cwd=str(REPO),
        start_new_session=True,
    )


def make_accounts(home: Path, users: int, out: Path) -> list[dict]:
    weights = {"leader": 7, "viewer": 4, "staff": 6, "planner": 3}  # as the locustfile's user classes
    total = sum(weights.values())
    per_kind = {k: max(1, round(users * w / total)) + 1 for k, w in weights.items()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("GISGOV_")} | {"GISGOV_HOME": str(home)}
    kinds = {k: list(v) for k, v in KINDS.items()}
    r = subprocess.run(
        [sys.executable, "-c", MAKE_ACCOUNTS, json.dumps(kinds), json.dumps(per_kind), PASSWORD],
        env=env,
        cwd=str(REPO),
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode:
        raise SystemExit(f"making the accounts failed:\n{r.stderr[-3000:]}")
    acc = json.loads(r.stdout)
    out.write_text(json.dumps(acc, ensure_ascii=False), encoding="utf-8")
    return acc


def read_stats(prefix: Path) -> list[dict]:
    with open(f"{prefix}_stats.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def ms(v: str) -> str:
    try:
        x = float(v)
    except ValueError:
        return v
    return f"{x:.0f} ms" if x < 10_000 else f"{x / 1000:.1f} s"


def section(args, rows: list[dict], counts: dict, failures: list[dict], load: tuple[float, float], command: str) -> str:
    agg = next(r for r in rows if r["Name"] == "Aggregated")
    n, fails = int(agg["Request Count"]), int(agg["Failure Count"])
    p99 = float(agg["99%"])
    ok = p99 < 500 and fails == 0 and counts.get("cross_scope", 0) == 0
    s = sorted(counts.get("sign_ins_s", []))
    signin = (
        f"{len(s)} sign-ins (argon2 verification), p50 {1000 * s[len(s) // 2]:.0f} ms, "
        f"p99 {1000 * s[min(len(s) - 1, int(0.99 * len(s)))]:.0f} ms, max {1000 * s[-1]:.0f} ms"
        if s
        else "none recorded"
    )
    begin, end = markers(args.users)
    lines = [
        begin,
        f"## Locust: {args.users} signed-in users (issue 14)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{command}` on {platform.machine()}, "
        f"{os.cpu_count()} cores shared by the server, its PostgreSQL and locust itself; Python "
        f"{platform.python_version()}. `gisgov demo --workers {args.workers}` on the synthetic sample city, "
        f"`GISGOV_POOL_SIZE={args.pool_size}` + `GISGOV_POOL_OVERFLOW={args.pool_overflow}` per worker, answer "
        f"cache on (`GISGOV_ANSWER_CACHE_MB` 64), tile cache on. {args.users} users spawned at {args.spawn_rate}/s, "
        f"{args.minutes:g} min in all. Each user has an account of its own (street leaders and viewers bound "
        "to a street, community staff and planners to a community) and think time (browsers 10–30 s, planners "
        "5–15 s; a tile is not asked for again within its max-age of 60 s, as a browser does). The tables are the **steady state with all users on** (locust `--reset-stats`: what was "
        "measured while users were still being spawned — their sign-ins and first dashboards — is dropped); "
        f"the sign-ins are reported on their own: {signin}. Machine load average (1 min): "
        f"{load[0]:.1f} before, {load[1]:.1f} at the end.",
        "",
        "| users | requests | failures | cross-scope answers | req/s | p50 | p95 | p99 | max | target met |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| {args.users} | {n:,} | **{fails}** | **{counts.get('cross_scope', 0)}** (of {counts.get('checked_answers', 0):,} "
        f"answers, {counts.get('checked_codes', 0):,} codes checked) | {float(agg['Requests/s']):.1f} | {ms(agg['50%'])} | "
        f"{ms(agg['95%'])} | **{ms(agg['99%'])}** | {ms(agg['Max Response Time'])} | "
        f"{'yes' if ok else '**no**'} (p99 < 500 ms, 0 errors, 0 cross-scope) |",
        "",
        f"Planners' moves refused by a rule (answered 400, not errors): {counts.get('refused_moves', 0)}; drafts "
        f"saved during the run: {counts.get('saves', 0)} (each save moves the data version: every cached answer "
        "is computed again on its next request).",
        "",
        "| request | count | failures | p50 | p95 | p99 | max |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted((r for r in rows if r["Name"] != "Aggregated"), key=lambda r: -int(r["Request Count"])):
        lines.append(
            f"| `{r['Type']} {r['Name'].removeprefix('GET ').removeprefix('POST ')}` | {int(r['Request Count']):,} | "
            f"{r['Failure Count']} | {ms(r['50%'])} | {ms(r['95%'])} | {ms(r['99%'])} | {ms(r['Max Response Time'])} |"
        )
    if failures:
        lines += [
            "",
            "Failures: " + "; ".join(f"{f['Method']} {f['Name']}: {f['Error']} ×{f['Occurrences']}" for f in failures),
        ]
    lines += ["", end, ""]
    return "\n".join(lines)


def write_results(text: str, users: int) -> None:
    begin, end = markers(users)
    old = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Load tests\n\n"
    if begin in old:
        new = re.sub(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", lambda _m: text, old, flags=re.S)
    else:  # before the closed-loop sections (bench/load_test.py), after the other locust sections
        m = re.search(r"(?m)^## (Closed loop|workers )", old)
        at = m.start() if m else len(old)
        new = old[:at].rstrip() + "\n\n" + text + "\n" + old[at:]
    RESULTS.write_text(new, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running demo on 127.0.0.1 (its --home is needed to make the accounts)")
    ap.add_argument("--home", type=Path)
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--spawn-rate", type=float, default=10)
    ap.add_argument("--minutes", type=float, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--pool-size", type=int, default=20)
    ap.add_argument("--pool-overflow", type=int, default=0)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    tmp = proc = None
    if args.home is None:
        if args.url:
            raise SystemExit("--url needs --home (the demo's GISGOV_HOME) to make the accounts")
        tmp = tempfile.TemporaryDirectory(prefix="gisgov-locust-")
        args.home = Path(tmp.name)
    args.home.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gisgov-locust-run-"))
    if args.url:
        base = args.url.rstrip("/")
    else:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_demo(args.home, args, port, args.home / "demo-locust.log")
        print(f"starting gisgov demo --workers {args.workers} on {base} …", flush=True)
    try:
        wait_up(base, proc, timeout=3600)
        acc = make_accounts(args.home, args.users, work / "accounts.json")
        print(f"{len(acc)} accounts; locust {args.users} users for {args.minutes:g} min …", flush=True)
        env = os.environ | {
            "GISGOV_LOAD_ACCOUNTS": str(work / "accounts.json"),
            "GISGOV_LOAD_SUMMARY": str(work / "summary.json"),
        }
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(REPO / "bench" / "locustfile.py"),
                "--headless",
                "-u",
                str(args.users),
                "-r",
                str(args.spawn_rate),
                "-t",
                f"{int(args.minutes * 60)}s",
                "--host",
                base,
                "--csv",
                str(work / "run"),
                "--only-summary",
                "--reset-stats",
                "--stop-timeout",
                "20",
            ],
            env=env,
            cwd=str(REPO),
            check=False,
        )
        load_after = os.getloadavg()[0]
        rows = read_stats(work / "run")
        counts = json.loads((work / "summary.json").read_text()) if (work / "summary.json").exists() else {}
        with open(work / "run_failures.csv", encoding="utf-8") as f:
            failures = list(csv.DictReader(f))
        print(f"locust exited {r.returncode}; counts {counts}", flush=True)
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if tmp is not None:
            env = {k: v for k, v in os.environ.items() if not k.startswith("GISGOV_")}
            subprocess.run(
                [sys.executable, "-m", "gisgov.cli.main", "db", "down"],
                env=env | {"GISGOV_HOME": str(args.home)},
                capture_output=True,
                cwd=str(REPO),
            )
            tmp.cleanup()
    command = (
        f"python bench/load_locust.py --users {args.users} --spawn-rate {args.spawn_rate:g} "
        f"--minutes {args.minutes:g} --workers {args.workers}"
    )
    text = section(args, rows, counts, failures, (load_before, load_after), command)
    print(text)
    if not args.no_write:
        write_results(text, args.users)
        print(f"written: {RESULTS}")


if __name__ == "__main__":
    main()
