"""What a user runs on a scale-city database besides ``coverage compute`` (issue 14, item 2): grid proposals,
the validator, a street's coverage report, the coverage page's service areas and gaps, vector tiles and the
API, against a real ``gisgov serve``. Called by ``bench/scaling.py`` per size (``GISGOV_HOME`` names the
database); prints one JSON object (the last line of stdout)::

    GISGOV_HOME=<scratch home> python bench/scaling_api.py [--propose-sample 60] [--full-propose-max 500]

Steps, in this order:

1. ``gisgov grids propose --all --json`` (saved drafts, as a user runs it): wall, peak RSS (``/usr/bin/time -v``),
   communities planned, share of grids within bounds. With more than ``--full-propose-max`` communities a seeded
   random sample of ``--propose-sample`` communities is proposed one process each (``gisgov grids propose -c``);
   the total is then EXTRAPOLATED: one process start-up + communities × (mean process wall − start-up), the
   start-up being the median wall of the same command for a community that does not exist.
2. ``gisgov coverage report --code <first street>``: wall, peak RSS.
3. An admin account (created like the tests do), then ``gisgov serve`` (1 worker) on the database; signed in with
   a bearer token; requests from this process, one at a time (the coverage page's layers last: their first
   request may take minutes on a large city; ``--timeout`` per request):
   coverage areas / gaps of the first category (first request after the start, with the run's cached answers
   removed first = the first request after a ``coverage compute``: model read from file + the area built for
   this run; then warm);
   validator (``POST /api/grids/validate`` on each proposed draft of the sampled communities);
   API: ``/api/hierarchy``, ``/api/stats``, ``/api/stats/street/<code>``, ``/api/community/<code>`` and the
   community's buildings (``/api/layers/building?bbox=<community box>&limit=10000``, what a map page loads);
   tiles: building and grid tiles at z14–z17 over the city's box (a seeded random sample per zoom), cold (the
   tile data version moved first, so no tile is cached) and warm (the same tiles again).
   Server peak memory = the sum of VmHWM over its processes at the end.

Synthetic data only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from tiles_bench import bump_version, free_port, wait_up  # noqa: E402

from gisgov.tiles import tiles_covering  # noqa: E402

PY = sys.executable
GISGOV = str(Path(PY).with_name("gisgov"))
BUDGET_S = 60.0  # seconds per route's repeats (at least 3 warm repeats each)
ADMIN, ADMIN_PASSWORD = "scale_admin", "Scale-admin-2026"


def run_timed(cmd: list[str], env: dict) -> dict:
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    return {
        "wall_s": wall,
        "peak_gib": int(m.group(1)) / 2**20 if m else None,
        "stdout": p.stdout,
        "stderr": p.stderr,
        "rc": p.returncode,
    }


def pct(xs: list[float]) -> dict:
    a = np.array(xs) * 1000
    return {"n": len(xs), "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99))}


def grid_counts(answers: list[dict]) -> tuple[int, int, int]:
    """(communities with a plan, grids, grids within bounds)."""
    planned = grids = within = 0
    for a in answers:
        s = (a.get("report") or {}).get("summary") or {}
        if s.get("grids"):
            planned += 1
            grids += int(s.get("grids", 0))
            within += int(s.get("within_bounds", 0))
    return planned, grids, within


def propose(env: dict, communities: list[str], sample: int, full_max: int, log: Path) -> tuple[dict, dict]:
    """Step 1; returns (results, community → draft version)."""
    versions: dict[str, int] = {}
    if len(communities) <= full_max:
        r = run_timed(["nice", "-n", "10", GISGOV, "grids", "propose", "--all", "--json"], env)
        log.write_text("\n".join(ln for ln in r["stderr"].splitlines() if "treated as part of it" not in ln))
        answers = json.loads(r["stdout"])
        planned, grids, within = grid_counts(answers)
        versions = {a["community"]: a["version"] for a in answers if a.get("version")}
        out = {
            "propose_mode": "all",
            "propose_wall_s": r["wall_s"],
            "propose_peak_gib": r["peak_gib"],
            "propose_communities": len(communities),
            "propose_ok": sum(1 for a in answers if a.get("status") == "ok"),
        }
    else:
        picked = random.Random(0).sample(communities, sample)
        answers, walls, peaks, secs = [], [], [], []
        for code in picked:
            r = run_timed(["nice", "-n", "10", GISGOV, "grids", "propose", "-c", code, "--json"], env)
            try:
                a = json.loads(r["stdout"])
            except json.JSONDecodeError:  # the command failed before answering: keep why
                tail = [ln for ln in r["stderr"].splitlines() if "error" in ln.lower()][:1]
                a = {"status": "error", "error": tail[0] if tail else f"exit {r['rc']}"}
            a.setdefault("community", code)
            answers.append(a)
            walls.append(r["wall_s"])
            peaks.append(r["peak_gib"] or 0.0)
            secs.append(float(a.get("seconds") or 0.0))
            if a.get("version"):
                versions[code] = a["version"]
        planned, grids, within = grid_counts(answers)
        startup = process_startup(env)
        out = {
            "propose_mode": f"sample of {sample} (seed 0), one process each",
            "propose_wall_s": startup + len(communities) * float(np.mean(np.array(walls) - startup)),
            "propose_extrapolated": True,
            "propose_sample_wall_s": sum(walls),
            "propose_process_startup_s": startup,
            "propose_mean_answer_seconds": float(np.mean(secs)),
            "propose_peak_gib": max(peaks),
            "propose_communities": len(picked),
            "propose_ok": sum(1 for a in answers if a.get("status") == "ok"),
        }
        log.write_text(json.dumps([{k: a.get(k) for k in ("community", "status", "seconds")} for a in answers]))
    out.update(
        propose_not_ok=[
            {
                "community": a.get("community"),
                "status": a.get("status"),
                "why": a.get("error") or sorted({f.get("rule") for f in a.get("findings", [])}),
            }
            for a in answers
            if a.get("status") != "ok"
        ][:5],
        propose_planned=planned,
        propose_grids=grids,
        propose_within_share=within / grids if grids else None,
        propose_total_communities=len(communities),
    )
    return out, versions


def process_startup(env: dict, runs: int = 3) -> float:
    """Median wall of ``gisgov grids propose`` for a community that does not exist: interpreter start, imports,
    the database connection and the schema check, everything one process pays once."""
    walls = [
        run_timed(["nice", "-n", "10", GISGOV, "grids", "propose", "-c", "999999999999", "--json"], env)["wall_s"]
        for _ in range(runs)
    ]
    return float(np.median(walls))


def code_state(owner_url: str) -> dict:
    """The code measured: commit, files of gisgov/ and migrations/ changed but not committed, schema revision."""
    from sqlalchemy import create_engine, pool, text

    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    eng = create_engine(owner_url, poolclass=pool.NullPool)
    with eng.connect() as c:
        schema = c.execute(text("SELECT version_num FROM alembic_version")).scalar()
    eng.dispose()
    dirty = git("status", "--porcelain", "--", "gisgov", "migrations").splitlines()
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted": [ln[3:] for ln in dirty], "schema": schema}


def add_admin(owner_url: str) -> None:
    from sqlalchemy import create_engine, pool, text

    from gisgov.security import accounts

    eng = create_engine(owner_url, poolclass=pool.NullPool)
    try:
        with eng.begin() as conn:
            if conn.execute(text("SELECT 1 FROM app_user WHERE username = :u"), {"u": ADMIN}).first() is None:
                accounts.add_user(conn, ADMIN, ADMIN_PASSWORD, "admin", "")
    finally:
        eng.dispose()


def tree_hwm_gib(pid: int) -> float:
    """Sum of VmHWM (peak resident set) over ``pid`` and its descendants."""
    pids, total = [pid], 0
    while pids:
        p = pids.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
            pids += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except (OSError, AttributeError):
            continue
    return total / 2**20


def partial(out: dict) -> None:
    """What is measured so far, kept beside the database (a run stopped for time still leaves its numbers)."""
    path = Path(os.environ["GISGOV_HOME"]) / "user-partial.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**old, **out, "partial": True}))


def timed_get(c: httpx.Client, url: str, **kw) -> tuple[float, httpx.Response]:
    t = time.perf_counter()
    r = c.get(url, **kw)
    return time.perf_counter() - t, r


def series(c: httpx.Client, url: str, n: int, errors: list[str], **kw) -> dict:
    """First request and ``n`` more (fewer past ``BUDGET_S``, at least 3): {'first_s', 'p50_ms', 'p99_ms', 'n',
    'bytes'}."""
    first, r = timed_get(c, url, **kw)
    if r.status_code != 200:
        errors.append(f"{url}: {r.status_code} {r.text[:200]}")
    lat: list[float] = []
    spent = first
    for _ in range(n):
        if len(lat) >= 3 and spent > BUDGET_S:  # a slow route: at least 3 warm repeats, then stop at the budget
            break
        dt, r = timed_get(c, url, **kw)
        spent += dt
        lat.append(dt)
        if r.status_code != 200:
            errors.append(f"{url}: {r.status_code}")
    return {"first_s": first, **pct(lat), "bytes": len(r.content)}


def server_steps(env: dict, owner_url: str, db: dict, versions: dict, args: argparse.Namespace) -> dict:
    add_admin(owner_url)
    # the coverage page's answers are cached per computation run in <home>/cache/coverage: removing them makes
    # the first request the first after a `coverage compute` (the persisted walking model stays)
    shutil.rmtree(Path(env["GISGOV_HOME"]) / "cache" / "coverage", ignore_errors=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    senv = dict(env, GISGOV_LOGIN_RATE_PER_MINUTE="100")
    log = Path(env["GISGOV_HOME"]) / "serve.log"
    proc = subprocess.Popen(
        [GISGOV, "serve", "--port", str(port), "--workers", "1"],
        env=senv,
        stdout=open(log, "w"),  # noqa: SIM115 (open while the server runs)
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out: dict = {"server": "gisgov serve --workers 1"}
    errors: list[str] = []
    try:
        t0 = time.perf_counter()
        wait_up(base, proc)
        out["serve_start_s"] = time.perf_counter() - t0
        token = httpx.post(
            f"{base}/api/auth/token", data={"username": ADMIN, "password": ADMIN_PASSWORD}, timeout=60
        ).json()["access_token"]
        c = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=args.timeout)
        cat = c.get("/api/coverage/catalog").json()
        category = cat["categories"][0]["code"]
        # validator on the drafts just proposed
        lat = []
        for code, version in list(versions.items())[: args.validate_sample]:
            t = time.perf_counter()
            r = c.post("/api/grids/validate", json={"community": code, "plan": version})
            lat.append(time.perf_counter() - t)
            if r.status_code != 200:
                errors.append(f"validate {code}: {r.status_code} {r.text[:200]}")
        if lat:
            out["validate"] = pct(lat)
        partial(out)
        # API
        w, s, e, n = db["community_box"]
        out["api"] = {
            "hierarchy": series(c, "/api/hierarchy", args.repeat, errors),
            "stats_city": series(c, "/api/stats", args.repeat, errors),
            "stats_street": series(c, f"/api/stats/street/{db['street']}", args.repeat, errors),
            "community": series(c, f"/api/community/{db['community']}", args.repeat, errors),
            "community_buildings": series(
                c, "/api/layers/building", args.repeat, errors, params={"bbox": f"{w},{s},{e},{n}", "limit": 10000}
            ),
        }
        # tiles
        rng = random.Random(0)
        tiles = []
        for z in range(14, 18):
            tz = list(tiles_covering(tuple(db["city_box"]), z))
            tiles += rng.sample(tz, min(len(tz), args.tiles_per_zoom))
        out["tiles_n"] = len(tiles)
        partial(out)
        bump_version(owner_url)
        for layer in ("building", "grid"):
            urls = [f"/tiles/{layer}/{t}.pbf" for t in tiles]
            for kind in ("cold", "warm"):
                lat, hits = [], 0
                for u in urls:
                    dt, r = timed_get(c, u)
                    lat.append(dt)
                    hits += r.headers.get("x-tile-cache") == "hit"
                    if r.status_code not in (200, 204):
                        errors.append(f"{u}: {r.status_code}")
                out[f"tiles_{layer}_{kind}"] = {**pct(lat), "hits": hits / len(urls)}
        # the coverage page's heavy layers last (the first request may take minutes on a large city)
        q = {"category": category, "circle": "c15", "profile": "standard"}
        out["coverage_category"] = category
        partial(out)
        try:
            out["areas"] = series(c, "/api/coverage/areas", args.repeat, errors, params=q)
            out["gaps"] = series(c, "/api/coverage/gaps", args.repeat, errors, params=q)
            out["gaps_street"] = series(
                c, "/api/coverage/gaps", args.repeat, errors, params={**q, "level": "street", "code": db["street"]}
            )
        except httpx.TimeoutException:
            out["coverage_timeout_s"] = args.timeout
            errors.append(f"coverage page request over {args.timeout:.0f} s")
        out["server_peak_gib"] = tree_hwm_gib(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    out["errors"] = errors[:20]
    out["error_count"] = len(errors)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--propose-sample", type=int, default=60)
    ap.add_argument("--full-propose-max", type=int, default=500)
    ap.add_argument("--validate-sample", type=int, default=100)
    ap.add_argument("--tiles-per-zoom", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=900, help="seconds per request")
    args = ap.parse_args()
    from sqlalchemy import create_engine, text

    from gisgov.db.engine import database_url

    owner_url = database_url(start=False)
    env = dict(os.environ, COLUMNS="200")
    eng = create_engine(owner_url)
    with eng.connect() as c:
        communities = [r[0] for r in c.execute(text("SELECT code FROM community ORDER BY code"))]
        street = c.execute(text("SELECT code FROM street ORDER BY code LIMIT 1")).scalar_one()
        box = c.execute(
            text(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                "(SELECT ST_Extent(ST_Transform(geom, 4326)) e FROM community) s"
            )
        ).one()
        cbox = c.execute(
            text(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                "(SELECT ST_Extent(ST_Transform(geom, 4326)) e FROM community WHERE code = :c) s"
            ),
            {"c": communities[0]},
        ).one()
    eng.dispose()
    db = {"street": street, "community": communities[0], "city_box": list(box), "community_box": list(cbox)}
    home = Path(os.environ["GISGOV_HOME"])
    out: dict = {"loadavg_before": list(os.getloadavg()), "code": code_state(owner_url)}
    res, versions = propose(env, communities, args.propose_sample, args.full_propose_max, home / "propose.log")
    (home / "user-partial.json").unlink(missing_ok=True)
    out.update(res)
    partial(out)
    print(json.dumps(res), file=sys.stderr, flush=True)
    r = run_timed(["nice", "-n", "10", GISGOV, "coverage", "report", "--code", street], env)
    out.update(report_wall_s=r["wall_s"], report_peak_gib=r["peak_gib"], report_rc=r["rc"])
    partial(out)
    out.update(server_steps(env, owner_url, db, versions, args))
    out["loadavg_after"] = list(os.getloadavg())
    out["measured_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
